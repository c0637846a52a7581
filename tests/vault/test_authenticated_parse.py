"""The first-read fast path: a GCM-authenticated plaintext is parsed without the canonical
re-scan, to exactly the batch the strict parse gives, and still refuses what is not a batch."""

from __future__ import annotations

import os

import cbor2
import pytest

from glucoledger.errors import MalformedError
from glucoledger.glucose.readings import Batch
from glucoledger.glucose.simulate import simulate_patient
from glucoledger.vault.batch import batch_plaintext, read_plaintext


def test_same_batch_as_the_strict_parse() -> None:
    cgm = simulate_patient(3, 1, 1_790_000_000_000)["cgm"]
    batch = Batch("cgm", tuple(cgm), cgm[0].time_ms, cgm[-1].time_ms, len(cgm))
    plain = batch_plaintext(os.urandom(32), batch.to_value())
    assert read_plaintext(plain, authenticated=True) == read_plaintext(plain)
    assert read_plaintext(plain, authenticated=True)[1] == batch


@pytest.mark.parametrize("data", [
    b"\xff\x00",  # not CBOR
    cbor2.dumps([1, 2]),  # CBOR, not a batch
    cbor2.dumps({"v": 1, "salt_key": b"k" * 32, "batch": {"stream": "cgm", "items": [1.5]}}),
])
def test_what_is_not_a_batch_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedError):
        read_plaintext(data, authenticated=True)
