"""Uploads received as bytes: the CGM fast path accepts exactly what the general path accepts,
gives the same root and plaintext, and refuses the rest with the general path's error."""

from __future__ import annotations

import hmac
import os
import random

import cbor2
import pytest

from glucoledger import codec
from glucoledger.crypto import PrivateKey, generate
from glucoledger.crypto.hashing import hmac_sha256_many
from glucoledger.errors import InputError, MalformedError, OutOfRangeError
from glucoledger.glucose.readings import (
    CGM_MAX_MGDL,
    CGM_MIN_MGDL,
    MAX_TIME_MS,
    MIN_TIME_MS,
    TRENDS,
    Batch,
    CgmReading,
    SmbgReading,
)
from glucoledger.vault.batch import (
    _fast_cgm,
    batch_plaintext,
    check_wire,
    check_wires,
    prepare_upload,
)

T0 = 1_700_000_012_345


def _upload(key: PrivateKey, n: int, rng: random.Random, t0: int = T0) -> bytes:
    items = tuple(CgmReading(t0 + i * 300_000, rng.randint(-720, 840),
                             rng.randint(CGM_MIN_MGDL, CGM_MAX_MGDL),
                             rng.choice((*TRENDS, None))) for i in range(n))
    up = prepare_upload("c/1", os.urandom(32), os.urandom(32), rng.randint(1, 1 << 40),
                        Batch("cgm", items, items[0].time_ms, items[-1].time_ms, n), key)
    return codec.encode(up.to_value())


@pytest.mark.parametrize("n", [1, 2, 23, 24, 255, 256, 288, 1000])
def test_fast_path_equals_general_path(n: int) -> None:
    rng = random.Random(n)
    key = generate()
    wire = _upload(key, n, rng)
    fast = _fast_cgm(wire)
    assert fast is not None
    from glucoledger.vault.batch import Upload
    slow = Upload.from_value(codec.decode(wire, max_size=1 << 26))
    assert fast == slow.checked()
    assert fast.plaintext == batch_plaintext(slow.salt_key, slow.batch.to_value())
    assert check_wire(wire).sig_ok is True


def test_record_encoding_matches_codec_at_the_range_edges() -> None:
    key = generate()
    for t in (MIN_TIME_MS, MAX_TIME_MS - 300_000):
        for z in (-720, -1, 0, 23, 24, 840):
            for m in (CGM_MIN_MGDL, 255, 256, CGM_MAX_MGDL):
                r = CgmReading(t, z, m, None)
                up = prepare_upload("c", bytes(32), bytes(range(32)), 1,
                                    Batch("cgm", (r,), t, t, 1), key, salt_key=bytes(32))
                wire = codec.encode(up.to_value())
                assert _fast_cgm(wire) == up.checked()


def _mutations(value: dict) -> list[dict]:  # type: ignore[type-arg]
    def item(**kw: object) -> dict:  # type: ignore[type-arg]
        v = {**value, "batch": {**value["batch"]}}
        v["batch"]["items"] = [dict(value["batch"]["items"][0], **kw),
                               *value["batch"]["items"][1:]]
        return v
    first = value["batch"]["items"][0]
    return [
        item(mgdl=CGM_MIN_MGDL - 1), item(mgdl=CGM_MAX_MGDL + 1), item(mgdl=True),
        item(trend="Sideways"), item(tz_offset_min=841), item(time_ms=MIN_TIME_MS - 1),
        item(type="smbg"), item(extra=1),
        item(time_ms=value["batch"]["items"][1]["time_ms"]),  # duplicate time
        item(time_ms=value["batch"]["items"][1]["time_ms"] + 1),  # out of order
        {**value, "seq": 0}, {**value, "patient": b"x"}, {**value, "salt_key": b"short"},
        {**value, "batch": {**value["batch"], "count": 99}},
        {**value, "batch": {**value["batch"], "start_ms": first["time_ms"] - 1}},
        {**value, "batch": {**value["batch"], "items": []}},
        {**value, "key": {"alg": "ed25519", "pub": b"\x00" * 5}},
    ]


