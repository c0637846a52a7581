""""The last 14 days" are 14 whole local days in the patient's zone (node/localdays.py).

A summary or report of the last N days covers ``[midnight(today - N), midnight(today))`` in
her zone, so the same data gives the same numbers at any time of the day; across a
daylight-saving change the period is 14 local days (25 or 23 hours for the day of the
change). A ``last_days`` grant permits exactly that (state.consent.granted_span) and never
more than N days and an hour of data, none older than N + 1 days and an hour.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from glucoledger.files import atomic_write_json
from glucoledger.glucose.agp import compute_agp
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node import accounts
from glucoledger.node.access import AccessService, RawRelease, SignedSummary
from glucoledger.node.devices import bind_device
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.localdays import (
    LocalDays,
    last_days,
    node_zone,
    patient_zone,
    reader_days,
    whole_days,
)
from glucoledger.node.report import agp_report
from glucoledger.node.service import Node
from glucoledger.node.world import World
from glucoledger.state.consent import Deny, Permit, Request, decide, grant_key, grants_index_key
from glucoledger.state.store import State

from .conftest import Clock, Person

DAY = 86_400_000
HOUR = 3_600_000
PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=zone).timestamp() * 1000)


def local(ms: int, zone: ZoneInfo = PARIS) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


# --- the window ------------------------------------------------------------------------------
@pytest.mark.parametrize(("today", "start", "hours"), [
    ("2026-11-02", "2026-10-19", 14 * 24 + 1),  # spans the fall-back of 25 Oct 2026
    ("2026-04-05", "2026-03-22", 14 * 24 - 1),  # spans the spring-forward of 29 Mar 2026
    ("2026-07-15", "2026-07-01", 14 * 24),
])
def test_whole_local_days_whatever_the_time_of_day(today: str, start: str, hours: int) -> None:
    windows = {whole_days(14, at(f"{today}T{clock}"), "Europe/Paris", PARIS)
               for clock in ("00:00:00", "00:00:01", "09:30", "12:00", "23:59:59.999")}
    assert len(windows) == 1  # the same period all day
    w = windows.pop()
    assert (w.start_ms, w.end_ms) == (at(f"{start}T00:00"), at(f"{today}T00:00"))
    assert local(w.start_ms).time() == local(w.end_ms).time() == datetime.min.time()
    assert w.end_ms - w.start_ms == hours * HOUR
    assert w.window() == {"from": w.start_ms, "to": w.end_ms}
    # at the next local midnight the period moves by one whole day
    nxt = whole_days(14, w.end_ms + DAY + 2 * HOUR, "Europe/Paris", PARIS)
    assert (local(nxt.start_ms).date() - local(w.start_ms).date()).days == 1
    assert (local(nxt.end_ms).date() - local(w.end_ms).date()).days == 1


def test_a_skipped_midnight_starts_the_day_at_the_change() -> None:
    # Chile moves from 00:00 to 01:00 on 6 Sep 2026: that day starts at 01:00 local
    chile = ZoneInfo("America/Santiago")
    w = whole_days(1, at("2026-09-06T12:00", chile), "America/Santiago", chile)
    assert local(w.start_ms, chile).isoformat() == "2026-09-05T00:00:00-04:00"
    assert local(w.end_ms, chile).isoformat() == "2026-09-06T01:00:00-03:00"
    assert w.end_ms - w.start_ms == DAY


def test_zone_is_hers_else_the_node_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert node_zone()[0] == "America/New_York"
    her, other = b"\x01" * 32, b"\x02" * 32
    atomic_write_json(tmp_path / "portal-prefs.json",
                      {her.hex(): {"units": "mmol/L", "tz": "Europe/Paris"},
                       other.hex(): {"units": "mg/dL", "tz": "Not/AZone"}})
    assert patient_zone(tmp_path, her)[0] == "Europe/Paris"
    assert patient_zone(tmp_path, other)[0] == "America/New_York"  # unknown zone: the node's
    assert patient_zone(tmp_path, b"\x03" * 32)[0] == "America/New_York"
    (tmp_path / "portal-prefs.json").write_text("{not json")
    assert patient_zone(tmp_path, her)[0] == "America/New_York"  # damaged: the node's
    monkeypatch.setenv("TZ", "Nowhere/Land")
    assert node_zone()[0] != "Nowhere/Land"  # falls back to /etc/localtime or UTC
    with pytest.raises(ValueError, match="at least 1"):
        whole_days(0, 0, "UTC", PARIS)


# --- the grant permits N whole days and never more --------------------------------------------
PATIENT, READER = b"\x01" * 32, b"\x02" * 32


def _state(window: dict[str, int], view: str = "raw") -> State:
    """A grant to READER. Raw by default: a summary grant permits whole UTC days only
    (tests/consent/test_summary_days.py), a raw grant the patient's local days asked."""
    s = State()
    s.put("acct/" + PATIENT.hex(), {"kind": "patient"})
    gid = b"\x09" * 32
    s.put(grant_key(gid), {"id": gid, "patient": PATIENT, "grantee": READER, "streams": ["cgm"],
                           "view": view, "window": window, "valid_from": 0,
                           "valid_until": 1 << 50, "purpose": "treatment", "alerts": False,
                           "status": "active", "emergency": False})
    s.put(grants_index_key(PATIENT), [[READER, gid]])
    return s


