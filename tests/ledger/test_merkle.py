"""Tests for glucoledger.ledger.merkle.

Vectors: tests/testdata/rfc9162 (transparency-dev/merkle, Apache-2.0, see its README.md).
Reference: a naive recursive implementation of RFC 9162 2.1.1 MTH, 2.1.3.1 PATH and 2.1.4.1
PROOF/SUBPROOF written here from the RFC text, independent of the module under test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.errors import (
    ConsistencyError,
    MalformedError,
    NotFoundError,
    OutOfRangeError,
    VerificationError,
)
from glucoledger.ledger.merkle import (
    EMPTY_ROOT,
    MAX_CONSISTENCY_HASHES,
    MAX_INCLUSION_HASHES,
    CompactTree,
    MemoryNodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "testdata" / "rfc9162"
INCLUSION_FILES = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((VECTORS / "consistency").rglob("*.json"))
#: transparency-dev/merkle at 417fb0c ships 98 inclusion and 98 consistency vector files.
EXPECTED_VECTOR_FILES = 196

#: Vectors where we are deliberately stricter than the Go reference: it compares the roots of
#: equal-size trees as opaque bytes; we refuse any root that is not a 32-byte hash.
STRICTER = {
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": (
        "12-byte placeholder roots: not SHA-256 hashes, so MalformedError"
    ),
}

Error = (VerificationError, MalformedError)


def _b64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def _proof(value: list[str] | None) -> list[bytes]:
    # The vectors are Go JSON: a nil []byte slice is written as null and means "no hashes".
    return [] if value is None else [base64.b64decode(h) for h in value]


def _rel(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


def test_vector_file_count() -> None:
    assert len(INCLUSION_FILES) + len(CONSISTENCY_FILES) == EXPECTED_VECTOR_FILES
    assert len(INCLUSION_FILES) == len(CONSISTENCY_FILES) == EXPECTED_VECTOR_FILES // 2


def test_stricter_list_is_current() -> None:
    for rel in STRICTER:
        assert json.loads((VECTORS / rel).read_text())["wantErr"] is False


def _expect(rel: str, want_err: bool, call: Callable[[], None]) -> None:
    if rel in STRICTER:
        with pytest.raises(MalformedError):
            call()
    elif want_err:
        with pytest.raises(Error):
            call()
    else:
        assert call() is None  # type: ignore[func-returns-value]


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_rel)
def test_inclusion_vector(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    leaf, root = _b64(v["leafHash"]), _b64(v["root"])

    def call() -> None:
        verify_inclusion(leaf, v["leafIdx"], v["treeSize"], _proof(v["proof"]), root)  # type: ignore[arg-type]

    _expect(_rel(path), v["wantErr"], call)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_rel)
def test_consistency_vector(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    root1, root2 = _b64(v["root1"]), _b64(v["root2"])

    def call() -> None:
        verify_consistency(v["size1"], v["size2"], _proof(v["proof"]), root1, root2)  # type: ignore[arg-type]

    _expect(_rel(path), v["wantErr"], call)


def test_reference_tree_roots() -> None:
    ref = json.loads((VECTORS / "reference-tree.json").read_text())
    leaves = [leaf_hash(bytes.fromhex(x)) for x in ref["leaf_inputs_hex"]]
    roots = [bytes.fromhex(x) for x in ref["root_hash_hex_by_tree_size"]]
    assert len(leaves) == 8 and len(roots) == 9
    tree = CompactTree()
    assert tree.root() == roots[0] == EMPTY_ROOT == root_of([])
    for n in range(1, 9):
        tree.append(leaves[n - 1])
        assert root_of(leaves[:n]) == roots[n]
        assert tree.root() == roots[n]
        assert _mth(tuple(leaves[:n])) == roots[n]


# --- naive reference (RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1) ---------------------------------------


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


@cache
def _mth(d: tuple[bytes, ...]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]  # already leaf hashes
    k = _k(len(d))
    return node_hash(_mth(d[:k]), _mth(d[k:]))


def _ref_path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*_ref_path(m, d[:k]), _mth(d[k:])]
    return [*_ref_path(m - k, d[k:]), _mth(d[:k])]


def _ref_subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*_ref_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_ref_subproof(m - k, d[k:], False), _mth(d[:k])]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


class CountingReader:
    def __init__(self, inner: MemoryNodes) -> None:
        self.inner = inner
        self.reads = 0

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.inner.node(level, index)


MAX_GENERATED = 70
ALL_LEAVES = tuple(_leaves(MAX_GENERATED))


@pytest.fixture(scope="module")
def grown() -> tuple[MemoryNodes, list[bytes]]:
    """Nodes stored only from CompactTree.append outputs, and the root after every size."""
    nodes = MemoryNodes()
    tree = CompactTree()
    roots = [tree.root()]
    for h in ALL_LEAVES:
        nodes.add(tree.append(h))
        roots.append(tree.root())
    return nodes, roots


@pytest.mark.parametrize("size", range(1, MAX_GENERATED + 1))
def test_generated_proofs_match_reference(
    size: int, grown: tuple[MemoryNodes, list[bytes]]
) -> None:
    nodes, roots = grown
    reader = CountingReader(nodes)
    d = ALL_LEAVES[:size]
    assert roots[size] == _mth(d) == root_of(d)
    for index in range(size):
        reader.reads = 0
        proof = inclusion_proof(reader, index, size)
        assert reader.reads <= 2 * size.bit_length()
        assert proof == _ref_path(index, d)
        verify_inclusion(d[index], index, size, proof, roots[size])
    for size1 in range(size + 1):
        reader.reads = 0
        proof = consistency_proof(reader, size1, size)
        assert reader.reads <= 2 * size.bit_length() + 1
        want = [] if size1 in (0, size) else _ref_subproof(size1, d, True)
        assert proof == want
        verify_consistency(size1, size, proof, roots[size1], roots[size])


def test_append_reports_perfect_nodes() -> None:
    tree = CompactTree()
    leaves = _leaves(8)
    assert tree.append(leaves[0]) == [(0, 0, leaves[0])]
    assert tree.append(leaves[1]) == [
        (0, 1, leaves[1]),
        (1, 0, node_hash(leaves[0], leaves[1])),
    ]
    tree.extend(leaves[2:7])
    out = tree.append(leaves[7])
    assert [(lvl, idx) for lvl, idx, _ in out] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert out[-1][2] == tree.root() == _mth(tuple(leaves))


def test_append_inner_is_append_without_the_leaf() -> None:
    """The chain store keeps only the interior nodes (it hashes a leaf from its transaction):
    ``append_inner`` gives what ``append`` gives but the leaf, and grows the tree the same."""
    whole, inner = CompactTree(), CompactTree()
    for leaf in ALL_LEAVES[:70]:
        assert inner.append_inner(leaf) == whole.append(leaf)[1:]
        assert (inner.size, inner.frontier) == (whole.size, whole.frontier)
    with pytest.raises(MalformedError):
        inner.append_inner(b"short")
    assert inner.size == 70 and inner.root() == _mth(ALL_LEAVES[:70])


def test_compact_tree_resumes_from_persisted_state() -> None:
    tree = CompactTree()
    tree.extend(ALL_LEAVES[:37])
    resumed = CompactTree(tree.size, tree.frontier)
    twin = tree.copy()
    for t in (tree, resumed, twin):
        t.extend(ALL_LEAVES[37:50])
    assert tree.root() == resumed.root() == twin.root() == _mth(ALL_LEAVES[:50])
    twin.append(ALL_LEAVES[50])
    assert tree.size == 50 and twin.size == 51


def test_compact_tree_rejects_bad_state() -> None:
    with pytest.raises(ValueError):
        CompactTree(-1)
    with pytest.raises(MalformedError, match="frontier"):
        CompactTree(3, [EMPTY_ROOT])
    with pytest.raises(MalformedError):
        CompactTree(1, [b"short"])
    tree = CompactTree()
    with pytest.raises(MalformedError):
        tree.append(b"\x00" * 31)
    assert tree.size == 0 and tree.root() == EMPTY_ROOT


def test_memory_nodes_refuses_a_different_tree() -> None:
    nodes = MemoryNodes(CompactTree().extend(_leaves(4)))
    assert len(nodes) == 4 + 2 + 1
    nodes.add([(0, 0, _leaves(1)[0])])  # same hash again is fine
    with pytest.raises(ConsistencyError):
        nodes.add([(0, 4, EMPTY_ROOT), (0, 0, EMPTY_ROOT)])
    assert (0, 4) not in nodes  # all or nothing
    with pytest.raises(NotFoundError):
        nodes.node(3, 0)
    with pytest.raises(NotFoundError):
        inclusion_proof(nodes, 0, 5)


def test_generation_rejects_impossible_requests(grown: tuple[MemoryNodes, list[bytes]]) -> None:
    nodes, _ = grown
    with pytest.raises(OutOfRangeError):
        inclusion_proof(nodes, 5, 5)
    with pytest.raises(OutOfRangeError):
        consistency_proof(nodes, 6, 5)
    with pytest.raises(ValueError):
        inclusion_proof(nodes, -1, 5)
    with pytest.raises(ValueError):
        consistency_proof(nodes, -1, 5)


def test_verification_rejects_malformed_input() -> None:
    d = ALL_LEAVES[:5]
    nodes = MemoryNodes(CompactTree().extend(d))
    root, proof = _mth(d), inclusion_proof(nodes, 2, 5)
    verify_inclusion(d[2], 2, 5, proof, root)
    bad: list[tuple[Any, ...]] = [
        (d[2], 5, 5, proof, root),  # index == size
        (d[2], 2, 3, proof, root),  # leaf 2 of 3 has a 1-hash path, not 3
        (d[2], 2, 5, proof[:-1], root),
        (d[2], 2, 5, [*proof, root], root),
        (d[2], 2, 5, None, root),
        (d[2], 2, 5, b"".join(proof), root),
        (d[2], 2, 5, [proof[0][:31], *proof[1:]], root),
        (d[2][:31], 2, 5, proof, root),
        (d[2], 2, 5, proof, root + b"\x00"),
        (d[2], 2, 5, proof, None),
        (d[2], -1, 5, proof, root),
        (d[2], True, 5, proof, root),
        (d[2], 2, 1 << 64, proof, root),
        (d[2], 2, 5, [root] * (MAX_INCLUSION_HASHES + 1), root),
    ]
    for args in bad:
        with pytest.raises(MalformedError):
            verify_inclusion(*args)
    with pytest.raises(MalformedError):
        root_from_inclusion(d[2], 5, 5, proof)
    r3 = _mth(d[:3])
    cproof = consistency_proof(nodes, 3, 5)
    verify_consistency(3, 5, cproof, r3, root)
    cbad: list[tuple[Any, ...]] = [
        (5, 3, cproof, r3, root),
        (3, 5, cproof[:-1], r3, root),
        (3, 5, None, r3, root),
        (3, 5, cproof, r3[:16], root),
        (3, 5, cproof, r3, None),
        (5, 5, [root], root, root),
        (0, 5, [root], EMPTY_ROOT, root),
        (3, 5, [root] * (MAX_CONSISTENCY_HASHES + 1), r3, root),
    ]
    for args in cbad:
        with pytest.raises(MalformedError):
            verify_consistency(*args)


def test_consistency_edge_cases() -> None:
    root = _mth(ALL_LEAVES[:5])
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, root)
    verify_consistency(5, 5, [], root, root)
    with pytest.raises(ConsistencyError):
        verify_consistency(0, 5, [], root, root)
    with pytest.raises(ConsistencyError):
        verify_consistency(0, 0, [], root, root)
    with pytest.raises(ConsistencyError, match="same tree size"):
        verify_consistency(5, 5, [], root, EMPTY_ROOT)


def test_messages_say_what_and_what_to_do() -> None:
    d = ALL_LEAVES[:8]
    nodes = MemoryNodes(CompactTree().extend(d))
    proof = inclusion_proof(nodes, 5, 8)
    with pytest.raises(ConsistencyError) as err:
        verify_inclusion(d[5], 5, 8, proof, EMPTY_ROOT)
    assert "leaf 5 in tree of size 8 does not lead to the given root" in err.value.message


# --- trees too large to build: all leaves equal, so node (level, i) depends on level only ------


class UniformReader:
    def __init__(self) -> None:
        self.by_level = [leaf_hash(b"same")]
        for _ in range(64):
            self.by_level.append(node_hash(self.by_level[-1], self.by_level[-1]))

    def node(self, level: int, index: int) -> bytes:
        return self.by_level[level]

    def root(self, size: int) -> bytes:
        levels = [lvl for lvl in range(size.bit_length() - 1, -1, -1) if size >> lvl & 1]
        if not levels:
            return EMPTY_ROOT
        acc = self.by_level[levels[-1]]
        for lvl in reversed(levels[:-1]):
            acc = node_hash(self.by_level[lvl], acc)
        return acc


@pytest.mark.parametrize(
    ("size1", "size2"),
    [
        ((1 << 64) - 3, (1 << 64) - 1),
        (1 << 63, (1 << 64) - 1),
        ((1 << 40) + 12345, (1 << 62) + 3),
        (1, (1 << 64) - 1),
    ],
)
def test_largest_trees(size1: int, size2: int) -> None:
    u = UniformReader()
    r1, r2 = u.root(size1), u.root(size2)
    proof = consistency_proof(u, size1, size2)
    assert len(proof) <= MAX_CONSISTENCY_HASHES
    verify_consistency(size1, size2, proof, r1, r2)
    for index in (0, size1 - 1, size2 - 2, size2 - 1):
        path = inclusion_proof(u, index, size2)
        assert len(path) <= MAX_INCLUSION_HASHES
        verify_inclusion(u.by_level[0], index, size2, path, r2)
    if size1 == (1 << 64) - 3:
        assert len(proof) == MAX_CONSISTENCY_HASHES  # the bound is reached, not just respected


# --- properties --------------------------------------------------------------------------------


def _inclusion_shape(index: int, size: int) -> tuple[str, ...] | None:
    """The hashing steps RFC 9162 2.1.3.2 takes (L: proof hash on the left), or None if the
    (index, size) pair is structurally invalid. Same shape, same computation, same root."""
    if not 0 <= index < size:
        return None
    fn, sn, steps = index, size - 1, []
    while sn:
        if fn & 1 or fn == sn:
            steps.append("L")
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            steps.append("R")
        fn, sn = fn >> 1, sn >> 1
    return tuple(steps)


def test_size_is_not_bound_by_the_proof() -> None:
    d = ALL_LEAVES[:8]
    proof = inclusion_proof(MemoryNodes(CompactTree().extend(d)), 0, 8)
    verify_inclusion(d[0], 0, 7, proof, _mth(d))  # as the module docstring warns


def test_index_is_bound_by_the_proof_shape() -> None:
    for size in range(1, 300):
        shapes = [_inclusion_shape(i, size) for i in range(size)]
        assert len(set(shapes)) == size


def _flip(proof: Sequence[bytes], which: int, bit: int) -> list[bytes]:
    out = list(proof)
    h = bytearray(out[which])
    h[bit // 8] ^= 1 << (bit % 8)
    out[which] = bytes(h)
    return out


leaf_lists = st.lists(st.binary(max_size=40), max_size=150)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.integers(0, 150))
def test_compact_tree_equals_root_of(data: list[bytes], cut: int) -> None:
    hashes = [leaf_hash(x) for x in data]
    tree = CompactTree()
    completed = tree.extend(hashes)
    assert tree.size == len(hashes)
    assert tree.root() == root_of(hashes) == _mth(tuple(hashes))
    assert len(tree.frontier) == len(hashes).bit_count()
    # Every perfect node is reported exactly once: n leaves have 2n - popcount(n) of them.
    assert len({(lvl, idx) for lvl, idx, _ in completed}) == len(completed)
    assert len(completed) == 2 * len(hashes) - len(hashes).bit_count()
    cut = min(cut, len(hashes))
    resumed = CompactTree(*_state(hashes[:cut]))
    resumed.extend(hashes[cut:])
    assert resumed.root() == tree.root()


def _state(hashes: list[bytes]) -> tuple[int, tuple[bytes, ...]]:
    t = CompactTree()
    t.extend(hashes)
    return t.size, t.frontier


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[int, int, MemoryNodes]:
    size = draw(st.integers(1, 200))
    index = draw(st.integers(0, size - 1))
    return index, size, MemoryNodes(CompactTree().extend(_leaves(size)))


@settings(max_examples=200, deadline=None)
@given(inclusion_cases(), st.data())
def test_inclusion_bit_flip_or_wrong_position_fails(
    case: tuple[int, int, MemoryNodes], data: st.DataObject
) -> None:
    index, size, nodes = case
    leaf, root = nodes.node(0, index), root_of(_leaves(size))
    proof = inclusion_proof(nodes, index, size)
    verify_inclusion(leaf, index, size, proof, root)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(ConsistencyError):
            verify_inclusion(leaf, index, size, _flip(proof, which, bit), root)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ConsistencyError):
        verify_inclusion(_flip([leaf], 0, bit)[0], index, size, proof, root)
    with pytest.raises(ConsistencyError):
        verify_inclusion(leaf, index, size, proof, _flip([root], 0, bit)[0])
    index2 = data.draw(st.integers(0, 300))
    size2 = data.draw(st.integers(0, 300))
    if (index2, size2) == (index, size):
        return
    if _inclusion_shape(index2, size2) == _inclusion_shape(index, size):
        # Same hashing steps: the proof alone cannot tell these apart; the signed checkpoint
        # binds size to root (see the module docstring).
        verify_inclusion(leaf, index2, size2, proof, root)
    else:
        with pytest.raises(Error):
            verify_inclusion(leaf, index2, size2, proof, root)


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, 200))
    return draw(st.integers(1, size2 - 1)), size2


def _consistency_shape(size1: int, size2: int) -> tuple[object, ...] | None:
    """RFC 9162 2.1.4.2's steps for (size1, size2), or None if no proof can have that shape."""
    if not 0 < size1 < size2:
        return None
    fn, sn = size1 - 1, size2 - 1
    prepended = size1 & (size1 - 1) == 0
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    steps: list[str] = []
    while sn:
        if fn & 1 or fn == sn:
            steps.append("both")
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            steps.append("second")
        fn, sn = fn >> 1, sn >> 1
    return prepended, tuple(steps)


