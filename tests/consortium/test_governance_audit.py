"""Governance refusals of the consortium audit (pure state machine, rule sets 1 and 2).

F7: ``gov.member_add`` reused an existing organization account, and member organizations were
counted per member node, so one organization admitted twice met a threshold of 2 alone.
F11: ``anchor.record`` needed one member and kept one record per height: a member recorded a
bogus receipt first and the anchoring member's genuine record was refused."""

from __future__ import annotations

from typing import Any

import pytest

from glucoledger import crypto
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.ledger.log import encode_cut, encode_tx_entry
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.genesis_file import Genesis, Member
from glucoledger.node.proposals import describe
from glucoledger.state import Replica
from glucoledger.state.accounts import RULES
from glucoledger.state.accounts_model import account_id, make_policy, single_key_policy
from glucoledger.state.governance import anchor_key

CHAIN = "test/gov-audit"


class Consortium:
    """Three founders, threshold 2, on the given state rule set."""

    def __init__(self, rules: int) -> None:
        self.orgs = [crypto.generate() for _ in range(3)]
        self.nodes = [crypto.generate() for _ in range(3)]
        members = tuple(Member(f"org-{i}", self.orgs[i].public,
                               NoteVerifier(f"org-{i}", self.nodes[i].public))
                        for i in range(3))
        g = Genesis(CHAIN, 2, members, {}, rules=rules)
        for i in range(3):
            g = g.sign(f"org-{i}", self.nodes[i])
        self.replica = Replica(CHAIN)
        self.ids = [account_id("organization", single_key_policy(k.public)) for k in self.orgs]
        assert self.run([g.envelope()]) == ["ok"]

    def run(self, envelopes: list[bytes]) -> list[str]:
        for e in envelopes:
            self.replica.feed(0, encode_tx_entry(e))
        block = self.replica.feed(0, encode_cut(self.replica.next_height, 1000))
        assert block is not None
        return [r.code for r in block.results]

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.replica.state.get("chain/genesis"))

    def gov(self, ttype: str, body: dict[str, Any], signers: list[int], sender: int = 0,
            extra: list[crypto.PrivateKey] | None = None) -> str:
        tx = Transaction(CHAIN, ttype, body, self.ids[sender], self.info.get("gov_nonce", 0))
        return self.run([sign(tx, [self.orgs[i] for i in signers] + (extra or [])).raw])[0]


def _add_same_org_twice(c: Consortium) -> str:
    """org-0's own policy proposed as a new member 'org-0b' with a fresh node key."""
    return c.gov("gov.member_add", {"name": "org-0b", "policy": single_key_policy(
        c.orgs[0].public), "node": crypto.generate().public.to_value()}, [0, 1])


def test_an_organization_is_admitted_once_and_counted_once() -> None:
    c = Consortium(2)
    before = c.info
    assert _add_same_org_twice(c) == "member_exists"
    assert c.info == before
    # a policy that holds a member's key (with a fresh one) would count that key twice
    fresh = crypto.generate()
    shared = make_policy([(c.orgs[0].public, {"default": 1}), (fresh.public, {"default": 1})],
                         {"default": 1})
    assert c.gov("gov.member_add", {"name": "org-x", "policy": shared,
                                    "node": crypto.generate().public.to_value()},
                 [0, 1]) == "member_exists"
    # a genuinely new organization is still admitted
    new = crypto.generate()
    assert c.gov("gov.member_add", {"name": "org-3", "policy": single_key_policy(new.public),
                                    "node": crypto.generate().public.to_value()},
                 [0, 1]) == "ok"
    assert len(c.info["orgs"]) == 4


def test_a_rule_set_1_chain_replays_the_double_admission_as_it_did() -> None:
    """The audit's path, kept on rule set 1 (an old chain may hold it): admitted, and org-0
    alone then meets the threshold of 2."""
    c = Consortium(1)
    assert _add_same_org_twice(c) == "ok"
    assert c.gov("gov.member_remove", {"name": "org-2"}, [0]) == "ok"


def test_member_orgs_are_counted_by_organization_on_rule_set_2() -> None:
    """Defence in depth: even with one organization behind two member nodes (written here
    straight into the state, as no rule set 2 transaction can), it counts once."""
    c = Consortium(2)
    info = c.info
    extra = crypto.generate()
    info["nodes"] = [*info["nodes"], {**info["nodes"][0], "name": "org-0b",
                                      "key": extra.public.to_value()}]
    c.replica.state.put("chain/genesis", info)
    assert c.gov("gov.member_remove", {"name": "org-2"}, [0]) == "insufficient_signatures"
    assert c.gov("gov.member_remove", {"name": "org-2"}, [0, 1]) == "ok"


