"""A summary grant's day stays as it was first released (node/settled.py).

The attack: a reader holding only a summary grant reads a finished day, the patient's phone
uploads a reading of that day late (it was offline; a backfill), and the reader reads the
day again: before, the two summaries differed by exactly that reading (its count, and the
mean moved by its value). The same held for an edit of a reading, and for an erasure after
the read (the day without the erased batch gives the batch by difference).

Now a day is summarized for a summary grant only ``SETTLE_MS`` after it ends, and then as
the first such read found it: a later batch, edit or deletion leaves it as it was, and a
later erasure leaves it with no number. A day nobody read counts everything uploaded before
its first read, however late (a history imported at once). The patient and raw grantees
see every upload as before.
"""

from __future__ import annotations

import pytest

from glucoledger.errors import OutOfRangeError
from glucoledger.glucose.readings import Batch, Carbs, CgmReading, Record
from glucoledger.node.access import AccessService, SignedSummary
from glucoledger.node.devices import bind_device
from glucoledger.node.erasure import ErasureService
from glucoledger.node.settled import SETTLE_MS, SettledDays

from .conftest import DAY, HOUR, NOW, Care

MIN = 60_000
D = NOW - 2 * DAY  # a finished day of the fixture's 14 days of 5-minute readings


def _summary(care: Care, start: int, end: int, who: str = "endo") -> SignedSummary:
    p = getattr(care, who)
    rel = care.access.read(care.request(p, view="summary",
                                        window={"from": start, "to": end}).raw)
    assert isinstance(rel, SignedSummary)
    rel.verify(care.node.node_key.public)
    return rel


def _upload(care: Care, readings: list[Record], stream: str = "cgm") -> None:
    dev = care.world.add_device(f"CGM-{readings[0].time_ms}-{len(readings)}")
    bind_device(care.node, care.alice.id, care.alice.keys[:1], dev.id)
    care.ingest.ingest_batches([Batch(stream, tuple(readings), readings[0].time_ms,
                                      readings[-1].time_ms, len(readings))],
                               patient=care.alice.id, uploader=dev.id, signer=dev.key)


def _whole_day(day: int, base: int = 100) -> list[Record]:
    return [CgmReading(day + i * 5 * MIN, 0, base + i % 60) for i in range(288)]


@pytest.fixture
def summary_grant(care: Care) -> Care:
    care.grant(care.endo, view="summary", window={"from": NOW - 60 * DAY, "to": NOW + 30 * DAY})
    care.clock.advance(SETTLE_MS + HOUR)  # every day before NOW has settled
    return care


def test_a_late_reading_of_a_released_day_changes_nothing_for_a_summary_grant(
        summary_grant: Care) -> None:
    care = summary_grant
    first = _summary(care, D, D + DAY)
    assert first.summary.count > 250
    # late: a reading at a new instant (a backfill) and one correcting an existing reading
    lone = CgmReading(D + 13 * HOUR + 150_000, 0, 397)
    existing = [r for r in care.readings["cgm"] if D <= r.time_ms < D + DAY][100]
    _upload(care, [lone])
    _upload(care, [CgmReading(existing.time_ms, 0, 39)])
    again = _summary(care, D, D + DAY)
    assert again.summary.to_value() == first.summary.to_value()  # not one number moved
    assert again.profile.to_value() == first.profile.to_value()
    assert again.grounds.batches != first.grounds.batches  # the late batches are in its window
    # a node that never read this day before (a fresh service, another member) agrees:
    # everything it needs is on the ledger
    cold = AccessService(care.node, care.vault, cache=0, summaries=0)
    fresh = cold.read(care.request(care.endo, view="summary",
                                   window={"from": D, "to": D + DAY}).raw)
    assert isinstance(fresh, SignedSummary)
    assert fresh.summary.to_value() == first.summary.to_value()
    # the patient herself counts both late readings
    own = _summary(care, D, D + DAY, who="alice")
    assert own.summary.count == first.summary.count + 1 and own.summary.superseded == 1


def test_a_day_not_released_before_counts_what_came_late(summary_grant: Care) -> None:
    """A history uploaded long after its days (an import) counts in full at the first read."""
    care = summary_grant
    old = NOW - 40 * DAY
    _upload(care, _whole_day(old))
    s = _summary(care, old, old + DAY)
    assert s.summary.count == 288
    own = _summary(care, old, old + DAY, who="alice")
    assert own.summary.to_value() == s.summary.to_value()