@settings(max_examples=200, deadline=None)
@given(consistency_cases(), st.data())
def test_consistency_bit_flip_or_wrong_sizes_fail(
    case: tuple[int, int], data: st.DataObject
) -> None:
    size1, size2 = case
    leaves = _leaves(size2)
    nodes = MemoryNodes(CompactTree().extend(leaves))
    r1, r2 = root_of(leaves[:size1]), root_of(leaves)
    proof = consistency_proof(nodes, size1, size2)
    verify_consistency(size1, size2, proof, r1, r2)
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ConsistencyError):
        verify_consistency(size1, size2, _flip(proof, which, bit), r1, r2)
    with pytest.raises(ConsistencyError):
        verify_consistency(size1, size2, proof, _flip([r1], 0, bit)[0], r2)
    with pytest.raises(ConsistencyError):
        verify_consistency(size1, size2, proof, r1, _flip([r2], 0, bit)[0])
    s1 = data.draw(st.integers(1, 300))
    s2 = data.draw(st.integers(s1 + 1, 301))
    if (s1, s2) == (size1, size2):
        return
    if _consistency_shape(s1, s2) == _consistency_shape(size1, size2):
        verify_consistency(s1, s2, proof, r1, r2)  # indistinguishable, as for inclusion
    else:
        with pytest.raises(Error):
            verify_consistency(s1, s2, proof, r1, r2)