@pytest.mark.parametrize("now", ["2026-11-02T00:00:30", "2026-11-02T09:00", "2026-11-02T23:59",
                                 "2026-04-05T18:00"])
def test_a_last_days_grant_permits_the_whole_days_asked(now: str) -> None:
    t = at(now)
    w = whole_days(14, t, "Europe/Paris", PARIS)
    d = decide(_state({"last_days": 14}), READER,
               Request(PATIENT, ("cgm",), "summary", w.window()), t)
    assert isinstance(d, Permit) and (d.start_ms, d.end_ms) == (w.start_ms, w.end_ms)
    # no window asked: the grant's own, the last 14 x 24 hours up to now (raw followers)
    d = decide(_state({"last_days": 14}), READER, Request(PATIENT, ("cgm",), "summary"), t)
    assert isinstance(d, Permit) and (d.start_ms, d.end_ms) == (t - 14 * DAY, t)


@pytest.mark.parametrize(("start", "end", "why"), [
    (-15 * DAY - HOUR - 1, -DAY, "starts more than N + 1 days and an hour ago"),
    (-15 * DAY, -DAY + HOUR + 1, "longer than N days and an hour"),
    (-14 * DAY - 2 * HOUR, 1, "ends after now"),
])
def test_more_than_n_whole_days_is_clipped_to_the_grant(start: int, end: int, why: str) -> None:
    t = at("2026-11-02T09:00")
    d = decide(_state({"last_days": 14}), READER,
               Request(PATIENT, ("cgm",), "summary", {"from": t + start, "to": t + end}), t)
    assert isinstance(d, Permit), why
    assert d.start_ms == t - 14 * DAY and d.end_ms <= t, why  # the grant's own window


def test_an_absolute_grant_is_never_widened() -> None:
    t = at("2026-11-02T09:00")
    w = whole_days(14, t, "Europe/Paris", PARIS)
    grant = {"from": w.start_ms + HOUR, "to": w.end_ms - HOUR}
    d = decide(_state(grant), READER, Request(PATIENT, ("cgm",), "summary", w.window()), t)
    assert isinstance(d, Permit) and (d.start_ms, d.end_ms) == (grant["from"], grant["to"])
    far = decide(_state({"last_days": 2}), READER, Request(PATIENT, ("cgm",), "summary",
                                                           w.window()), t)
    assert isinstance(far, Permit) and far.start_ms == t - 2 * DAY  # 2 days, not 14
    old = decide(_state({"last_days": 2}), READER, Request(
        PATIENT, ("cgm",), "summary", {"from": t - 40 * DAY, "to": t - 30 * DAY}), t)
    assert isinstance(old, Deny) and old.reason == "outside_window"


