"""Research sharing on a real node (SQLite chain store, encrypted vault, OpenDP, pycanon):
the issue's must-hold properties: revocation, linkage, Safe Harbor + k-anonymity by an
independent checker, the privacy budget, and the manifest's integrity offline."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from glucoledger.crypto import PrivateKey
from glucoledger.errors import (
    ConsistencyError,
    InputError,
    MalformedError,
    RejectedError,
    SignatureError,
)
from glucoledger.glucose.annex import annex_text
from glucoledger.glucose.readings import Batch
from glucoledger.glucose.simulate import simulate_patient
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.node import accounts, deid
from glucoledger.node.audit import audit_trail
from glucoledger.node.deid import Profile, scan_identifiers
from glucoledger.node.devices import bind_device
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.research import ResearchService, dumps_bundle, verify_bundle
from glucoledger.node.research_view import participation
from glucoledger.node.service import Node
from glucoledger.node.world import World
from glucoledger.state.research import load_study, rgrant_key

DAY = 86_400_000
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAYS = 4
#: name, birth date, sex, state, zip, type: two of each (age band, sex) so k=2 is reachable
PEOPLE = [("Ada Lovelace", "1985-03-02", "female", "NY", "10027", "T1D"),
          ("Bea Jones", "1984-07-09", "female", "MA", "02139", "T1D"),
          ("Carl Ortiz", "1960-01-20", "male", "TX", "73301", "T2D"),
          ("Dan Smith", "1962-11-11", "male", "CA", "94110", "T1D"),
          ("Eve Adams", "1931-05-05", "female", "FL", "33101", "T2D"),
          ("Flo Brown", "1930-02-14", "female", "GA", "30301", "T2D")]


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@dataclass
class Lab:
    node: Node
    clock: Clock
    research: ResearchService
    sponsor: accounts.Identity
    sponsor_keys: list[PrivateKey]
    patients: list[accounts.Identity]
    serials: list[str]

    def keys(self, ident: accounts.Identity) -> list[PrivateKey]:
        return accounts.keys_of(self.node, ident, [0])

    def study(self, **over: Any) -> bytes:
        terms: dict[str, Any] = {
            "protocol": "GL-NOCT-1", "ethics": "IRB 2026-117",
            "purpose": "nocturnal hypoglycaemia in adults on CGM",
            "streams": ["cgm", "insulin"], "fields": ["age", "sex", "region"],
            "period": {"from": NOW - 30 * DAY, "to": NOW + 365 * DAY},
            "forms": ["records", "aggregate"], "k": 2, "budget": 1_000_000,
            "retention_days": 730, "contact": "dpo@uni.example",
            "credit": {"rate": 5, "terms": "reported to you yearly; redeemable for a report"}}
        terms.update(over)
        org = self.node.wallet.load("org")  # the consortium (here: one member) accepts it
        stx, _ = self.node.send("study.register", terms, self.sponsor.id,
                                [*self.sponsor_keys, org])
        return stx.tx_hash

    def join(self, i: int, study: bytes, streams: tuple[str, ...] = ("cgm", "insulin")) -> bytes:
        p = self.patients[i]
        stx, _ = self.node.send("research.consent", {
            "study": study, "streams": list(streams), "fields": ["age", "sex", "region"],
            "until": NOW + 200 * DAY}, p.id, self.keys(p))
        return stx.tx_hash

    def release(self, study: bytes) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.research.release(self.sponsor.id,
                                                               self.sponsor_keys, study))
        return doc


def build_lab(tmp: Path) -> tuple[Lab, Any]:
    clock = Clock(NOW)
    node = Node.init(tmp / "node", workers=1, clock=clock)
    world = World.create(node)
    accounts.create_account(node, "rosa", "trusted")
    uni, _ = accounts.create_account(node, "uni-research", "organization")
    vault = open_vault(node, fsync=False)
    ingest = IngestService(node, vault)
    research = ResearchService(node, vault)
    patients, serials = [], []
    for i, (name, born, sex, state, zip_, kind) in enumerate(PEOPLE):
        ident, _ = accounts.create_account(node, f"p{i}", "patient", trusted="rosa")
        patients.append(ident)
        serial = f"G7SN{i}X{i * 7919 % 10000:04d}"
        serials.append(serial)
        dev = world.add_device(serial)
        keys = accounts.keys_of(node, ident, [0])
        bind_device(node, ident.id, keys, dev.id)
        sim = simulate_patient(10 + i, DAYS, NOW - DAYS * DAY)
        cgm = list(sim["cgm"])
        # identifiers a device and an uploader put in the annex: Safe Harbor must drop them
        cgm[0] = dataclasses.replace(cgm[0], ns=annex_text(
            {"device": f"xDrip-{serial}", "enteredBy": name, "notes": f"{name} {zip_}"}))
        for stream, recs in (("cgm", cgm), ("insulin", list(sim["insulin"]))):
            batch = Batch(stream, tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))
            ingest.ingest_batches([batch], patient=ident.id, uploader=dev.id, signer=dev.key)
        research.set_profile(ident.id, Profile(name, born, sex, state, zip_, kind))
    lab = Lab(node, clock, research, uni, accounts.keys_of(node, uni), patients, serials)
    return lab, vault


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab, vault = build_lab(tmp_path)
    yield lab
    vault.close()
    lab.node.close()


def _pids(doc: dict[str, Any]) -> set[str]:
    return {p["pid"] for p in doc["participants"]}


def _identifiers(lab: Lab) -> dict[str, list[str]]:
    return {"name": [p[0] for p in PEOPLE] + [p[0].split()[1] for p in PEOPLE],
            "birth date": [p[1] for p in PEOPLE], "zip": [p[4] for p in PEOPLE],
            "device serial": lab.serials, "account id": [p.id.hex() for p in lab.patients]}


def test_withdrawal_excludes_her_from_later_releases_and_keeps_the_earlier(lab: Lab) -> None:
    study = lab.study()
    grants = [lab.join(i, study) for i in range(4)]
    first = lab.release(study)
    assert len(first["participants"]) == 4
    lab.clock.ms += DAY
    p0 = lab.patients[0]
    lab.node.send("research.withdraw", {"grant": grants[0]}, p0.id, lab.keys(p0))
    second = lab.release(study)
    assert len(second["participants"]) == 3
    assert len(_pids(first) - _pids(second)) == 1  # exactly her pseudonym is gone
    gone = (_pids(first) - _pids(second)).pop()
    assert all(r["pid"] != gone for r in second["rows"])
    assert any(r["pid"] == gone for r in first["rows"])
    # the ledger records which releases held her data, and she is told in her audit trail
    first_id = verify_bundle(dumps_bundle(first), lab.node.verifier()).release
    second_id = verify_bundle(dumps_bundle(second), lab.node.verifier()).release
    assert lab.node.state.get(rgrant_key(grants[0]))["releases"] == [first_id]
    # she can check a release bundle herself: her batches are in the first, not the second
    hers = {row.tx_hash for row in lab.research.vault.batches(p0.id)}
    assert len(hers) == 5  # 4 days of CGM in batches of 288, and the insulin
    assert set(lab.research.am_i_in(p0.id, dumps_bundle(first))) == hers
    assert lab.research.am_i_in(p0.id, dumps_bundle(second)) == ()
    assert len(lab.research.am_i_in(lab.patients[1].id, dumps_bundle(second))) == 5
    trail = [e for e in audit_trail(lab.node, p0.id) if e.kind == "research"]
    assert [e.outcome for e in trail] == ["withdrew", "released", "consented"]
    released = trail[1]
    assert released.tx_hash == first_id and "GL-NOCT-1" in released.detail
    assert "nocturnal hypoglycaemia" in released.detail and "record-level" in released.detail
    assert second_id not in {e.tx_hash for e in audit_trail(lab.node, p0.id)}
    others = audit_trail(lab.node, lab.patients[1].id)
    assert second_id in {e.tx_hash for e in others}
    # a refused release changes nothing: below k after more withdrawals
    for i in (1, 2):
        p = lab.patients[i]
        lab.node.send("research.withdraw", {"grant": grants[i]}, p.id, lab.keys(p))
    before = lab.node.state.snapshot()
    with pytest.raises(RejectedError) as info:
        lab.release(study)
    assert info.value.code == "too_few_participants" and "wait for more" in info.value.message
    assert lab.node.state.snapshot() == before


def test_two_studies_share_no_pseudonym_timestamp_or_serial_and_no_unique_join(lab: Lab
                                                                              ) -> None:
    a, b = lab.study(), lab.study(protocol="GL-EXER-2", purpose="exercise and glucose")
    for i in range(len(PEOPLE)):
        lab.join(i, a)
        lab.join(i, b)
    ra, rb = lab.release(a), lab.release(b)
    assert _pids(ra).isdisjoint(_pids(rb))
    assert {r["time"] for r in ra["rows"]}.isdisjoint({r["time"] for r in rb["rows"]})
    for doc in (ra, rb):
        text = json.dumps(doc)
        assert not [s for s in lab.serials if s in text]
        assert not [p.id.hex() for p in lab.patients if p.id.hex() in text]
        assert not [p.id.hex()[:16] for p in lab.patients if p.id.hex()[:16] in text]
    # re-identification: join the two releases on every shared participant-level field
    fields = sorted(set(ra["participants"][0]) - {"pid"})
    assert fields == ["age", "region", "sex"]
    def key(p: dict[str, object]) -> tuple[object, ...]:
        return tuple(p[f] for f in fields)
    b_by = Counter(key(p) for p in rb["participants"])
    for p in ra["participants"]:
        # every candidate set holds at least k people: no match better than 1 in k
        assert b_by[key(p)] >= 2
    # and the date shift keeps weekday and minute of the day (to within 30 s)
    ta = sorted(r["time"] for r in ra["rows"] if r["stream"] == "cgm")
    assert all(len(t) == 23 for t in ta)


def test_every_release_passes_safe_harbor_and_independent_k_anonymity(lab: Lab) -> None:
    study = lab.study(k=3)
    for i in range(len(PEOPLE)):
        lab.join(i, study)
    doc = lab.release(study)
    rows, parts = doc["rows"], doc["participants"]
    assert rows and len(parts) == len(PEOPLE)
    assert scan_identifiers([*parts, *rows], _identifiers(lab)) == []
    # our own scan is not the only judge: every field is from the whitelist, no text field
    # holds anything but codes, and no one's exact age over 89 appears
    allowed = {"pid", "stream", "time", "mgdl", "trend", "kind", "units_milli", "duration_ms",
               "rate_milli_u_per_h", "grams_tenths"}
    assert set().union(*(r.keys() for r in rows)) <= allowed
    text = json.dumps(doc).lower()
    for cat, values in _identifiers(lab).items():
        for v in values:
            assert v.lower() not in text, cat
    assert "xdrip" not in text and "enteredby" not in text
    assert all(p["age"] in ("*", "90+") or int(p["age"].split("-")[1]) <= 89 for p in parts)
    # the independent checker (pycanon) agrees the release is k-anonymous for the study's k
    qi = ["age", "region", "sex"]
    assert anonymity.k_anonymity(pd.DataFrame(parts), qi) >= 3
    # a scan does find identifiers when they are there (the scan can fail)
    leaked = [{**rows[0], "trend": PEOPLE[0][0]}]
    assert scan_identifiers(leaked, _identifiers(lab)) == ["row 0 field trend: name"]
    assert scan_identifiers([{"age": "93"}], {}) == ["row 0: exact age over 89"]


def test_a_field_she_withheld_is_never_released_about_her(lab: Lab) -> None:
    """A participant narrows the study's fields at opt-in (research.consent's ``fields``):
    the fields she withheld are ``*`` for her in every release, whatever the others gave.
    (Until 2026-12-05 the release took the study's fields for everyone: p0 consented to
    none and her age band and sex were released.)"""
    study = lab.study(k=2)
    narrowed = {0: [], 1: ["sex"]}
    for i in range(len(PEOPLE)):
        p = lab.patients[i]
        lab.node.send("research.consent", {
            "study": study, "streams": ["cgm"],
            "fields": narrowed.get(i, ["age", "region", "sex"]), "until": NOW + 200 * DAY},
            p.id, lab.keys(p))
    doc = lab.release(study)
    skey = deid.study_key(lab.research._secret(), study)
    table = {p["pid"]: p for p in doc["participants"]}
    p0, p1 = (table[deid.pseudonym(skey, lab.patients[i].id)] for i in (0, 1))
    assert (p0["age"], p0["region"], p0["sex"]) == ("*", "*", "*")
    assert (p1["age"], p1["region"]) == ("*", "*")
    assert anonymity.k_anonymity(pd.DataFrame(doc["participants"]), ["age", "region", "sex"]
                                 ) >= 2


def test_two_releases_joined_by_pseudonym_stay_k_anonymous(lab: Lab) -> None:
    """Pseudonyms are stable within a study, so a reader of two releases joins them. Here
    the first four are released with their sex (region suppressed); after two more join,
    the second release, generalised on its own, gave region and suppressed sex, and the join
    made each of the first four unique (k = 1). A participant released before gets her
    first row again (coarsened, never refined), and the joined view must be k-anonymous."""
    people = [("1951-03-13", "female", "NY"), ("1971-03-14", "male", "NY"),
              ("1949-07-18", "male", "FL"), ("1976-06-12", "female", "TX"),
              ("1997-09-16", "male", "TX"), ("1965-02-17", "male", "NY")]
    for i, (born, sex, state) in enumerate(people):
        lab.research.set_profile(lab.patients[i].id,
                                 Profile(PEOPLE[i][0], born, sex, state, PEOPLE[i][4], "T1D"))
    study = lab.study(k=2)
    for i in range(4):
        lab.join(i, study)
    first = {p["pid"]: p for p in lab.release(study)["participants"]}
    for i in (4, 5):
        lab.join(i, study)
    second = {p["pid"]: p for p in lab.release(study)["participants"]}
    qi = ["age", "region", "sex"]
    for pid, row in first.items():  # never refined
        assert all(second[pid][f] in (row[f], "*") for f in qi)

    def finest(a: str, b: str) -> str:
        return b if a == "*" else a

    join = [{f: finest(first[pid][f], row[f]) if pid in first else row[f] for f in qi}
            for pid, row in second.items()]
    assert anonymity.k_anonymity(pd.DataFrame(join), qi) >= 2
    assert anonymity.k_anonymity(pd.DataFrame(list(second.values())), qi) >= 2


def test_a_birth_date_in_the_future_neither_joins_nor_withholds_releases(lab: Lab) -> None:
    """Two participants' birth dates typed a century off (2062 for 1962) gave the age band
    '-5--1', which the Safe Harbor scan read as an exact age over 89: every record-level
    release of the study was withheld. Opt-in refuses such a date; one kept from before is
    released in the youngest band."""
    study = lab.study(k=2)
    n, born, sex, state, zip_, kind = PEOPLE[2]
    p2 = lab.patients[2]
    before = lab.research.profile(p2.id)
    with pytest.raises(InputError, match="after today"):
        lab.research.join(p2.id, lab.keys(p2), study, ["cgm"], ["age"], NOW + 100 * DAY,
                          Profile(n, "2062" + born[4:], sex, state, zip_, kind))
    assert lab.research.profile(p2.id) == before
    for i in (2, 3):  # kept before opt-in checked it
        n, born, sex, state, zip_, kind = PEOPLE[i]
        lab.research.set_profile(lab.patients[i].id,
                                 Profile(n, "2062" + born[4:], sex, state, zip_, kind))
    for i in range(len(PEOPLE)):
        lab.join(i, study)
    ages = sorted(p["age"] for p in lab.release(study)["participants"])
    assert "0-4" in ages and not any(a.startswith("-") for a in ages)


def test_manifest_verifies_offline_and_a_changed_row_fails(lab: Lab) -> None:
    study = lab.study()
    for i in range(3):
        lab.join(i, study)
    raw = lab.research.release(lab.sponsor.id, lab.sponsor_keys, study)
    verifier = lab.node.verifier()
    got = verify_bundle(raw, verifier)
    assert got.study == study and got.participants == 3 and got.rows > 0
    # the batches drawn from are the patients' data.commit transactions (she can look hers up)
    rel = lab.node.state.get("release/" + got.release.hex())
    assert set(got.batches) == {c for p in rel["participants"] for c in p["commits"]}
    assert rel["root"] == got.root
    doc = json.loads(raw)
    changed = json.loads(raw)
    changed["rows"][5]["mgdl"] += 1
    with pytest.raises(ConsistencyError, match="altered"):
        verify_bundle(dumps_bundle(changed), verifier)
    dropped = json.loads(raw)
    del dropped["rows"][0]
    with pytest.raises(ConsistencyError):
        verify_bundle(dumps_bundle(dropped), verifier)
    with pytest.raises(MalformedError, match="canonical"):
        verify_bundle(raw.replace(b'"rows":[', b'"rows": [', 1), verifier)
    for manifest in (None, 7, ["a"], "not base64!"):  # refused, never a TypeError
        with pytest.raises(MalformedError, match="manifest"):
            verify_bundle(dumps_bundle({**doc, "manifest": manifest}), verifier)
    from glucoledger.crypto import generate
    with pytest.raises(SignatureError):
        verify_bundle(raw, NoteVerifier(verifier.name, generate("ed25519").public))
    assert json.loads(dumps_bundle(doc)) == doc


def test_dp_queries_charge_the_ledger_and_stop_at_the_budget(lab: Lab) -> None:
    study = lab.study(budget=1_000_000)
    for i in range(4):
        lab.join(i, study)
    costs = [0.3, 0.24, 0.4]
    answers = [lab.research.query(lab.sponsor.id, lab.sponsor_keys, study, s, e)
               for s, e in zip(("mean_glucose", "hourly_median_profile", "gmi"), costs,
                               strict=True)]
    assert [a.participants for a in answers] == [4, 4, 4]
    assert [len(a.values) for a in answers] == [1, 24, 1]  # hour 0..23, eps/24 each
    assert answers[-1].spent == pytest.approx(sum(costs))
    assert load_study(lab.node.state, study)["spent"] == sum(round(c * 1e6) for c in costs)
    before = lab.node.state.snapshot()
    with pytest.raises(RejectedError) as info:
        lab.research.query(lab.sponsor.id, lab.sponsor_keys, study, "mean_glucose", 0.1)
    assert info.value.code == "budget_exhausted" and "nothing was computed" in info.value.message
    assert lab.node.state.snapshot() == before
    # every query is in each participant's audit trail with its statistic and epsilon
    trail = [e for e in audit_trail(lab.node, lab.patients[0].id) if e.outcome == "queried"]
    assert len(trail) == 3 and "aggregate gmi, epsilon 0.4" in trail[0].detail


def test_credit_per_sufficient_day_visible_to_her_and_counted_once(lab: Lab) -> None:
    study = lab.study()
    for i in range(3):
        lab.join(i, study)
    lab.release(study)
    lab.clock.ms += DAY
    lab.release(study)
    mine = participation(lab.node.state, lab.patients[0].id)
    assert len(mine) == 1 and len(mine[0].releases) == 2
    # the simulator writes every 5 minutes: each full UTC day is sufficient; days count once
    assert mine[0].credit_days in (DAYS, DAYS + 1)
    assert mine[0].credits == 5 * mine[0].credit_days
    assert participation(lab.node.state, lab.patients[5].id) == []


def test_a_release_that_cannot_be_built_is_withheld_and_shown_as_such(lab: Lab) -> None:
    study = lab.study()
    for i in range(2):
        lab.join(i, study)
    # a consent signed elsewhere (self-custody), with no profile given to this node
    assert lab.research.store.forget(lab.patients[1].id)
    from glucoledger.errors import NotFoundError

    with pytest.raises(NotFoundError, match="gave no research profile"):
        lab.release(study)
    trail = [e for e in audit_trail(lab.node, lab.patients[0].id) if e.kind == "research"]
    assert trail[0].outcome == "withheld"


def test_episode_rates_are_dp_statistics_charged_on_the_ledger(lab: Lab) -> None:
    """Hypo- and hyperglycaemia episodes (2023 consensus) per week of wear, as a DP mean."""
    from glucoledger.glucose.metrics import summarize
    from glucoledger.glucose.simulate import simulate_patient
    from glucoledger.node.research import BOUNDS, EPISODES, _participant_values

    study = lab.study(budget=100_000_000)
    for i in range(4):
        lab.join(i, study)
    cgms = [list(simulate_patient(10 + i, DAYS, NOW - DAYS * DAY)["cgm"]) for i in range(4)]
    sums = [summarize(c) for c in cgms]
    # each participant's value, before noise: her episodes per 7 days of wear (exactly)
    assert _participant_values("hyper1_episodes_per_week", cgms[2]) == [
        17 * 7 * DAY / sums[2].active_ms] and sums[2].hyper1_episodes == 17
    assert _participant_values("hypo1_episodes_per_week", cgms[0]) == [
        2 * 7 * DAY / sums[0].active_ms] == [3.5]
    assert _participant_values("hypo2_episodes_per_week", []) == [0.0]  # no data: the floor
    spent = 0
    for stat, field in EPISODES.items():
        lo, hi = BOUNDS[stat]
        rates = [min(hi, max(lo, getattr(s, field) * 7 * DAY / s.active_ms)) for s in sums]
        want = sum(rates) / len(rates)
        # epsilon 20: Laplace scale (hi - lo) / 4 / 20 <= 0.44; |noise| > 6 has p < 1e-5
        a = lab.research.query(lab.sponsor.id, lab.sponsor_keys, study, stat, 20.0)
        spent += 20_000_000
        assert a.participants == 4 and len(a.values) == 1
        assert abs(a.value - want) < 6.0, (stat, a.value, want)
        assert load_study(lab.node.state, study)["spent"] == spent
    # the cohort has episodes to count (the check is not of zeros): hyper1 > 1 a week
    assert sum(s.hyper1_episodes for s in sums) > 4
    # the audit trail names the statistic; a query past the budget is refused
    trail = [e for e in audit_trail(lab.node, lab.patients[0].id) if e.outcome == "queried"]
    assert "aggregate hyper2_episodes_per_week, epsilon 20" in trail[0].detail
    before = lab.node.state.snapshot()
    with pytest.raises(RejectedError) as info:
        lab.research.query(lab.sponsor.id, lab.sponsor_keys, study,
                           "hypo1_episodes_per_week", 20.0 + 1e-6)
    assert info.value.code == "budget_exhausted"
    assert lab.node.state.snapshot() == before


def test_date_shift_keeps_weekday_and_time_of_day_within_half_a_minute(lab: Lab) -> None:
    """Each participant's rows are her readings moved back by whole weeks (less than half a
    minute of jitter): same weekday, same clock time to 30 s, same order and spacing; two
    studies shift the same person differently."""
    from datetime import datetime, timedelta

    from glucoledger.glucose.simulate import simulate_patient

    studies = [lab.study(), lab.study(protocol="GL-EXER-2")]
    for s in studies:
        for i in range(3):
            lab.join(i, s)
    shifts: dict[int, set[int]] = {}
    for study in studies:
        doc = lab.release(study)
        key = deid.study_key(lab.research._secret(), study)
        for i in range(3):
            pid = deid.pseudonym(key, lab.patients[i].id)
            rows = [r for r in doc["rows"] if r["pid"] == pid and r["stream"] == "cgm"]
            cgm = [r for r in simulate_patient(10 + i, DAYS, NOW - DAYS * DAY)["cgm"]]
            assert len(rows) == len(cgm) > 1000
            for row, rec in zip(rows, cgm, strict=True):
                got = datetime.fromisoformat(row["time"])
                real = datetime(1970, 1, 1) + timedelta(
                    milliseconds=rec.time_ms + rec.tz_offset_min * 60_000)
                back = real - got
                weeks = round(back / timedelta(weeks=1))
                assert weeks >= 1 and got.weekday() == real.weekday()
                assert got.date() == real.date() - timedelta(weeks=weeks)  # the day exactly
                off = back - timedelta(weeks=weeks)
                assert abs(off.total_seconds()) <= 30, (row["time"], real)
                assert row["mgdl"] == rec.mgdl
            times = [r["time"] for r in rows]
            assert times == sorted(times) and len(set(times)) == len(times)  # order kept
            shifts.setdefault(i, set()).add(round((real - got).total_seconds() * 1000))
    assert all(len(s) == 2 for s in shifts.values())  # per study: unlinkable by the shift
    # near local midnight the jitter is held inside the day: squeezed, never onto midnight
    week = 7 * DAY
    late, early = NOW - 5_000, NOW + 5_000  # 23:59:55 and 00:00:05 UTC
    # +20 s: the last 40 s of the day go, in order, to 20 s..10 s before midnight
    assert deid.shifted_local(late, 0, 2 * week - 20_000) == "2025-12-17T23:59:48.750"
    # -20 s: the first 40 s go to 10 s..20 s after midnight
    assert deid.shifted_local(early, 0, 2 * week + 20_000) == "2025-12-18T00:00:11.250"
    assert deid.shifted_local(NOW, 0, 2 * week + 20_000) == "2025-12-18T00:00:10.000"
    assert deid.shifted_local(early, 60, 2 * week - 20_000) == "2025-12-18T01:00:25.000"


@settings(max_examples=500, deadline=None)
@given(st.integers(-30_000, 29_999), st.integers(0, DAY - 1), st.integers(60_000, DAY))
def test_the_jitter_keeps_the_day_the_order_and_no_shared_midnight(jitter: int, x: int,
                                                                    gap: int) -> None:
    """Every time stays in its day, within the jitter's size of where it was; times a
    minute or more apart keep their order; midnight itself moves unless the jitter is 0."""
    y = deid._held_in_day(x, jitter)
    assert 0 <= y < DAY and abs(y - x) <= abs(jitter)
    if x + gap < DAY:
        assert deid._held_in_day(x + gap, jitter) > y
    if abs(jitter) >= 2:
        assert deid._held_in_day(0, jitter) != 0
        assert deid._held_in_day(DAY - 1, jitter) != DAY - 1


def test_an_edited_nightscout_reading_is_released_once_in_its_last_version(lab: Lab) -> None:
    """The version rule of every clinical read (node/nsversions.py) holds for releases too:
    a reading her uploader corrected (a Nightscout PUT: a new version of the document) is
    in the next release once, with the corrected value; a deleted one not at all."""
    import hashlib

    from glucoledger.interop import nightscout as nsi
    from glucoledger.node.access import AccessService
    from glucoledger.node.nightscout import NightscoutService

    vault = lab.research.vault
    ns = NightscoutService(lab.node, IngestService(lab.node, vault), AccessService(lab.node,
                                                                                  vault))
    study = lab.study()
    for i in range(4):
        lab.join(i, study)

    def released() -> Counter[float]:  # the CGM values of the release (only p0's change)
        return Counter(r["mgdl"] for r in lab.release(study)["rows"] if r["stream"] == "cgm")

    try:
        ns.add_uploader("p0", "p0-uploader-secret")
        up = ns.authenticate(hashlib.sha1(b"p0-uploader-secret").hexdigest(), None)
        t = NOW - DAY + 150_000  # between two of the device's five-minute readings
        entry = {"type": "sgv", "sgv": 123, "date": t, "device": "xDrip-DexcomG6"}
        before = released()
        [answer] = ns.upload(up, "entries", [entry], lab.clock.ms)
        first = released()
        ns.post(up, "entries", [dict(entry, sgv=321, _id=answer["_id"])], lab.clock.ms,
                replace=True).result()
        second = released()
        ns.delete(up, "entries", nsi.parse_query("entries", [("find[_id]", answer["_id"])],
                                                   now_ms=lab.clock.ms))
        third = released()
    finally:
        ns.close()
    assert first - before == Counter({123: 1})
    assert second - before == Counter({321: 1}) and before - second == Counter()
    assert third == before
