"""Grants proposed and cosigned, amend and revoke, emergency access, key recovery, alerts,
sealed releases, signed summaries checked against iglu-python."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.crypto import generate
from glucoledger.crypto.hpke import generate_x25519, hpke_open
from glucoledger.crypto.seal import open_sealed
from glucoledger.errors import SignatureError
from glucoledger.glucose.readings import CgmReading
from glucoledger.node.access import AccessDeniedError, AccessRefusedError, SignedSummary
from glucoledger.node.alerts import AlertService, detect_episodes
from glucoledger.node.settled import SETTLE_MS
from glucoledger.state.accounts_model import patient_policy
from glucoledger.state.alerts import DEFAULT_RULES
from glucoledger.state.consent import Request

from .conftest import DAY, HOUR, Care, build_care


def _grant_body(c: Care, grantee: bytes, **kw: Any) -> dict[str, Any]:
    return {"grantee": grantee, "streams": ["cgm"], "view": "summary",
            "window": {"last_days": 14}, "valid_from": c.clock.ms - DAY,
            "valid_until": c.clock.ms + 30 * DAY, "purpose": "treatment", "alerts": False, **kw}


def test_provider_proposes_patient_cosigns(care: Care) -> None:
    prop = care.node.build("multisig.propose", {"target": care.alice.id, "type": "consent.grant",
                                                "body": _grant_body(care, care.endo.id),
                                                "expires": care.clock.ms + DAY},
                           care.endo.id, care.endo.keys)
    assert care.node.submit([prop.raw])[0].ok
    with pytest.raises(AccessDeniedError):  # not yet cosigned
        care.access.read(care.request(care.endo, view="summary").raw)
    r = care.submit(care.alice, "multisig.cosign", {"proposal": prop.tx_hash})
    assert r.ok, r.result
    assert isinstance(care.access.read(care.request(care.endo, view="summary").raw),
                      SignedSummary)


def test_standing_rule_approves_a_dose_change(care: Care) -> None:
    assert care.submit(care.alice, "multisig.rule", {"proposer": care.nurse.id,
                                                     "types": ["care.entry"]}).ok
    body = {"kind": "dose_change", "digest": hashlib.sha256(b"basal +10%").digest(),
            "effective": care.clock.ms}
    prop = care.node.build("multisig.propose", {"target": care.alice.id, "type": "care.entry",
                                                "body": body, "expires": care.clock.ms + DAY},
                           care.nurse.id, care.nurse.keys)
    assert care.node.submit([prop.raw])[0].ok
    assert care.node.state.get("entry/" + prop.tx_hash.hex())["kind"] == "dose_change"


def test_amend_narrows_and_extends(care: Care) -> None:
    g = care.grant(care.nurse, window={"last_days": 30})
    assert care.submit(care.alice, "consent.amend", {"grant": g, "view": "summary"}).ok
    with pytest.raises(AccessDeniedError) as info:
        care.access.read(care.request(care.nurse).raw)
    assert info.value.code == "raw_under_summary"
    assert care.submit(care.alice, "consent.amend", {"grant": g, "view": "raw",
                                                     "streams": ["cgm", "insulin"]}).ok
    rel = care.access.read(care.request(care.nurse, streams=("cgm", "insulin")).raw)
    assert {type(r).__name__ for r in rel.records} >= {"CgmReading"}
    bad = care.submit(care.nurse, "consent.amend", {"grant": g, "view": "raw"})
    assert bad.result.code == "not_patient"
    other = care.submit(care.bob, "consent.amend", {"grant": g, "view": "raw"})
    assert other.result.code == "not_your_grant"


def test_emergency_opens_time_limited_flagged_access(care: Care) -> None:
    body = {"patient": care.alice.id, "hours": 6, "days": 3, "reason": "found hypoglycaemic"}
    stx = care.node.build("emergency.open", body, care.endo.id,
                          [care.endo.keys[0], care.rosa.keys[0]])
    r = care.node.submit([stx.raw])[0]
    assert r.ok, r.result
    rel = care.access.read(care.request(care.endo).raw)
    assert rel.grounds.emergency and rel.records
    assert rel.records[0].time_ms >= care.clock.ms - 3 * DAY
    care.clock.advance(6 * HOUR + 1)
    with pytest.raises(AccessDeniedError) as info:
        care.access.read(care.request(care.endo).raw)
    assert info.value.code == "expired"
    too_long = {**body, "hours": 25}
    r = care.node.submit([care.node.build("emergency.open", too_long, care.endo.id,
                                          [care.endo.keys[0], care.rosa.keys[0]]).raw])[0]
    assert r.result.code == "malformed"


def test_key_recovery_old_key_stops_working(care: Care) -> None:
    lost, kept, rosa = care.alice.keys[1], care.alice.keys[0], care.rosa.keys[0]
    new = generate()
    policy = patient_policy(kept.public, new.public, rosa.public)
    r = care.node.submit([care.node.build("account.update", {"policy": policy}, care.alice.id,
                                          [kept, rosa]).raw])[0]
    assert r.ok, r.result
    # from that block on the lost key signs nothing: not a grant, not a read
    g = care.node.build("consent.grant", _grant_body(care, care.nurse.id), care.alice.id, [lost])
    assert care.node.submit([g.raw])[0].result.code == "not_cosigner"
    own = Request(care.alice.id, ("cgm",), "raw")
    with pytest.raises(AccessRefusedError) as info:
        care.access.read(care.access.request(care.alice.id, [lost], own).raw)
    assert info.value.code == "not_cosigner"
    # the new key works
    assert care.access.read(care.access.request(care.alice.id, [new], own).raw).records


def test_sealed_release_opens_only_for_the_requester(care: Care) -> None:
    care.grant(care.nurse)
    pair = generate_x25519()
    rel = care.access.read(care.request(care.nurse, wrap_to=pair.public).raw)
    key = hpke_open(pair.private, rel.wrapped_key, "release", rel.grounds.access_tx)
    records = codec.decode(open_sealed(key, rel.box, "release", rel.grounds.access_tx),
                           max_size=1 << 26)["records"]
    assert len(records) > 3000


def test_alerts_notify_grantees_with_alerts_only(care: Care) -> None:
    care.grant(care.carer, alerts=True)
    care.grant(care.nurse, alerts=False)
    svc = AlertService(care.node, care.vault)
    made = svc.scan(care.alice.id)
    cgm = [r for r in care.readings["cgm"] if isinstance(r, CgmReading)]
    assert len(made) == len(detect_episodes(cgm, DEFAULT_RULES)) > 0
    assert {n.recipient for n in made} == {care.carer.id}
    assert svc.scan(care.alice.id) == []  # each batch once; each alert once
    # her own rules: only urgent lows
    r = care.submit(care.alice, "alert.rules", {"rules": [
        {"name": "urgent_low", "op": "below", "mgdl": 54, "minutes": 15}]})
    assert r.ok
    assert care.submit(care.alice, "alert.rules", {"rules": [
        {"name": "x", "op": "sideways", "mgdl": 54, "minutes": 15}]}).result.code == "malformed"


def test_an_alert_to_a_summary_grantee_holds_the_rule_and_hour_only(care: Care) -> None:
    """A value and a minute would be a raw reading her summary grant does not release: a
    summary-only recipient gets what the ledger holds (rule, hour), a raw grantee the
    episode's start and its lowest or highest value."""
    care.grant(care.carer, view="summary", alerts=True)
    care.grant(care.nurse, view="raw", alerts=True)
    svc = AlertService(care.node, care.vault)
    made = svc.scan(care.alice.id)
    cgm = [r for r in care.readings["cgm"] if isinstance(r, CgmReading)]
    episodes = {(e.rule, e.start_ms): e for e in detect_episodes(cgm, DEFAULT_RULES)}
    carer = [n for n in made if n.recipient == care.carer.id]
    nurse = [n for n in made if n.recipient == care.nurse.id]
    assert len(carer) == len(nurse) == len(episodes) > 0
    assert {(n.rule, n.start_ms, n.mgdl) for n in nurse} == {
        (e.rule, e.start_ms, e.extreme_mgdl) for e in episodes.values()}
    hours = {(e.rule, e.start_ms - e.start_ms % HOUR) for e in episodes.values()}
    assert {(n.rule, n.start_ms) for n in carer} == hours
    assert all(n.mgdl is None for n in carer)
    stored = svc.db.execute("SELECT mgdl, start_ms FROM outbox WHERE recipient = ?",
                            (care.carer.id,)).fetchall()
    assert stored and all(m == 0 and t % HOUR == 0 for m, t in stored)  # nothing more kept
    svc.close()


