"""A summary grant releases summaries of whole, finished UTC days only (audit finding
"summary-only grant releases every raw reading").

The attack: a reader holding only a summary grant asks for a summary of two seconds around
each reading (the summary's mean is the reading), or for two overlapping summaries (two
24-hour windows five minutes apart: the difference of their sums is the readings of those
five minutes). The rule, in the consent decision itself (state/consent.py ``_check_days``),
so every path that reads a summary is covered and the ledger's record of the read says
so: under a summary grant the permitted window is a run of whole UTC days (one fixed grid
the reader cannot move), ending no later than the last midnight; a request that does not
start and end at UTC midnights is refused (``not_whole_days``), audited, and releases
nothing. And under a summary grant a day counts only when its readings cover 70 % of it
(node/access.py ``sufficient_days``), so a day of one reading gives no number.

The patient's own reads and raw grants are not affected.
"""

from __future__ import annotations

import itertools

import pytest

from glucoledger import codec
from glucoledger.errors import OutOfRangeError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.ledger.tx import SignedTx
from glucoledger.node.access import AccessDeniedError, RawRelease, SignedSummary
from glucoledger.node.audit import audit_trail
from glucoledger.node.devices import bind_device
from glucoledger.state.access import access_key, released_count
from glucoledger.state.consent import DENY_REASONS, Permit, Request, decide, summary_days

from .conftest import DAY, NOW, Care

MIN = 60_000


def _summary(care: Care, window: dict[str, int] | None, who: str = "endo") -> SignedSummary:
    p = getattr(care, who)
    rel = care.access.read(care.request(p, view="summary", window=window).raw)
    assert isinstance(rel, SignedSummary)
    rel.verify(care.node.node_key.public)
    return rel


def _refused(care: Care, window: dict[str, int]) -> AccessDeniedError:
    """The summary ``window`` is refused as not whole days: audited in the patient's trail
    with its reason, nothing decrypted, nothing cached, one transaction in the log."""
    opened: list[bytes] = []
    real_open = care.vault.open
    care.vault.open = lambda row, **kw: opened.append(row.ct) or real_open(row, **kw)  # type: ignore[method-assign]
    log, cached = care.node.store.tx_count(), dict(care.access._computed)
    env = care.request(care.endo, view="summary", window=window).raw
    try:
        with pytest.raises(AccessDeniedError) as info:
            care.access.read(env)
    finally:
        care.vault.open = real_open  # type: ignore[method-assign]
    assert info.value.code == "not_whole_days", info.value.message
    assert "ask for whole days: start at midnight UTC" in info.value.message
    assert opened == [] and care.access._computed == cached
    assert care.node.store.tx_count() == log + 1  # the audited denial, nothing else
    tx = SignedTx.decode(env).tx_hash
    record = care.node.state.get(access_key(tx))
    assert record["decision"]["decision"] == "deny" and released_count(record) == 0
    assert record["decision"]["reason"] == "not_whole_days"
    trail = [e for e in audit_trail(care.node, care.alice.id) if e.tx_hash == tx]
    assert trail and trail[0].outcome != "permit" and trail[0].reason == "not_whole_days"
    return info.value


def test_two_seconds_around_each_reading_release_nothing(care: Care) -> None:
    """The finding's reproduction: one summary of [T - 1 s, T + 1 s) per reading."""
    care.grant(care.endo, view="summary", window={"last_days": 14})
    cgm = care.readings["cgm"]
    for r in cgm[1000:1012]:  # an hour of consecutive readings
        _refused(care, {"from": r.time_ms - 1000, "to": r.time_ms + 1000})
    # a window of one to a few hours, or 23 h 55 min, is no better
    t0 = cgm[2000].time_ms
    for length in (5 * MIN, 60 * MIN, 6 * 60 * MIN, DAY - 5 * MIN):
        _refused(care, {"from": t0, "to": t0 + length})


def test_overlapping_shifted_windows_are_refused(care: Care) -> None:
    """Two 24-hour windows five minutes apart, and a 2-day window against a shifted one:
    differencing needs a window that does not start at a UTC midnight, and none is
    permitted."""
    care.grant(care.endo, view="summary", window={"last_days": 14})
    d = NOW - 5 * DAY
    whole = _summary(care, {"from": d, "to": d + DAY})
    assert (whole.grounds.start_ms, whole.grounds.end_ms) == (d, d + DAY)
    for shift in (5 * MIN, -5 * MIN, 60 * MIN, 12 * 60 * MIN):
        _refused(care, {"from": d + shift, "to": d + DAY + shift})
        _refused(care, {"from": d, "to": d + 2 * DAY + shift})
        _refused(care, {"from": d + shift, "to": d + 2 * DAY})


