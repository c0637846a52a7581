"""The socket.io ``dataUpdate`` payload (interop/nsfeed.py) and the version marker of an
annex (interop/nsannex.py ``with_version``): pure functions, checked against what
AndroidAPS's v1 client reads (NSSgv: ``mgdl``, ``mills``, ``_id``; treatments' ``action``)."""

from __future__ import annotations

import pytest

from glucoledger.interop.nsannex import Annex, make, with_version
from glucoledger.interop.nsfeed import Feed, mills_of, payload

T = 1_796_000_000_000


def test_entries_split_by_type_as_ddata_holds_them() -> None:
    docs = [{"_id": "b" * 24, "type": "sgv", "sgv": 120, "date": T + 300_000,
             "direction": "Flat", "device": "xDrip-DexcomG6", "noise": 1},
            {"_id": "a" * 24, "type": "sgv", "sgv": 118, "date": T},
            {"_id": "c" * 24, "type": "mbg", "mbg": 131, "date": T, "device": "meter"},
            {"_id": "d" * 24, "type": "cal", "date": T, "scale": 1, "intercept": 2,
             "slope": 3},
            {"_id": "e" * 24, "type": "sgv", "date": T}]  # no value: not an sgv
    out = payload("entries", docs)
    assert [(s["_id"], s["mgdl"], s["mills"]) for s in out["sgvs"]] == [
        ("a" * 24, 118, T), ("b" * 24, 120, T + 300_000)]
    assert out["sgvs"][1]["direction"] == "Flat" and out["sgvs"][1]["noise"] == 1
    assert out["mbgs"] == [{"_id": "c" * 24, "mgdl": 131, "mills": T, "device": "meter"}]
    assert out["cals"][0]["slope"] == 3


def test_times_of_treatments_and_profiles() -> None:
    assert mills_of({"created_at": "2026-12-01T10:00:00.000Z"}) == 1_796_119_200_000
    assert mills_of({"created_at": "2026-12-01T11:00:00+01:00"}) == 1_796_119_200_000
    assert mills_of({"date": 5.0}) == 5 and mills_of({"date": True}) is None
    assert mills_of({"created_at": "yesterday"}) is None
    out = payload("treatments", [{"_id": "x", "created_at": "2026-12-01T10:00:00Z"},
                                 {"_id": "y"}])  # no time: not pushed
    assert out == {"treatments": [{"_id": "x", "created_at": "2026-12-01T10:00:00Z",
                                   "mills": 1_796_119_200_000}]}
    profiles = payload("profile", [{"startDate": "2026-12-02T00:00:00Z", "n": 2},
                                   {"startDate": "2026-11-01T00:00:00Z", "n": 1}])
    assert [p["n"] for p in profiles["profiles"]] == [1, 2]  # the newest last


def test_a_feed_sends_everything_once_then_changes_and_removals() -> None:
    feed = Feed()
    a = {"_id": "a", "created_at": "2026-12-01T10:00:00Z", "carbs": 10}
    b = {"_id": "b", "created_at": "2026-12-01T10:05:00Z", "insulin": 1.0}
    since = mills_of(a) - 1  # type: ignore[operator]
    full = feed.delta("treatments", [a, b], full=True, since_ms=since)
    assert [d["_id"] for d in full["treatments"]] == ["a", "b"]
    assert "action" not in full["treatments"][0]
    assert feed.delta("treatments", [a, b], full=False, since_ms=since) == {}
    c = {"_id": "c", "created_at": "2026-12-01T10:10:00Z", "carbs": 5}
    out = feed.delta("treatments", [dict(a, carbs=8), c], full=False, since_ms=since)
    assert [(d["_id"], d.get("action"), d.get("carbs")) for d in out["treatments"]] == [
        ("a", "update", 8), ("c", None, 5), ("b", "remove", None)]
    # one that only aged out of the window is not a removal
    later = mills_of(c)
    assert feed.delta("treatments", [c], full=False, since_ms=later) == {}  # type: ignore[arg-type]


def test_a_delta_read_in_spans_removes_and_forgets_only_inside_them() -> None:
    feed = Feed()
    docs = {k: {"_id": k, "created_at": f"2026-12-01T10:{m:02d}:00Z", "carbs": 10}
            for k, m in (("a", 0), ("b", 20), ("c", 40))}
    t = {k: mills_of(d) for k, d in docs.items()}
    since = t["a"] - 1
    feed.delta("treatments", list(docs.values()), full=True, since_ms=since)
    # b's span read again and b gone: b removed and forgotten; a and c not read: kept
    out = feed.delta("treatments", [], full=False, since_ms=since,
                     spans=[(t["b"] - 1, t["b"] + 1)])
    assert out == {"treatments": [{"_id": "b", "action": "remove"}]}
    assert sorted(feed.sent["treatments"]) == ["a", "c"]
    # c changed, read from c on: an update; a, outside, neither removed nor forgotten
    out = feed.delta("treatments", [dict(docs["c"], carbs=12)], full=False, since_ms=since,
                     spans=[(t["c"], 1 << 62)])
    assert [(d["_id"], d.get("action")) for d in out["treatments"]] == [("c", "update")]
    assert sorted(feed.sent["treatments"]) == ["a", "c"]
    # the whole window read again without a: a removed now
    out = feed.delta("treatments", [dict(docs["c"], carbs=12)], full=False, since_ms=since)
    assert out == {"treatments": [{"_id": "a", "action": "remove"}]}


def test_an_annex_carries_the_version_a_part_was_uploaded_as() -> None:
    text = make("treatments", "Carb Correction|1", {"carbs": 30, "notes": "x"}, {"carbs": 30},
                "treatments[0]")
    first = Annex.parse(text, ["treatments"])
    assert first is not None and first.version == 1
    third = Annex.parse(with_version(text, 3), ["treatments"])
    assert third is not None and third.version == 3
    assert (third.key, third.fields) == (first.key, first.fields)
    with pytest.raises(ValueError):
        with_version(text, 1)
    # a version marker that is not 2 or more is not one of ours: read as no annex
    assert with_version(text, 2) == text[:-1] + ',"v":2}'  # the same text as built here
    for bad in ('"v":1', '"v":"2"', '"v":2.5', '"v":0'):
        assert Annex.parse(text[:-1] + "," + bad + "}", ["treatments"]) is None