def test_invalid_uploads_are_refused_as_by_the_general_path() -> None:
    key = generate()
    value = codec.decode(_upload(key, 3, random.Random(1)))
    for bad in _mutations(value):
        wire = cbor2.dumps(bad, canonical=True)
        assert _fast_cgm(wire) is None
        with pytest.raises(InputError):
            check_wire(wire)
    dup = {**value, "batch": {**value["batch"]}}
    items = [dict(i) for i in value["batch"]["items"]]
    items[1]["time_ms"] = items[0]["time_ms"]  # two readings of one moment, range unchanged
    dup["batch"]["items"] = items
    wire = cbor2.dumps(dup, canonical=True)
    assert _fast_cgm(wire) is None
    with pytest.raises(OutOfRangeError, match="duplicate time"):
        check_wire(wire)


def test_non_canonical_bytes_are_refused() -> None:
    key = generate()
    wire = _upload(key, 3, random.Random(2))
    value = codec.decode(wire)
    assert b"\x63c/1" in wire
    bad = [cbor2.dumps(dict(reversed(list(value.items())))),  # keys out of order
           wire + b"\x00",  # a trailing byte
           wire.replace(b"\x63c/1", b"\x78\x03c/1", 1)]  # a length not in shortest form
    for b in bad:
        assert b != wire
        with pytest.raises(MalformedError):
            check_wire(b)


def test_a_bad_signature_is_reported_not_raised() -> None:
    key = generate()
    value = codec.decode(_upload(key, 2, random.Random(3)))
    value["sig"] = bytes(64)
    checked = check_wire(codec.encode(value))
    assert checked.sig_ok is False
    [out] = check_wires([b"\xff"])
    assert isinstance(out, MalformedError)


def test_other_streams_take_the_general_path() -> None:
    key = generate()
    items = (SmbgReading(T0, 60, 120), SmbgReading(T0 + 60_000, 60, 130))
    up = prepare_upload("c", os.urandom(32), os.urandom(32), 1,
                        Batch("smbg", items, T0, T0 + 60_000, 2), key)
    wire = codec.encode(up.to_value())
    assert _fast_cgm(wire) is None
    assert check_wire(wire, verify=False) == up.checked()


def test_hmac_with_one_key_schedule_is_hmac() -> None:
    for n in (0, 1, 32, 64, 65, 200):
        k = os.urandom(n)
        msgs = [os.urandom(i) for i in range(80)]
        assert hmac_sha256_many(k, msgs) == [hmac.digest(k, m, "sha256") for m in msgs]


_ODD = [None, True, False, 0, -1, 39, 40, 400, 401, -721, 841, 2**40, "cgm", "Flat", "x", b"x",
        [], {}, MIN_TIME_MS - 1, MIN_TIME_MS, MAX_TIME_MS, MAX_TIME_MS + 1]


@pytest.mark.parametrize("seed", range(40))
def test_bulk_fast_path_agrees_with_general_path_on_one_odd_field(seed: int) -> None:
    """The column-wise checks of the fast path accept exactly what the general path accepts:
    one field of one record set to an odd value (wrong type, a bool for an int, an edge of
    a range, a time out of order, an extra or missing key)."""
    from glucoledger.vault.batch import Upload

    rng = random.Random(seed)
    value = codec.decode(_upload(generate(), rng.randint(1, 30), rng))
    items = [dict(i) for i in value["batch"]["items"]]
    k = rng.randrange(len(items))
    choice = rng.choice(["time_ms", "tz_offset_min", "mgdl", "trend", "type", "extra", "drop"])
    if choice == "extra":
        items[k]["note"] = 1
    elif choice == "drop":
        del items[k][rng.choice(sorted(items[k]))]
    elif choice == "time_ms" and len(items) > 1 and rng.random() < 0.5:
        j = rng.randrange(len(items))
        items[k]["time_ms"] = items[j]["time_ms"]
    else:
        items[k][choice] = rng.choice(_ODD)
    batch = {**value["batch"], "items": items, "start_ms": items[0].get("time_ms"),
             "end_ms": items[-1].get("time_ms")}
    try:
        wire = cbor2.dumps({**value, "batch": batch}, canonical=True)
    except Exception:  # noqa: BLE001 - an unencodable mutation proves nothing
        pytest.skip("mutation cannot be encoded")
    try:
        general = Upload.from_value(codec.decode(wire)).checked()
    except (InputError, TypeError):
        general = None
    fast = _fast_cgm(wire)
    if general is None:
        assert fast is None
    else:
        assert fast is None or fast == general
        assert check_wire(wire, verify=False) == general
