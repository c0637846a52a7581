"""Audit F13: ``data.commit`` had no bound on its hour range, and the access index writes one
state key per hour on every node (10^6 hours: 2 s and 337 MB; 10^9 never finished; a device
within the reading-time bounds reached 876,576 keys per upload). On a rule set 2 chain a
commit spans at most ``MAX_SPAN_HOURS`` (366 days), refused as ``span_too_long`` past it; a
rule set 1 chain replays as it did. Ingest refuses earlier with the same rule, and cuts the
files it signs itself so that no part is longer."""

from __future__ import annotations

from typing import Any

import pytest

from glucoledger.errors import RejectedError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.ingest import split_batch
from glucoledger.state.accounts_model import account_key, single_key_policy
from glucoledger.state.data import (
    HOUR_MS,
    MAX_SPAN_HOURS,
    UPLOAD_CONTEXT,
    check_span,
    upload_statement,
)
from glucoledger.state.devices import device_id
from glucoledger.state.machine import Context, apply
from glucoledger.state.store import State

from .golden_ledger import CHAIN, T0, World, examples

START = T0 - T0 % HOUR_MS


class Chain:
    def __init__(self, rules: int) -> None:
        self.w = w = World()
        self.state = State()
        self.index = 0
        genesis: dict[str, Any] = {
            "orgs": [{"name": "org", "policy": single_key_policy(w.org.public),
                      "node": w.node.public.to_value()}], "threshold": 1}
        if rules != 1:
            genesis["rules"] = rules
        assert self.run("chain.genesis", genesis, "organization", [w.node]) == "ok"
        for kind in ("patient", "maker"):
            body: dict[str, Any] = {"kind": kind,
                                    "policy": single_key_policy(w.keys[kind].public)}
            signers = [w.keys[kind]]
            if kind != "patient":
                body["sponsor"] = w.ids["organization"]
                signers.append(w.org)
            assert self.run("account.create", body, kind, signers) == "ok"
        ex = examples(w)
        assert self.run("device.register", ex["device.register"], "maker", [w.maker]) == "ok"
        self.device = device_id(w.ids["maker"], "SN-1")
        assert self.run("device.bind", {"device": self.device}, "patient", [w.patient]) == "ok"
        self.seq = 0

    def run(self, ttype: str, body: dict[str, Any], who: str, keys: list[Any]) -> str:
        acct = self.w.ids[who]
        rec = self.state.get(account_key(acct))
        stx = sign(Transaction(CHAIN, ttype, body, acct, 0 if rec is None else rec["nonce"]),
                   keys)
        result, _ = apply(self.state, stx.raw,
                          Context(CHAIN, 1 + self.index, T0 + self.index, self.index))
        self.index += 1
        return result.code

    def commit(self, hours: int) -> str:
        self.seq += 1
        w, start, end = self.w, START, START + hours * HOUR_MS
        root = bytes([self.seq]) * 32
        stmt = upload_statement(chain=CHAIN, patient=w.ids["patient"], uploader=self.device,
                                stream="cgm", seq=self.seq, start=start, end=end, count=2,
                                root=root)
        body = {"patient": w.ids["patient"], "stream": "cgm", "start": start, "end": end,
                "count": 2, "root": root, "ct": root, "uploader": self.device, "seq": self.seq,
                "trust": "device-signed", "key": w.device.public.to_value(),
                "sig": w.device.sign(UPLOAD_CONTEXT, stmt), "custody": "node"}
        return self.run("data.commit", body, "node", [w.node])


def test_a_commit_spans_at_most_366_days_on_rule_set_2() -> None:
    chain = Chain(2)
    assert chain.commit(MAX_SPAN_HOURS) == "ok"
    before = chain.state.snapshot()
    assert chain.commit(MAX_SPAN_HOURS + 1) == "span_too_long"
    assert chain.commit(1_000_000) == "span_too_long"
    assert chain.state.snapshot() == before  # nothing written, not one index key


def test_a_rule_set_1_chain_replays_longer_commits_as_before() -> None:
    chain = Chain(1)
    assert chain.commit(MAX_SPAN_HOURS + 1) == "ok"


def test_ingest_uses_the_same_rule_and_cuts_long_files() -> None:
    check_span(START, START + MAX_SPAN_HOURS * HOUR_MS)
    with pytest.raises(RejectedError) as exc:
        check_span(START, START + (MAX_SPAN_HOURS + 1) * HOUR_MS)
    assert exc.value.code == "span_too_long" and "split" in exc.value.message
    # two years of one reading a day: every part split_batch makes fits the ledger's rule
    times = [START + 30 * 60_000 + d * 86_400_000 for d in range(730)]
    items = tuple(CgmReading(t, 0, 100) for t in times)
    batch = Batch("cgm", items, times[0], times[-1], len(items))
    parts = split_batch(batch, 10_000)
    assert len(parts) == 2 and sum(p.count for p in parts) == 730
    for p in parts:
        lo, hi = p.start_ms - p.start_ms % HOUR_MS, p.end_ms - p.end_ms % HOUR_MS + HOUR_MS
        check_span(lo, hi)
    assert [p.count for p in parts] == [366, 364]
    assert [p.count for p in split_batch(batch, 288)] == [288, 288, 154]