def test_no_permitted_window_is_finer_than_a_day(care: Care) -> None:
    """Every window an attacker can ask for, on a 20-minute grid over three days, through
    the ledger's own decision: each permit is whole UTC days, so any two permitted
    summaries differ by whole days (the grant releases those anyway)."""
    care.grant(care.endo, view="summary", window={"last_days": 14})
    t = care.clock.ms + 1000
    grid = range(NOW - 6 * DAY, NOW - 3 * DAY + 1, 20 * MIN)
    permits = set()
    for lo, hi in itertools.combinations(grid, 2):
        d = decide(care.node.state, care.endo.id,
                   Request(care.alice.id, ("cgm",), "summary", {"from": lo, "to": hi}), t)
        if isinstance(d, Permit):
            permits.add((d.start_ms, d.end_ms))
        else:
            assert d.reason == "not_whole_days", d
    assert permits == {(NOW - 6 * DAY, NOW - 5 * DAY), (NOW - 6 * DAY, NOW - 4 * DAY),
                       (NOW - 6 * DAY, NOW - 3 * DAY), (NOW - 5 * DAY, NOW - 4 * DAY),
                       (NOW - 5 * DAY, NOW - 3 * DAY), (NOW - 4 * DAY, NOW - 3 * DAY)}


def test_whole_days_still_work_and_differ_by_days_only(care: Care) -> None:
    care.grant(care.endo, view="summary", window={"last_days": 14})
    # no window: the grant's 14 whole days before the last UTC midnight
    full = _summary(care, None)
    assert (full.grounds.start_ms, full.grounds.end_ms) == (NOW - 14 * DAY, NOW)
    assert full.summary.count > 13 * 250 and full.summary.sufficient
    # last_days 7: the last 7 whole days, whatever the time of day of the read
    care.clock.advance(9 * 3_600_000 + 17 * MIN)
    week = _summary(care, {"last_days": 7})
    assert (week.grounds.start_ms, week.grounds.end_ms) == (NOW - 7 * DAY, NOW)
    assert summary_days(7, care.clock.ms) == {"from": NOW - 7 * DAY, "to": NOW}
    # more days than the grant's 14: its 14 whole days
    for window in ({"last_days": 30}, {"from": NOW - 30 * DAY, "to": NOW}):
        more = _summary(care, window)
        assert (more.grounds.start_ms, more.grounds.end_ms) == (NOW - 14 * DAY, NOW)
    # two overlapping runs of whole days: their counts differ by whole days of readings
    a = _summary(care, {"from": NOW - 3 * DAY, "to": NOW})
    b = _summary(care, {"from": NOW - 2 * DAY, "to": NOW})
    day = _summary(care, {"from": NOW - 3 * DAY, "to": NOW - 2 * DAY})
    assert a.summary.count - b.summary.count == day.summary.count > 250


def test_a_summary_never_covers_a_day_still_filling_up(care: Care) -> None:
    """Today's summary read twice, minutes apart, would give the new reading: under a
    summary grant the window ends at the last midnight, even when the grant runs on."""
    care.grant(care.endo, view="summary", window={"from": NOW - 20 * DAY, "to": NOW + 20 * DAY})
    care.clock.advance(10 * 3_600_000)
    _refused(care, {"from": NOW, "to": NOW + DAY})
    s = _summary(care, {"from": NOW - DAY, "to": NOW + DAY})
    assert (s.grounds.start_ms, s.grounds.end_ms) == (NOW - DAY, NOW)


def _upload(care: Care, readings: list[CgmReading]) -> None:
    dev = care.world.add_device(f"CGM-{readings[0].time_ms}")
    bind_device(care.node, care.alice.id, care.alice.keys[:1], dev.id)
    care.ingest.ingest_batches([Batch("cgm", tuple(readings), readings[0].time_ms,
                                      readings[-1].time_ms, len(readings))],
                               patient=care.alice.id, uploader=dev.id, signer=dev.key)