def test_a_day_is_summarized_only_once_settled_and_reading_early_fixes_nothing(
        care: Care) -> None:
    care.grant(care.endo, view="summary", window={"from": NOW - 60 * DAY, "to": NOW + 30 * DAY})
    last = NOW - DAY  # the fixture's last day, finished at NOW
    care.clock.advance(HOUR)
    with pytest.raises(OutOfRangeError) as info:
        _summary(care, last, NOW)
    assert f"{SETTLE_MS // HOUR} hours after it ends" in str(info.value)
    assert "ask again later" in str(info.value)
    # a period ending with it: the days before it count, it adds nothing
    two = _summary(care, last - DAY, NOW)
    one = _summary(care, last - DAY, last)
    assert two.summary.count == one.summary.count
    # the phone's backfill arrives before the day settles: it counts from then on
    care.clock.advance(HOUR)
    _upload(care, [CgmReading(last + 20 * HOUR + 150_000, 0, 222)])
    care.clock.advance(SETTLE_MS)
    settled = _summary(care, last, NOW)
    own = _summary(care, last, NOW, who="alice")
    assert settled.summary.to_value() == own.summary.to_value()
    assert settled.summary.count == own.summary.count > 250


def test_an_erasure_after_the_release_leaves_the_day_without_a_number(
        summary_grant: Care) -> None:
    care = summary_grant
    x, y = NOW - 40 * DAY, NOW - 39 * DAY  # two days, a batch each
    _upload(care, _whole_day(x, 90))
    _upload(care, _whole_day(y, 150))
    both = _summary(care, x, y + DAY)
    assert both.summary.count == 576
    erasure = ErasureService(care.node, care.vault)
    # a meal of day x erased: the CGM days stay as they were
    _upload(care, [Carbs(x + 12 * HOUR, 0, 450)], stream="carbs")
    erasure.erase_as(care.alice.id, care.alice.keys[:1], ["carbs"], x, x + DAY)
    assert _summary(care, x, y + DAY).summary.to_value() == both.summary.to_value()
    # an hour of day x's CGM erased: the whole batch goes, and day x with it
    erasure.erase_as(care.alice.id, care.alice.keys[:1], ["cgm"], x + HOUR, x + 2 * HOUR)
    with pytest.raises(OutOfRangeError) as info:
        _summary(care, x, x + DAY)
    message = str(info.value)
    assert "erased in part by the patient after being summarized" in message, message
    # the two days now count day y only: nothing of day x by difference
    after = _summary(care, x, y + DAY)
    only_y = _summary(care, y, y + DAY)
    assert after.summary.count == only_y.summary.count == 288
    assert after.summary.mean_dmgdl == only_y.summary.mean_dmgdl


def test_an_erasure_before_the_first_release_leaves_what_remains(summary_grant: Care) -> None:
    care = summary_grant
    x = NOW - 40 * DAY
    _upload(care, [r for r in _whole_day(x) if r.time_ms < x + 18 * HOUR])
    _upload(care, [r for r in _whole_day(x) if r.time_ms >= x + 18 * HOUR])
    ErasureService(care.node, care.vault).erase_as(care.alice.id, care.alice.keys[:1], ["cgm"],
                                                   x + 19 * HOUR, x + 20 * HOUR)
    # 18 hours are left (75 % of the day): the day counts them, as the patient sees them
    s = _summary(care, x, x + DAY)
    assert s.summary.count == 216
    assert s.summary.to_value() == _summary(care, x, x + DAY, who="alice").summary.to_value()


def test_a_patient_dropped_from_memory_is_read_again_alike(summary_grant: Care) -> None:
    care = summary_grant
    _summary(care, D - DAY, D + DAY)
    settled = SettledDays(care.node, patients=1)
    first = settled.days(care.alice.id, care.clock.ms, ["cgm"])
    assert set(first.first) == {D // DAY - 1, D // DAY}
    settled.days(care.bob.id, care.clock.ms, ["cgm"])  # alice is dropped
    assert settled.days(care.alice.id, care.clock.ms, ["cgm"]) == first
