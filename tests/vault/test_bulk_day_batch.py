"""The bulk day-batch path (``check_wire`` on a CGM upload) against a per-reading reference.

The reference below is the obvious algorithm, one reading at a time, written here and not in
src: decode strictly, validate each record with the glucose package's per-record rules
(``Batch.from_value``, ``check_unique_times``), then for each record an HMAC salt (Python's
``hmac``), the leaf ``SHA-256(0x00 || CBOR({"salt", "reading"}))`` encoded by cbor2 itself, and
the RFC 9162 Merkle tree hash by its recursive definition; the blob's plaintext encoded by
cbor2 from the batch's values. The bulk path must give byte-identical roots and plaintexts,
take the bulk route for every valid CGM batch (so the test proves it, not the fallback), and
refuse every invalid upload with the reference's exact error type and message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger import codec
from glucoledger.crypto import PrivateKey, generate
from glucoledger.errors import GlucoledgerError, MalformedError
from glucoledger.glucose.readings import (
    CENSORED_RANGE,
    CGM_MAX_MGDL,
    CGM_MIN_MGDL,
    MAX_BATCH,
    MAX_TIME_MS,
    MIN_TIME_MS,
    TRENDS,
    Batch,
    CgmReading,
    check_unique_times,
)
from glucoledger.glucose.simulate import simulate_cgm
from glucoledger.ledger.merkle import EMPTY_ROOT
from glucoledger.vault.batch import _fast_cgm, check_wire, prepare_upload

T0 = 1_700_000_012_345
KEY = generate()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, as written: split at the largest power of two smaller than n."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def reference(wire: bytes) -> tuple[bytes, bytes, int, int, int]:
    """(root, plaintext, start, end, count) one reading at a time, or the refusal raised."""
    value = codec.decode(wire, max_size=1 << 26)
    if not isinstance(value, dict) or set(value) != {"chain", "patient", "uploader", "seq",
                                                     "batch", "salt_key", "key", "sig"}:
        from glucoledger.vault.batch import Upload
        Upload.from_value(value)  # names the reason
        raise AssertionError("unreachable")
    batch = Batch.from_value(value["batch"])
    check_unique_times(batch)
    from glucoledger.vault.batch import Upload
    Upload.from_value(value)  # the envelope's own rules (ids, seq, salt key, key)
    salt_key = value["salt_key"]
    leaves = []
    for i, record in enumerate(batch.items):
        salt = hmac.new(salt_key, b"salt" + i.to_bytes(4, "big"), hashlib.sha256).digest()
        leaf = cbor2.dumps({"salt": salt, "reading": record.to_value()}, canonical=True)
        leaves.append(hashlib.sha256(b"\x00" + leaf).digest())
    plaintext = cbor2.dumps({"v": 1, "salt_key": salt_key, "batch": batch.to_value()},
                            canonical=True)
    return _mth(leaves), plaintext, batch.start_ms, batch.end_ms, batch.count


def _wire(readings: list[CgmReading], *, key: PrivateKey = KEY, seq: int = 1) -> bytes:
    batch = Batch("cgm", tuple(readings), readings[0].time_ms, readings[-1].time_ms,
                  len(readings))
    up = prepare_upload("c/1", os.urandom(32), os.urandom(32), seq, batch, key)
    return codec.encode(up.to_value())


def _bulk(wire: bytes) -> bool:
    """Whether the bulk path takes ``wire`` (it may raise on garbage: check_wire then runs
    the general path, which names the fault)."""
    try:
        return _fast_cgm(wire) is not None
    except Exception:  # noqa: BLE001 - as check_wire does
        return False


def _same(wire: bytes) -> None:
    """The bulk path took this upload and agrees with the reference byte for byte."""
    assert _bulk(wire), "a valid CGM batch must take the bulk path"
    got = check_wire(wire)
    root, plaintext, start, end, count = reference(wire)
    assert (got.root, got.plaintext, got.start_ms, got.end_ms, got.count) == (
        root, plaintext, start, end, count)
    assert got.sig_ok is True


def _decided_alike(wire: bytes) -> bool:
    """check_wire decides ``wire`` as the reference does: the same bytes, or the same refusal
    (type and message). True when accepted. The bulk path takes nothing the reference
    refuses."""
    try:
        root, plaintext, start, end, count = reference(wire)
    except GlucoledgerError:
        _refused_alike(wire)
        assert not _bulk(wire)
        return False
    got = check_wire(wire, verify=False)
    assert (got.root, got.plaintext, got.start_ms, got.end_ms, got.count) == (
        root, plaintext, start, end, count)
    return True


def _refused_alike(wire: bytes) -> None:
    """The reference refuses ``wire``; check_wire refuses it with the same type and message."""
    with pytest.raises(GlucoledgerError) as ref:
        reference(wire)
    with pytest.raises(GlucoledgerError) as got:
        check_wire(wire)
    assert (type(got.value), got.value.message) == (type(ref.value), ref.value.message)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_days(seed: int) -> None:
    readings = simulate_cgm(seed, 3, T0 - T0 % 86_400_000, tz_offset_min=60 * seed)
    for k in range(0, len(readings), 288):
        _same(_wire(readings[k:k + 288]))


@pytest.mark.parametrize("step_min", [1, 5, 15])
def test_intervals_low_high_and_every_trend(step_min: int) -> None:
    rng = random.Random(step_min)
    out = []
    for i in range(288):
        side = rng.choice([None, None, "low", "high"])
        lo, hi = CENSORED_RANGE[side] if side else (CGM_MIN_MGDL, CGM_MAX_MGDL)
        out.append(CgmReading(T0 + i * step_min * 60_000, rng.randint(-720, 840),
                              rng.randint(lo, hi), rng.choice((*TRENDS, None)),
                              censored=side))
    _same(_wire(out))


def test_edges_of_every_bound() -> None:
    for n in (1, 2, 23, 24, 255, 256, 288):
        _same(_wire([CgmReading(MIN_TIME_MS + i, -720, CGM_MIN_MGDL, None) for i in range(n)]))
        _same(_wire([CgmReading(MAX_TIME_MS - n + 1 + i, 840, CGM_MAX_MGDL, "DoubleUp")
                     for i in range(n)]))
    edges = []
    for z in (-720, -257, -256, -25, -24, -1, 0, 23, 24, 255, 256, 839, 840):
        for m in (CGM_MIN_MGDL, 53, 54, 255, 256, CGM_MAX_MGDL):
            edges.append(CgmReading(MIN_TIME_MS + len(edges), z, m, None))
    for side, (lo, hi) in CENSORED_RANGE.items():
        for m in (lo, hi):
            edges.append(CgmReading(MAX_TIME_MS - 100 + len(edges), 0, m, None, censored=side))
    _same(_wire(sorted(edges, key=lambda r: r.time_ms)))
    _same(_wire([CgmReading(T0 + i, 0, 100, None) for i in range(MAX_BATCH)]))


def _value(n: int = 5) -> dict[str, Any]:
    v = codec.decode(_wire([CgmReading(T0 + i * 300_000, 60, 100 + i, "Flat")
                            for i in range(n)]))
    assert isinstance(v, dict)
    return v


def _with(value: dict[str, Any], k: int, **fields: Any) -> bytes:
    items = [dict(i) for i in value["batch"]["items"]]
    for name, v in fields.items():
        if v is _DROP:
            del items[k][name]
        else:
            items[k][name] = v
    batch = {**value["batch"], "items": items}
    return cbor2.dumps({**value, "batch": batch}, canonical=True)


_DROP = object()
_BAD_RECORD_FIELDS: list[dict[str, Any]] = [
    {"mgdl": CGM_MIN_MGDL - 1}, {"mgdl": CGM_MAX_MGDL + 1}, {"mgdl": True}, {"mgdl": "100"},
    {"mgdl": 2**40}, {"mgdl": -1},
    {"censored": "low", "mgdl": 54}, {"censored": "high", "mgdl": 250},
    {"censored": "mid"}, {"censored": None}, {"censored": 1},
    {"trend": "Sideways"}, {"trend": ""}, {"trend": 1},
    {"tz_offset_min": -721}, {"tz_offset_min": 841}, {"tz_offset_min": False},
    {"time_ms": MIN_TIME_MS - 1}, {"time_ms": MAX_TIME_MS + 1}, {"time_ms": -5},
    {"time_ms": 1 << 32}, {"type": "smbg"}, {"type": None},
    {"ns": "x"}, {"extra": 1}, {"mgdl": _DROP}, {"trend": _DROP}, {"type": _DROP},
    {"tz_offset_min": _DROP},
]


@pytest.mark.parametrize("fields", _BAD_RECORD_FIELDS, ids=repr)
@pytest.mark.parametrize("k", [0, 2, 4])
def test_every_invalid_record_is_refused_with_the_reference_message(
        fields: dict[str, Any], k: int) -> None:
    value = _value()
    _decided_alike(_with(value, k, **fields))


def test_order_duplicates_and_batch_fields_are_refused_alike() -> None:
    value = _value()
    times = [i["time_ms"] for i in value["batch"]["items"]]
    cases = [_with(value, 1, time_ms=times[0]), _with(value, 2, time_ms=times[1]),
             _with(value, 4, time_ms=times[0] - 1)]
    for name, v in [("count", 4), ("count", 6), ("count", True), ("start_ms", times[0] - 1),
                    ("end_ms", times[-1] + 1), ("items", [])]:
        cases.append(cbor2.dumps({**value, "batch": {**value["batch"], name: v}},
                                 canonical=True))
    for name, v in [("seq", 0), ("seq", True), ("patient", b"x"), ("salt_key", b"short"),
                    ("chain", 1), ("key", {"alg": "ed25519", "pub": b"\x00" * 5})]:
        cases.append(cbor2.dumps({**value, name: v}, canonical=True))
    cases.append(cbor2.dumps({**value, "batch": {**value["batch"], "stream": "smbg"}},
                             canonical=True))  # cgm records under another stream's name
    refused = [not _decided_alike(wire) for wire in cases]
    assert all(refused), [i for i, r in enumerate(refused) if not r]
    for wire, said in ((cases[-1], "a smbg batch holds smbg records, not cgm"),
                       (cbor2.dumps({**value, "seq": True}, canonical=True), "seq is an integer"),
                       (cbor2.dumps({**value, "chain": 1}, canonical=True), "text string")):
        with pytest.raises(MalformedError, match=said):
            check_wire(wire)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_byte_changed_is_decided_as_the_reference_decides(data: st.DataObject) -> None:
    """A valid upload with bytes overwritten anywhere (a field, a length, a key, a record
    boundary): accepted with the reference's bytes, or refused with its message."""
    wire = bytearray(_wire([CgmReading(T0 + i * 60_000, 0, 40 + i, "Flat")
                            for i in range(30)]))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    _decided_alike(bytes(wire))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 400_000), st.integers(-730, 850),
                          st.integers(30, 510), st.sampled_from((*TRENDS, None, "Up")),
                          st.sampled_from((None, "low", "high"))),
                min_size=1, max_size=40))
def test_random_records_are_decided_as_the_reference_decides(
        rows: list[tuple[int, int, int, str | None, str | None]]) -> None:
    value = _value()
    items = []
    t = T0
    for dt, z, m, trend, side in rows:
        t += dt
        item: dict[str, Any] = {"type": "cgm", "time_ms": t, "tz_offset_min": z, "mgdl": m,
                                "trend": trend}
        if side is not None:
            item["censored"] = side
        items.append(item)
    batch = {**value["batch"], "items": items, "start_ms": items[0]["time_ms"],
             "end_ms": items[-1]["time_ms"], "count": len(items)}
    wire = cbor2.dumps({**value, "batch": batch}, canonical=True)
    if _decided_alike(wire):
        assert _bulk(wire)  # every valid CGM batch takes the bulk path