def test_cosigners_see_the_organization_and_keys_a_member_add_admits() -> None:
    c = Consortium(2)
    body = {"name": "org-0b", "policy": single_key_policy(c.orgs[0].public),
            "node": crypto.generate().public.to_value()}
    words = describe(sign(Transaction(CHAIN, "gov.member_add", body, c.ids[0], 0),
                          [c.orgs[0]]))
    assert c.ids[0].hex() in words  # org-0's own account id: visibly not a new organization
    assert c.orgs[0].public.raw.hex() in words and "thresholds {'default': 1}" in words
    bad = describe(sign(Transaction(CHAIN, "gov.member_add", {**body, "policy": {"x": 1}},
                                    c.ids[0], 0), [c.orgs[0]]))
    assert "invalid policy" in bad


REAL = {"height": 0, "size": 1, "root": b"\x33" * 32, "chain_id": 1, "tx_hash": b"\x44" * 32,
        "block_number": 100}
BOGUS = {**REAL, "root": b"\x00" * 32, "tx_hash": b"\xee" * 32, "block_number": 1}


def _anchor(c: Consortium, sender: int, body: dict[str, Any], nonce: int,
            signer: int | None = None) -> str:
    key = c.orgs[sender if signer is None else signer]
    return c.run([sign(Transaction(CHAIN, "anchor.record", body, c.ids[sender], nonce),
                       [key]).raw])[0]


def test_a_member_cannot_preempt_another_members_anchor_record() -> None:
    c = Consortium(2)
    assert _anchor(c, 2, BOGUS, 0) == "ok"  # org-2 first, under its own name
    assert _anchor(c, 0, REAL, 0) == "ok"  # org-0's pre-signed record: nonce 0 still its own
    state = c.replica.state
    assert state.get(anchor_key(0, c.ids[0]))["root"] == REAL["root"]
    assert state.get(anchor_key(0, c.ids[2]))["root"] == BOGUS["root"]
    assert _anchor(c, 0, REAL, 1) == "exists"
    # org-2 cannot record in org-0's name (or burn its nonce)
    assert _anchor(c, 0, {**BOGUS, "height": 1}, 1, signer=2) == "not_recorder"
    assert c.info["anchor_nonce/" + c.ids[0].hex()] == 1


def test_a_rule_set_1_chain_keeps_one_anchor_per_height() -> None:
    c = Consortium(1)
    assert _anchor(c, 2, BOGUS, 0) == "ok"
    assert _anchor(c, 0, REAL, 1) == "exists"
    assert c.replica.state.get(anchor_key(0))["root"] == BOGUS["root"]


@pytest.mark.parametrize("rules", [1, 2])
def test_rule_set_is_recorded_in_the_genesis_file_and_chain(rules: int) -> None:
    import json

    from glucoledger.state.accounts import rules as rule_set

    c = Consortium(rules)
    assert rule_set(c.replica.state) == rules
    g = Genesis(CHAIN, 1, (Member("a", c.orgs[0].public, NoteVerifier("a", c.nodes[0].public)),),
                {}, rules=rules)
    assert ("rules" in json.loads(g.to_json())) == (rules != 1)
    assert Genesis.parse(g.to_json()).transaction() == g.transaction()