def test_episode_needs_fifteen_minutes() -> None:
    t0 = 1_767_225_600_000
    short = [CgmReading(t0 + i * 300_000, 0, v) for i, v in enumerate([100, 60, 60, 60, 100])]
    long = [CgmReading(t0 + i * 300_000, 0, v) for i, v in enumerate([100, 60, 60, 60, 60, 90])]
    assert detect_episodes(short, DEFAULT_RULES) == []
    eps = detect_episodes(long, DEFAULT_RULES)
    assert [(e.rule, e.start_ms, e.extreme_mgdl) for e in eps] == [("low", t0 + 300_000, 60)]


def test_summary_is_signed_and_carries_its_commitments(care: Care) -> None:
    care.grant(care.endo, view="summary", window={"last_days": 14})
    s = care.access.read(care.request(care.endo, view="summary").raw)
    assert isinstance(s, SignedSummary)
    assert s.verify(care.node.node_key.public) == s.summary
    assert len(s.grounds.commits) == len(s.grounds.batches) == 14
    with pytest.raises(SignatureError):
        s.verify(generate().public)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_read_agrees_with_iglu(tmp_path: Any, seed: int) -> None:
    pd = pytest.importorskip("pandas")
    iglu = pytest.importorskip("iglu_python")
    care = build_care(tmp_path / str(seed), days=14)
    try:
        care.grant(care.endo, view="summary", window={"last_days": 14})
        care.clock.advance(SETTLE_MS)  # the last day has settled (node/settled.py)
        s = care.access.read(care.request(care.endo, view="summary").raw).summary
        cgm = [r for r in care.readings["cgm"] if isinstance(r, CgmReading)
               and s.start_ms <= r.time_ms < s.end_ms]
        df = pd.DataFrame({"id": "p", "time": pd.to_datetime([r.time_ms for r in cgm], unit="ms"),
                           "gl": [float(r.mgdl) for r in cgm]})
        rng = iglu.in_range_percent(df, target_ranges=[[70, 180]]).iloc[0, -1]
        assert abs(rng - s.tir) <= 0.1
        below = iglu.below_percent(df, targets_below=[54, 70]).iloc[0]
        assert abs(below.iloc[-2] - s.tbr54) <= 0.1 and abs(below.iloc[-1] - s.tbr70) <= 0.1
        above = iglu.above_percent(df, targets_above=[180, 250]).iloc[0]
        assert abs(above.iloc[-2] - s.tar180) <= 0.1 and abs(above.iloc[-1] - s.tar250) <= 0.1
        assert abs(iglu.mean_glu(df).iloc[0, -1] - s.mean) <= 0.1
        assert abs(iglu.cv_glu(df).iloc[0, -1] - s.cv) <= 0.1
        assert abs(iglu.gmi(df).iloc[0, -1] - s.gmi) <= 0.01
    finally:
        care.vault.close()
        care.node.close()
