"""node/checked.py: a worker's judgment of a Nightscout upload, rebuilt and re-checked.

The round trip through CBOR (as the frame carries it) gives exactly what the ordering
process would have judged itself; every way a worker's hand-off can be wrong (a record out
of range, a future time, records that do not match the documents, another clock, version
or collection, a shape error) makes ``accept_checked`` answer None, so the ordering process
judges the body itself.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import cbor2
import pytest

from glucoledger.api.workers import decode_frame, encode_frame
from glucoledger.interop import nsaccept
from glucoledger.node.checked import CLOCK_SLACK_MS, accept_checked, check_upload
from glucoledger.node.nightscout import batches_of

NOW = 1_790_000_000_000
BODY: list[dict[str, Any]] = [
    {"type": "sgv", "sgv": 120, "date": NOW - 60_000, "direction": "Flat"},
    {"type": "sgv", "sgv": 131.5, "date": NOW - 360_000},
    {"type": "sgv", "sgv": 120, "date": NOW - 60_000, "direction": "Flat"},  # a repeat
    {"type": "sgv", "sgv": 9999, "date": NOW - 660_000},  # refused: no sensor reading
    {"type": "mbg", "mbg": 140, "date": NOW - 900_000},
]
TREATMENTS: list[dict[str, Any]] = [
    {"eventType": "Meal Bolus", "insulin": 4.5, "carbs": 40,
     "created_at": "2026-09-21T10:00:00Z"},
    {"eventType": "Note", "notes": "run", "created_at": "2026-09-21T11:00:00Z"},
]


def _wire(v: Any) -> Any:
    """What the ordering process receives: the value through a frame."""
    return decode_frame(encode_frame(v)[4:])


@pytest.mark.parametrize("collection,body", [("entries", BODY), ("treatments", TREATMENTS)])
def test_the_round_trip_is_the_ordering_process_own_judgment(collection: str,
                                                             body: Any) -> None:
    raw = json.dumps(body).encode()
    checked = _wire(check_upload("POST", f"/api/v1/{collection}", raw, NOW))
    judged = accept_checked(checked, collection, NOW + 1_000)
    assert judged is not None
    own = nsaccept.parse_each(collection, json.loads(raw), NOW)
    assert len(judged.outcomes) == len(own) == len(body)
    for got, want in zip(judged.outcomes, own, strict=True):
        assert type(got) is type(want)
        if isinstance(want, nsaccept.Accepted):
            assert isinstance(got, nsaccept.Accepted)
            assert got.doc == want.doc and got.target == want.target
            assert got.sent == want.sent
        elif isinstance(want, nsaccept.Refused):
            assert isinstance(got, nsaccept.Refused)
            assert got.error.message == want.error.message
            assert got.error.code == want.error.code
            assert nsaccept.refused_answer(collection, got.sent, got.error) == \
                nsaccept.refused_answer(collection, want.sent, want.error)
        else:
            assert got == want
    docs = [o.doc for o in own if isinstance(o, nsaccept.Accepted)]
    assert judged.batches == batches_of(docs, NOW)


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/v1/entries", b"[]"), ("POST", "/api/v1/entries/sgv.json", b"[]"),
    ("POST", "/api/uploads", b"[]"), ("POST", "/api/v1/entries", b"[nope"),
    ("POST", "/api/v1/entries", b"NaN"), ("POST", "/api/v1/entries", b"[" * 100_000),
    ("PUT", "/api/v1/nothing", b"[]"),
])
def test_what_a_worker_leaves_to_the_ordering_process(method: str, path: str,
                                                      body: bytes) -> None:
    assert check_upload(method, path, body, NOW) is None


def _good() -> dict[str, Any]:
    v = _wire(check_upload("POST", "/api/v1/entries", json.dumps(BODY).encode(), NOW))
    assert isinstance(v, dict)
    return v


def _set(path: list[Any], value: Any) -> Any:
    def change(v: dict[str, Any]) -> None:
        target: Any = v
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
    return change


BAD = {
    "a reading out of range": _set(["batches", 0, "items", 0, "value"], 4000),
    "a reading in the future": _set(["batches", 0, "items", 0, "time_ms"], NOW + 86_400_000),
    "a batch count that lies": _set(["batches", 0, "count"], 7),
    "a record less than the documents hold": lambda v: v["batches"][0]["items"].pop(),
    "a batch dropped": lambda v: v["batches"].pop(),
    "the worker's clock far off": _set(["now_ms"], NOW - CLOCK_SLACK_MS - 1),
    "another version": _set(["v"], 2),
    "another collection": _set(["collection"], "treatments"),
    "an outcome of an unknown kind": _set(["outcomes", 0, 0], "z"),
    "a repeat of a document that is not there": _set(["outcomes", 2, 1], 99),
    "a time that is not an integer": _set(["outcomes", 0, 2], "soon"),
    "no outcomes": _set(["outcomes"], []),
    "batches not a list": _set(["batches"], {"a": 1}),
    "an item not a pair": _set(["outcomes", 0, 3], [["cgm"]]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_wrong_hand_off_is_judged_again_by_the_ordering_process(case: str) -> None:
    v = copy.deepcopy(_good())
    assert accept_checked(v, "entries", NOW) is not None
    BAD[case](v)
    assert accept_checked(_wire(v), "entries", NOW) is None


@pytest.mark.parametrize("junk", [None, 1, "x", [], {}, {"v": 1}, b"\x00"])
def test_junk_is_never_a_hand_off(junk: Any) -> None:
    assert accept_checked(junk, "entries", NOW) is None


def test_frames_hold_data_only() -> None:
    with pytest.raises(ValueError):
        decode_frame(b"\xff\xff")
    with pytest.raises(ValueError):
        encode_frame({"x": object()})  # cbor2 cannot encode it: not data
    assert decode_frame(cbor2.dumps([1, b"a", "b"])) == [1, b"a", "b"]
