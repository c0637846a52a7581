"""A study accepted by the consortium on a live cluster (3 etcd members, 3 `glucoledger node`
processes over TLS, threshold 2): the sponsor's key and one member's cosignature are refused
by every node alike and change nothing; with a second member's cosignature every node holds
the same study; a widening amendment needs the threshold again and asks participants to
consent again; patients opt in, the budget is charged and a query past it refused on every
node alike; the sponsor closes it alone. Every node derives byte-identical state."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from glucoledger import codec, crypto
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.genesis_file import member_of
from glucoledger.state.accounts_model import account_id, single_key_policy
from glucoledger.state.research import study_key

from .conftest import CHAIN, Consortium, wait_until

DAY = 86_400_000


def _terms(**over: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    terms: dict[str, Any] = {
        "protocol": "GL-CONS-1", "ethics": "IRB 2026-301", "purpose": "lows overnight",
        "streams": ["cgm"], "fields": ["sex"], "period": {"from": now - DAY, "to": now + 365 * DAY},
        "forms": ["aggregate"], "k": 2, "budget": 1_000_000, "retention_days": 365,
        "contact": "dpo@uni.example", "credit": {"rate": 1, "terms": "reported yearly"}}
    terms.update(over)
    return terms


def _rows(c: Consortium, i: int, prefix: str) -> dict[str, bytes]:
    db = sqlite3.connect(f"file:{c.folders[i] / 'chain.db'}?mode=ro", uri=True)
    try:
        return {k: bytes(v) for k, v in db.execute(
            "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\xff"))}
    finally:
        db.close()


def _same_everywhere(c: Consortium, prefix: str, height: int) -> dict[str, bytes]:
    """Wait until every node is past ``height``, then the rows under ``prefix``, which
    must be byte-identical on the three nodes."""
    wait_until(lambda: all(c.status(i)["height"] >= height for i in range(3)), 30,
               f"every node at height {height}")
    rows = [_rows(c, i, prefix) for i in range(3)]
    assert rows[0] == rows[1] == rows[2], prefix
    return rows[0]


def _submit(c: Consortium, stx: Any, prefer: int) -> dict[str, Any]:
    [receipt] = c.submit([stx.raw], prefer=prefer)
    return receipt


def test_a_study_needs_the_consortiums_threshold_on_a_live_cluster(consortium: Consortium
                                                                    ) -> None:
    c = consortium
    orgs = [member_of(f)[1].load("org") for f in c.folders]
    org0 = account_id("organization", single_key_policy(orgs[0].public))
    # a research organization, vouched for by member org-0
    key = crypto.generate()
    pol = single_key_policy(key.public)
    sponsor = account_id("organization", pol)
    r = _submit(c, sign(Transaction(CHAIN, "account.create", {
        "kind": "organization", "policy": pol, "sponsor": org0}, sponsor, 0), [key, orgs[0]]),
        prefer=0)
    assert r["code"] == "ok", r

    # the sponsor and one member: 1 of the 2 needed; refused alike everywhere, nothing kept
    register = Transaction(CHAIN, "study.register", _terms(), sponsor, 1)
    r = _submit(c, sign(register, [key, orgs[0]]), prefer=1)
    assert r["code"] == "insufficient_signatures", r
    assert "1 member organization(s)" in r["message"] and "2 needed" in r["message"]
    assert _same_everywhere(c, "study/", r["height"]) == {}
    # the sponsor alone, or the members without the sponsor: refused too
    for signers in ([key], [orgs[0], orgs[1]]):
        r = _submit(c, sign(register, signers), prefer=2)
        assert r["code"] == "insufficient_signatures", (signers, r)
    # with a second member's cosignature, collected into the same envelope: accepted
    accepted = sign(register, [key, orgs[0], orgs[2]])
    r = _submit(c, accepted, prefer=2)
    assert r["code"] == "ok", r
    study = accepted.tx_hash
    rows = _same_everywhere(c, "study/", r["height"])
    assert list(rows) == [study_key(study)]
    rec = codec.decode(rows[study_key(study)])
    assert rec["sponsor"] == sponsor and rec["status"] == "open" and rec["scope_version"] == 1

    # a widening amendment (a larger budget) needs the threshold again, and bumps the scope
    wider = {"study": study, "terms": _terms(budget=2_000_000)}
    amend = Transaction(CHAIN, "study.amend", wider, sponsor, 2)
    r = _submit(c, sign(amend, [key, orgs[1]]), prefer=0)
    assert r["code"] == "insufficient_signatures", r
    assert codec.decode(_same_everywhere(c, "study/", r["height"])[study_key(study)]) == rec
    r = _submit(c, sign(amend, [key, orgs[1], orgs[2]]), prefer=1)
    assert r["code"] == "ok", r
    rec = codec.decode(_same_everywhere(c, "study/", r["height"])[study_key(study)])
    assert rec["budget"] == 2_000_000 and rec["scope_version"] == 2

    # patients opt in; the budget is charged by the contract on every node alike, and a
    # query past it is refused everywhere (budget 2.0: 1.5 is taken, 0.6 more is not)
    query = {"study": study, "form": "aggregate", "statistic": "hypo1_episodes_per_week"}
    nonce = 3
    for n in range(2):
        pk = crypto.generate()
        ppol = single_key_policy(pk.public)
        pid = account_id("patient", ppol)
        r = _submit(c, sign(Transaction(CHAIN, "account.create", {
            "kind": "patient", "policy": ppol}, pid, 0), [pk]), prefer=n)
        assert r["code"] == "ok", r
        r = _submit(c, sign(Transaction(CHAIN, "research.consent", {
            "study": study, "streams": ["cgm"], "fields": ["sex"],
            "until": int(time.time() * 1000) + 30 * DAY}, pid, 1), [pk]), prefer=n)
        assert r["code"] == "ok", r
        r = _submit(c, sign(Transaction(CHAIN, "research.release", {
            **query, "epsilon": 1_500_000}, sponsor, nonce), [key]), prefer=2 - n)
        assert r["code"] == ("too_few_participants" if n == 0 else "ok"), r  # k is 2
        nonce += r["code"] == "ok"
    r = _submit(c, sign(Transaction(CHAIN, "research.release", {**query, "epsilon": 600_000},
                                    sponsor, nonce), [key]), prefer=0)
    assert r["code"] == "budget_exhausted", r
    rec = codec.decode(_same_everywhere(c, "study/", r["height"])[study_key(study)])
    assert rec["spent"] == 1_500_000 and rec["scope_version"] == 2
    grants = _same_everywhere(c, "rgrant/", r["height"])
    assert len(grants) == 2 and all(len(codec.decode(g)["releases"]) == 1
                                    for g in grants.values())

    # another organization cannot close it; the sponsor closes it alone
    r = _submit(c, sign(Transaction(CHAIN, "study.close", {"study": study}, org0, 0),
                        [orgs[0]]), prefer=2)
    assert r["code"] == "not_sponsor", r
    r = _submit(c, sign(Transaction(CHAIN, "study.close", {"study": study}, sponsor, nonce),
                        [key]), prefer=2)
    assert r["code"] == "ok", r
    rec = codec.decode(_same_everywhere(c, "study/", r["height"])[study_key(study)])
    assert rec["status"] == "closed"
    wait_until(c.converged, 30, "one final checkpoint on every node")


pytestmark = pytest.mark.slow
