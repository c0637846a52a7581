"""The data.commit index (state/access.py ``_index_commit``) files each batch under every hour
it covers, appending the entry's encoding to each hour's bytes (``State.append_each``). The
state it writes must be byte for byte what the one-put-per-hour loop wrote, for batches
spanning many hours, sharing boundary hours, and overlapping."""

from __future__ import annotations

import random

from glucoledger import codec
from glucoledger.crypto import generate
from glucoledger.ledger.trust import TrustCache
from glucoledger.ledger.tx import SignedTx, Transaction
from glucoledger.state.access import _bucket_key, _index_commit, _span_key
from glucoledger.state.machine import Context
from glucoledger.state.store import State

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR


def _reference(state: State, stx: SignedTx) -> None:
    """The loop as it was: one get and one put per hour covered."""
    b = stx.tx.body
    patient, stream, start, end = b["patient"], b["stream"], b["start"], b["end"]
    first, last = start // HOUR, (end - 1) // HOUR
    entry = [b["ct"], stx.tx_hash, start, end, b["count"]]
    for bucket in range(first, last + 1):
        key = _bucket_key(patient, stream, bucket)
        state.put(key, [*(state.get(key) or []), entry])
    span = state.get(_span_key(patient, stream))
    state.put(_span_key(patient, stream),
              [first, last] if span is None else [min(span[0], first), max(span[1], last)])


def test_index_bytes_equal_the_per_hour_loop() -> None:
    rng = random.Random(7)
    key, trust = generate(), TrustCache()
    patients = [bytes([i]) * 32 for i in range(3)]
    got, want = State(), State()
    for seq in range(1, 120):
        start = T0 + rng.randrange(0, 72) * HOUR + rng.choice([0, 1, HOUR // 2])
        end = start + rng.choice([1, HOUR - 1, HOUR, HOUR + 1, 24 * HOUR, 25 * HOUR])
        body = {"patient": rng.choice(patients), "stream": rng.choice(["cgm", "smbg"]),
                "start": start, "end": end, "count": rng.randint(1, 288),
                "ct": rng.randbytes(32)}
        stx = trust.sign_tx(Transaction("c", "data.commit", body, bytes(32), seq), [key])
        for s in (got, want):
            s.begin()
        _index_commit(got, stx, Context("c", 1, 0))  # the index reads no context
        _reference(want, stx)
        for s in (got, want):
            s.commit()
        assert got.take_changes() == want.take_changes()
    assert got.snapshot() == want.snapshot()
    # some hours hold several entries (a CBOR array of two or more)
    assert any(k.startswith("dc/") and v[0] >= 0x82 for k, v in got.snapshot().items())


def test_append_each_is_a_put_of_the_longer_list_for_every_key_and_rolls_back() -> None:
    start = {"a": codec.encode([7]), "n": codec.encode(list(range(23)))}
    s, t = State(start), State(start)
    s.begin()
    s.append_each(["a", "b", "n", "b"], [1, b"x"])  # "b" twice: two entries
    t.put("a", [7, [1, b"x"]])
    t.put("b", [[1, b"x"], [1, b"x"]])
    t.put("n", [*range(23), [1, b"x"]])  # 24 items: the head grows a byte
    assert s.snapshot() == t.snapshot()
    s.rollback()
    assert s.snapshot() == start