# --- end to end: a summary read through the node ----------------------------------------------
def _sensor(first: int, last: int) -> list[CgmReading]:
    """A Dexcom-like 5-minute trace with her Paris UTC offset, from ``first`` to ``last``."""
    out = []
    for t in range(first, last, 300_000):
        offset = int(local(t).utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
        mgdl = int(140 + 70 * math.sin(t / 9_000_000) + 25 * math.sin(t / 1_700_000))
        out.append(CgmReading(t, offset, mgdl))
    return out


class _Site:
    def __init__(self, tmp: Path) -> None:
        self.clock = Clock(at("2026-11-02T00:10"))
        self.node = Node.init(tmp / "node", workers=1, clock=self.clock)
        self.world = World.create(self.node)
        accounts.create_account(self.node, "rosa", "trusted")
        accounts.create_account(self.node, "alice", "patient", trusted="rosa")
        accounts.create_account(self.node, "dr", "clinician")
        self.vault = open_vault(self.node, fsync=False)
        self.ingest = IngestService(self.node, self.vault)
        self.access = AccessService(self.node, self.vault)
        a, d = accounts.identity(self.node, "alice"), accounts.identity(self.node, "dr")
        self.alice = Person("alice", a.id, accounts.keys_of(self.node, a))
        self.dr = Person("dr", d.id, accounts.keys_of(self.node, d))
        self.device = self.world.add_device("CGM-1", model="Dexcom G7")
        bind_device(self.node, self.alice.id, self.alice.keys[:1], self.device.id)
        atomic_write_json(self.node.data_dir / "portal-prefs.json",
                          {self.alice.id.hex(): {"units": "mg/dL", "tz": "Europe/Paris"}})

    def upload(self, readings: list[CgmReading]) -> None:
        self.ingest.ingest_batches([Batch("cgm", tuple(readings), readings[0].time_ms,
                                          readings[-1].time_ms, len(readings))],
                                   patient=self.alice.id, uploader=self.device.id,
                                   signer=self.device.key)

    def grant_summary(self, view: str = "summary") -> None:
        """Alice grants dr her last 14 days (``view`` summary: summaries only)."""
        body = {"grantee": self.dr.id, "streams": ["cgm"], "view": view,
                "window": {"last_days": 14}, "valid_from": self.clock.ms - DAY,
                "valid_until": self.clock.ms + 90 * DAY, "purpose": "treatment",
                "alerts": False}
        stx = self.node.build("consent.grant", body, self.alice.id, self.alice.keys[:1])
        assert self.node.submit([stx.raw])[0].ok

    def summary(self) -> tuple[SignedSummary, LocalDays]:
        span = reader_days(self.node.state, self.node.data_dir, self.dr.id, self.alice.id, 14,
                           self.node.now_ms())
        req = Request(self.alice.id, ("cgm",), "summary", span.window())
        rel = self.access.read(self.access.request(self.dr.id, self.dr.keys[:1], req).raw)
        assert isinstance(rel, SignedSummary)
        rel.verify(self.node.node_key.public)
        return rel, span

    def close(self) -> None:
        self.vault.close()
        self.node.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[_Site]:
    s = _Site(tmp_path)
    yield s
    s.close()


def test_same_data_same_numbers_all_day_across_dst(site: _Site) -> None:
    # 16 days up to her midnight of 2 Nov 2026, spanning the fall-back of 25 Oct
    site.upload(_sensor(at("2026-10-17T00:00"), at("2026-11-02T00:00")))
    # a raw grantee's summary: her local days (a summary-only grantee's are UTC days,
    # test_summary_days.py, where a daylight-saving change does not occur)
    site.grant_summary(view="raw")
    first, span = site.summary()
    s = first.summary
    assert (s.start_ms, s.end_ms) == (at("2026-10-19T00:00"), at("2026-11-02T00:00"))
    assert s.window_ms == (14 * 24 + 1) * HOUR  # 14 local days, one of them 25 hours
    assert s.count == (14 * 24 + 1) * 12 and s.active_bp == 10_000 and s.sufficient
    assert s.days_with_data == 14
    # later the same day, with today's readings uploaded meanwhile: the same numbers
    site.clock.ms = at("2026-11-02T12:00")
    site.upload(_sensor(at("2026-11-02T00:00"), at("2026-11-02T11:55")))
    site.clock.ms = at("2026-11-02T23:59:59")
    late, _ = site.summary()
    assert late.summary.to_value() == s.to_value()
    assert late.profile.to_value() == first.profile.to_value()
    assert late.grounds.access_tx != first.grounds.access_tx  # each read audited on its own
    # the report names her zone and the whole days
    page = agp_report(late, patient="alice", zone=span.named_zone).html()
    assert "Europe/Paris" in page and "14 whole local days" in page
    assert "Mon 2026-10-19 00:00 to Mon 2026-11-02 00:00" in page
    # after her midnight the period moves one day and today's readings count
    site.clock.ms = at("2026-11-03T00:05")
    nxt, _ = site.summary()
    assert nxt.summary.start_ms == at("2026-10-20T00:00")
    assert nxt.summary.count != s.count


def test_the_computed_summary_is_reused_only_for_the_same_batches(site: _Site) -> None:
    readings = _sensor(at("2026-10-17T00:00"), at("2026-11-02T00:00"))
    site.upload(readings)
    site.grant_summary()
    cold = AccessService(site.node, site.vault, cache=0, summaries=0)
    span = reader_days(site.node.state, site.node.data_dir, site.dr.id, site.alice.id, 14,
                       site.node.now_ms())
    assert span.zone_name == "UTC"  # a summary-only grantee's days
    req = Request(site.alice.id, ("cgm",), "summary", span.window())
    fresh = cold.read(cold.request(site.dr.id, site.dr.keys[:1], req).raw)
    one, _ = site.summary()
    two, _ = site.summary()  # computed once, reused
    assert isinstance(fresh, SignedSummary)
    assert one.summary == two.summary == fresh.summary  # bit for bit what a fresh computation gives
    assert one.profile == two.profile == fresh.profile
    # the signed profile is the aggregate AGP of exactly the values a raw read releases
    own = Request(site.alice.id, ("cgm",), "raw", span.window())
    raw = site.access.read(site.access.request(site.alice.id, site.alice.keys[:1], own).raw)
    assert isinstance(raw, RawRelease) and raw.summary == one.summary
    cgm = [r for r in raw.records if isinstance(r, CgmReading)]
    assert compute_agp(cgm).aggregate() == one.profile
    # a conflicting re-upload inside the window, of days already released: the summary
    # grantee's days stay as first released (node/settled.py), computed afresh or not;
    # the patient's own read counts the new batch
    site.upload([CgmReading(r.time_ms, r.tz_offset_min, min(400, r.mgdl + 40))
                 for r in [r for r in readings if r.time_ms < span.end_ms][-36:]])
    three, _ = site.summary()
    again = cold.read(cold.request(site.dr.id, site.dr.keys[:1], req).raw)
    assert isinstance(again, SignedSummary)
    assert three.summary == again.summary == one.summary and three.summary.superseded == 0
    assert three.profile == again.profile == one.profile
    raw = site.access.read(site.access.request(site.alice.id, site.alice.keys[:1], own).raw)
    assert isinstance(raw, RawRelease) and raw.summary is not None
    assert raw.summary.superseded == 36 and raw.summary.mean_dmgdl > one.summary.mean_dmgdl


def test_a_raw_release_computes_its_summary_when_asked_and_not_past_an_erasure(
        site: _Site) -> None:
    site.upload(_sensor(at("2026-10-17T00:00"), at("2026-11-02T00:00")))
    span = last_days(site.node.data_dir, site.alice.id, 14, site.node.now_ms())
    own = Request(site.alice.id, ("cgm",), "raw", span.window())

    def read() -> RawRelease:
        rel = site.access.read(site.access.request(site.alice.id, site.alice.keys[:1],
                                                   own).raw)
        assert isinstance(rel, RawRelease)
        return rel

    def kept() -> list[str]:
        return [key[0] for key in site.access._computed]

    rel = read()
    assert kept() == []  # a Nightscout read stops here: no metrics computed
    s = rel.summary
    assert s is not None and s.count == 14 * 24 * 12 + 12 and kept() == ["raw"]
    assert rel.summary is s  # once a release
    site.access._computed.clear()
    late = read()
    site.access.forget([])  # an erasure between the read and the summary
    assert late.summary == s
    assert kept() == [], "a summary read before an erasure outlived it"
    assert read().summary == s and kept() == ["raw"]
