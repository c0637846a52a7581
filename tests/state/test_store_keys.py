"""``State.keys`` keeps its sorted answers per prefix; they must equal a fresh scan always.

Every node must see the same keys in the same order (a handler that iterates them decides
results), so the kept answers are checked against a plain dict, the model, over random
sequences of puts (new keys and overwritten ones), deletes, transactions committed and
rolled back, and questions for prefixes, including more prefixes than are kept, and an
iterator taken before the keys changed (it walks the keys of its time).
"""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.state.store import _PREFIXES_KEPT, State

KEYS = st.sampled_from(["a", "a/1", "a/2", "a/10", "ab", "b/1", "b/2", "chain/members/0",
                        "chain/members/5", "chain/tls/1", "z"])
PREFIXES = st.sampled_from(["", "a", "a/", "a/1", "b/", "chain/", "chain/members/", "c", "q"])
OPS = st.one_of(
    st.tuples(st.just("put"), KEYS, st.integers(0, 3)),
    st.tuples(st.just("append_each"), st.lists(KEYS, max_size=3), st.integers(0, 3)),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("keys"), PREFIXES),
    st.tuples(st.just("begin")),
    st.tuples(st.just("commit")),
    st.tuples(st.just("rollback")),
)


def _model_keys(model: dict[str, int | list[int]], prefix: str) -> list[str]:
    return sorted(k for k in model if k.startswith(prefix))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, st.integers(0, 3)), st.lists(OPS, max_size=60))
def test_kept_answers_equal_a_fresh_scan(start: dict[str, int], ops: list[tuple]) -> None:
    from glucoledger import codec

    state = State({k: codec.encode(v) for k, v in start.items()})
    model: dict[str, int | list[int]] = dict(start)
    saved: dict[str, int | list[int]] | None = None
    held: list[tuple[Iterator[str], list[str]]] = []
    for op in ops:
        if op[0] == "put":
            state.put(op[1], op[2])
            model[op[1]] = op[2]
        elif op[0] == "append_each":
            lists = [k for k in op[1] if not isinstance(model.get(k, []), int)]
            state.append_each(lists, op[2])
            for k in lists:
                model[k] = [*model.get(k, []), op[2]]
        elif op[0] == "delete":
            state.delete(op[1])
            model.pop(op[1], None)
        elif op[0] == "keys":
            assert list(state.keys(op[1])) == _model_keys(model, op[1])
            held.append((state.keys(op[1]), _model_keys(model, op[1])))  # walked at the end
        elif op[0] == "begin" and saved is None:
            state.begin()
            saved = dict(model)
        elif op[0] == "commit" and saved is not None:
            state.commit()
            saved = None
        elif op[0] == "rollback" and saved is not None:
            state.rollback()
            model, saved = saved, None
    if saved is not None:
        state.rollback()
        model = saved
    for prefix in ["", "a", "a/", "b/", "chain/", "chain/members/", "z", "q"]:
        assert list(state.keys(prefix)) == _model_keys(model, prefix)
    assert {k: codec.decode(v) for k, v in state.snapshot().items()} == model
    for iterator, then in held:  # taken before later changes: the keys of its time
        assert list(iterator) == then


def test_more_prefixes_than_kept_stay_right() -> None:
    state = State()
    for i in range(3 * _PREFIXES_KEPT):
        state.put(f"p{i}/x", i)
        assert list(state.keys(f"p{i}/")) == [f"p{i}/x"]
    for i in range(3 * _PREFIXES_KEPT):  # asked again after being dropped: scanned again
        state.put(f"p{i}/y", i)
        assert list(state.keys(f"p{i}/")) == [f"p{i}/x", f"p{i}/y"]
    assert len(list(state.keys("p"))) == 6 * _PREFIXES_KEPT


def test_each_way_a_key_comes_or_goes_renews_the_answer() -> None:
    state = State()
    state.put("a/1", 1)
    assert list(state.keys("a/")) == ["a/1"]
    state.put("a/1", 2)  # overwritten: the same keys
    assert list(state.keys("a/")) == ["a/1"]
    state.append_each(["a/0", "b/0"], 3)
    assert list(state.keys("a/")) == ["a/0", "a/1"]
    state.delete("a/0")
    assert list(state.keys("a/")) == ["a/1"]
    state.begin()  # a key added, then rolled back
    state.put("a/2", 1)
    assert list(state.keys("a/")) == ["a/1", "a/2"]
    state.rollback()
    assert list(state.keys("a/")) == ["a/1"]
    state.begin()  # a key deleted, then rolled back
    state.delete("a/1")
    assert list(state.keys("a/")) == []
    state.rollback()
    assert list(state.keys("a/")) == ["a/1"]
    state.begin()  # committed
    state.put("a/3", 1)
    state.commit()
    assert list(state.keys("a/")) == ["a/1", "a/3"]
    assert list(state.keys("")) == ["a/1", "a/3", "b/0"]