def test_verify_anchor_checks_every_members_record_of_the_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``check_recorded`` (``glucoledger verify-anchor``) on a rule set 2 chain: a bogus
    record of block 0 by one member hides neither the genuine one nor its verdict."""
    from types import SimpleNamespace

    from glucoledger.errors import ConsistencyError
    from glucoledger.node import anchor

    c = Consortium(2)
    first, last = sorted(range(3), key=lambda i: c.ids[i])[::2]
    assert _anchor(c, last, BOGUS, 0) == "ok"  # the bogus record sorts last
    assert _anchor(c, first, REAL, 0) == "ok"

    def fake_verify(w3: Any, record: dict[str, Any], cp: Any) -> Any:
        if record["root"] != REAL["root"]:
            raise ConsistencyError("the anchor transaction's data is not this checkpoint's")
        return cp

    monkeypatch.setattr(anchor, "verify_anchor", fake_verify)
    monkeypatch.setattr(anchor, "verify_final_at", lambda note, schedule: "cp")
    node = SimpleNamespace(state=c.replica.state)
    for height in (None, 0):
        cp, record = anchor.check_recorded(node, None, height, cosigned=b"note")  # type: ignore[arg-type]
        assert cp == "cp" and record["root"] == REAL["root"]
    # with only the bogus record, its failure is reported
    c2 = Consortium(2)
    assert _anchor(c2, 2, BOGUS, 0) == "ok"
    with pytest.raises(ConsistencyError):
        anchor.check_recorded(SimpleNamespace(state=c2.replica.state), None, 0,  # type: ignore[arg-type]
                              cosigned=b"note")


def _upgrade(c: Consortium, body: dict[str, Any], signers: list[int]) -> str:
    return c.gov("gov.upgrade", body, signers)


def test_a_rule_set_1_chain_moves_to_rule_set_2_by_the_members_threshold() -> None:
    """``gov.upgrade``: a running chain founded before rule set 2 gets its refusals from the
    upgrade on, with the threshold of members, and never goes back."""
    from glucoledger.state.accounts import access_records, rules

    c = Consortium(1)
    before = c.info
    assert _upgrade(c, {"rules": 2}, [0]) == "insufficient_signatures"
    assert c.info == before and rules(c.replica.state) == 1
    for bad, code in (({}, "malformed"), ({"rules": True}, "bad_upgrade"),
                      ({"rules": "2"}, "bad_upgrade"), ({"access_records": 0}, "bad_upgrade"),
                      ({"rules": 10**6}, "bad_upgrade"), ({"rules": 2, "at": 5}, "malformed"),
                      ({"rules": 1}, "bad_upgrade")):
        assert _upgrade(c, bad, [0, 1]) == code, bad
        assert rules(c.replica.state) == 1
    assert _upgrade(c, {"rules": 2, "access_records": 2}, [0, 1]) == "ok"
    state = c.replica.state
    assert (rules(state), access_records(state)) == (2, 2)
    # from here on, rule set 2's refusals: one organization is one member
    assert _add_same_org_twice(c) == "member_exists"
    assert _upgrade(c, {"rules": 2}, [0, 1]) == "bad_upgrade"  # versions only go up
    assert _upgrade(c, {"rules": 1}, [0, 1, 2]) == "bad_upgrade"
    assert rules(c.replica.state) == 2


def test_an_upgrade_to_rules_this_code_does_not_know_stops_the_node() -> None:
    """Refusing it would be recorded, and code that knows those rules would replay the same
    transaction as applied: the chain would no longer verify. So an authorized upgrade to
    an unknown version stops the node (nothing applied), saying what to install; an
    unauthorized one is refused as any code refuses it."""
    from glucoledger.state.replica import ReplicaFailedError

    c = Consortium(1)
    future = max(RULES) + 1
    assert _upgrade(c, {"rules": future}, [0]) == "insufficient_signatures"
    before = c.info
    with pytest.raises(ReplicaFailedError, match=f"rules {future}.*does not know: install"):
        _upgrade(c, {"rules": future}, [0, 1])
    assert c.info == before  # nothing applied, the governance nonce not spent


def test_the_upgrade_takes_over_the_anchor_counter_so_no_old_envelope_replays() -> None:
    """Rule set 1 shared one anchor counter; rule set 2 gives each member its own. Each own
    counter starts where the shared one stood, so an anchor envelope signed before the
    upgrade (a nonce of the shared counter) cannot be replayed after it."""
    c = Consortium(1)
    held = sign(Transaction(CHAIN, "anchor.record", {**REAL, "height": 1}, c.ids[0], 1),
                [c.orgs[0]]).raw  # org-0's pre-signed next anchor, never sent
    assert _anchor(c, 2, BOGUS, 0) == "ok"
    assert c.info["anchor_nonce"] == 1
    assert _upgrade(c, {"rules": 2}, [0, 1]) == "ok"
    assert all(c.info["anchor_nonce/" + i.hex()] == 1 for i in c.ids)
    assert c.run([held]) == ["ok"]  # nonce 1 is org-0's own next: its genuine record
    assert c.run([held]) == ["bad_nonce"]
    assert _anchor(c, 2, {**BOGUS, "height": 1}, 0) == "bad_nonce"  # org-2's old nonce
    state = c.replica.state
    assert state.get(anchor_key(0))["root"] == BOGUS["root"]  # rule set 1's record stays
    assert state.get(anchor_key(1, c.ids[0]))["root"] == REAL["root"]