def test_a_day_with_one_reading_gives_no_number(care: Care) -> None:
    """A whole day holding one reading: no summary of it, and a period holding it gives the
    same numbers as one without it, so subtracting two periods gives nothing."""
    lone_day = NOW - 20 * DAY
    lone = CgmReading(lone_day + 13 * 3_600_000 + 7 * MIN, 60, 251)
    _upload(care, [lone])
    # a sparse day too: 20 readings (an hour and 40 minutes of a day)
    sparse_day = NOW - 17 * DAY
    _upload(care, [CgmReading(sparse_day + i * 5 * MIN, 60, 90 + i) for i in range(20)])
    care.grant(care.endo, view="summary", window={"from": NOW - 30 * DAY, "to": NOW})
    for day in (lone_day, sparse_day):
        with pytest.raises(OutOfRangeError) as info:
            _summary(care, {"from": day, "to": day + DAY})
        assert "70 %" in str(info.value)
    with_lone = _summary(care, {"from": lone_day, "to": NOW})
    without = _summary(care, {"from": lone_day + DAY, "to": NOW})
    assert with_lone.summary.count == without.summary.count
    assert with_lone.summary.mean_dmgdl == without.summary.mean_dmgdl
    assert with_lone.summary.tar250_bp <= without.summary.tar250_bp  # nothing of it counts
    # the patient herself, and a raw grantee asking for a summary, see the reading
    own = _summary(care, {"from": lone_day, "to": lone_day + DAY}, who="alice")
    assert own.summary.count == 1 and own.summary.mean_dmgdl == 2510
    care.grant(care.nurse, view="raw", window={"from": NOW - 30 * DAY, "to": NOW})
    nurse = _summary(care, {"from": lone_day, "to": lone_day + DAY}, who="nurse")
    assert nurse.summary.count == 1


def test_a_period_without_cgm_readings_is_refused_not_a_crash(care: Care) -> None:
    """No CGM reading in the window (none uploaded then, or the patient erased them): a
    summary grantee is told no day counts (once the empty day list crashed the read)."""
    empty = {"from": NOW - 90 * DAY, "to": NOW - 80 * DAY}
    care.grant(care.endo, view="summary", window=empty)
    with pytest.raises(OutOfRangeError) as info:
        _summary(care, empty)
    assert "70 %" in str(info.value)


def test_the_patient_and_raw_grantees_are_not_affected(care: Care) -> None:
    care.grant(care.nurse, view="raw", window={"last_days": 14})
    r = care.readings["cgm"][1500]
    tiny = {"from": r.time_ms - 1000, "to": r.time_ms + 1000}
    for who in ("alice", "nurse"):
        s = _summary(care, tiny, who=who)
        assert s.summary.count == 1 and s.summary.mean_dmgdl == r.mgdl * 10
    raw = care.access.read(care.request(care.nurse, view="raw", window=tiny).raw)
    assert isinstance(raw, RawRelease) and len(raw.records) == 1


def test_a_raw_grant_next_to_a_summary_grant_still_permits(care: Care) -> None:
    """The first grant that permits wins: a summary grant refusing a window does not stop a
    raw grant of the same reader permitting it."""
    care.grant(care.endo, view="summary", window={"last_days": 14})
    care.grant(care.endo, view="raw", window={"last_days": 3})
    r = care.readings["cgm"][-10]
    s = _summary(care, {"from": r.time_ms - 1000, "to": r.time_ms + 1000})
    assert s.summary.count == 1


def test_the_refusal_says_what_to_ask_for() -> None:
    assert DENY_REASONS["not_whole_days"].startswith(
        "ask for whole days: start at midnight UTC (00:00Z) and end at a later midnight UTC")


def test_chains_before_the_day_rule_replay_their_summary_reads_as_decided(care: Care) -> None:
    """A chain founded on state rule set 1 recorded summaries over any window inside the
    grant: replaying its reads must decide them so again, or its blocks would no longer
    verify. New chains (rule set 2) refuse them."""
    from glucoledger.state.store import State

    care.grant(care.endo, view="summary", window={"last_days": 14})
    t = care.clock.ms + 1000
    req = Request(care.alice.id, ("cgm",), "summary",
                  {"from": NOW - 3 * DAY + MIN, "to": NOW - 3 * DAY + 2 * MIN})
    assert decide(care.node.state, care.endo.id, req, t).reason == "not_whole_days"
    data = care.node.state.snapshot()
    genesis = codec.decode(data["chain/genesis"])
    assert genesis.pop("rules") == 5
    data["chain/genesis"] = codec.encode(genesis)  # the same chain, founded on rule set 1
    d = decide(State(data), care.endo.id, req, t)
    assert isinstance(d, Permit) and (d.start_ms, d.end_ms) == (req.window["from"],
                                                                req.window["to"])
