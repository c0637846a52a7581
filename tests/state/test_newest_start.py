"""``newest_start`` (state/access.py): the latest hour from which a patient's batches of some
streams hold at least ``need`` records, read from the batch index that ``data.commit`` files.
Checked against a count over every batch filed, for batches of every length (a reading, an
hour, a day, more), starts on and off the hour, several streams and patients."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.crypto import generate
from glucoledger.ledger.trust import TrustCache
from glucoledger.ledger.tx import Transaction
from glucoledger.state.access import _index_commit, newest_start
from glucoledger.state.machine import Context
from glucoledger.state.store import State

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
KEY, TRUST = generate(), TrustCache()
PATIENTS = [bytes([1]) * 32, bytes([2]) * 32]

batches = st.lists(st.tuples(
    st.sampled_from(PATIENTS), st.sampled_from(["cgm", "smbg", "insulin"]),
    st.integers(0, 96 * HOUR),  # start, from T0
    st.sampled_from([1, 60_000, HOUR - 1, HOUR, HOUR + 1, 24 * HOUR, 30 * HOUR]),  # length
    st.integers(1, 288)), max_size=40)


def _filed(items: list[tuple[bytes, str, int, int, int]]) -> State:
    state = State()
    for seq, (patient, stream, start, length, count) in enumerate(items, 1):
        body = {"patient": patient, "stream": stream, "start": T0 + start,
                "end": T0 + start + length, "count": count, "ct": seq.to_bytes(32, "big")}
        stx = TRUST.sign_tx(Transaction("c", "data.commit", body, bytes(32), seq), [KEY])
        _index_commit(state, stx, Context("c", 1, 0))  # reads no context
    return state


def _counted(items: list[tuple[bytes, str, int, int, int]], patient: bytes,
             streams: tuple[str, ...], lo: int, need: int) -> int:
    """The latest whole hour after ``lo`` with ``need`` records in batches starting there or
    later, by summing over every batch."""
    last = max((T0 + s + n - 1) // HOUR for p, st_, s, n, _ in items
               if p == patient and st_ in streams) if any(
        p == patient and st_ in streams for p, st_, *_ in items) else lo // HOUR
    for hour in range(last, lo // HOUR, -1):
        held = sum(c for p, st_, s, _, c in items
                   if p == patient and st_ in streams and T0 + s >= hour * HOUR)
        if held >= need:
            return hour * HOUR
    return lo


@settings(max_examples=300, deadline=None)
@given(batches, st.sampled_from([("cgm",), ("cgm", "smbg"), ("insulin",)]),
       st.integers(0, 100 * HOUR), st.integers(1, 600))
def test_the_start_is_the_latest_hour_holding_the_records_asked_for(
        items: list[tuple[bytes, str, int, int, int]], streams: tuple[str, ...], lo: int,
        need: int) -> None:
    state = _filed(items)
    got = newest_start(state, PATIENTS[0], streams, T0 + lo, need)
    assert got == _counted(items, PATIENTS[0], streams, T0 + lo, need)
    if got > T0 + lo:  # narrowed: the batches from there on hold enough
        assert got % HOUR == 0
        assert sum(c for p, st_, s, _, c in items if p == PATIENTS[0] and st_ in streams
                   and T0 + s >= got) >= need


def test_nothing_filed_or_nothing_needed_is_the_whole_window() -> None:
    state = _filed([(PATIENTS[1], "cgm", 5 * HOUR, 60_000, 3)])
    assert newest_start(state, PATIENTS[0], ("cgm",), T0, 1) == T0  # another patient's
    assert newest_start(state, PATIENTS[1], ("smbg",), T0, 1) == T0  # another stream's
    assert newest_start(state, PATIENTS[1], ("cgm",), T0, 0) == T0
    assert newest_start(state, PATIENTS[1], ("cgm",), T0, 3) == T0 + 5 * HOUR
    assert newest_start(state, PATIENTS[1], ("cgm",), T0, 4) == T0  # fewer than asked
