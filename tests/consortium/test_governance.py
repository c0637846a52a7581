"""Governance and finality, pure: member changes need the threshold of current members."""

from __future__ import annotations

from glucoledger import crypto
from glucoledger.ledger.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from glucoledger.ledger.finality import MemberSchedule, decide, verify_final
from glucoledger.ledger.log import encode_cut, encode_tx_entry
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.genesis_file import Genesis, Member
from glucoledger.state import Replica
from glucoledger.state.accounts_model import account_id, single_key_policy

CHAIN = "test/gov"


def _founders(n: int = 3) -> tuple[Genesis, list[crypto.PrivateKey], list[crypto.PrivateKey]]:
    orgs = [crypto.generate() for _ in range(n)]
    nodes = [crypto.generate() for _ in range(n)]
    members = tuple(Member(f"org-{i}", orgs[i].public, NoteVerifier(f"org-{i}", nodes[i].public))
                    for i in range(n))
    g = Genesis(CHAIN, 2, members, {})
    for i in range(n):
        g = g.sign(f"org-{i}", nodes[i])
    return g, orgs, nodes


def _run(replica: Replica, envelopes: list[bytes]) -> list[str]:
    for e in envelopes:
        replica.feed(0, encode_tx_entry(e))
    block = replica.feed(0, encode_cut(replica.next_height, 1000))
    assert block is not None
    return [r.code for r in block.results]


def test_member_add_and_remove_need_the_threshold_and_cannot_be_replayed() -> None:
    g, orgs, _ = _founders()
    replica = Replica(CHAIN)
    assert _run(replica, [g.envelope()]) == ["ok"]
    new_org, new_node = crypto.generate(), crypto.generate()
    sender = account_id("organization", single_key_policy(orgs[0].public))
    add = Transaction(CHAIN, "gov.member_add", {"name": "org-3",
                      "policy": single_key_policy(new_org.public),
                      "node": new_node.public.to_value()}, sender, 0)
    alone = sign(add, [orgs[0]]).raw
    both = sign(add, [orgs[0], orgs[1]]).raw
    assert _run(replica, [alone, both, both]) == ["insufficient_signatures", "ok", "bad_nonce"]
    info = replica.state.get("chain/genesis")
    assert [n["name"] for n in info["nodes"]] == ["org-0", "org-1", "org-2", "org-3"]
    rm = Transaction(CHAIN, "gov.member_remove", {"name": "org-1"}, sender, 1)
    assert _run(replica, [sign(rm, [orgs[0], orgs[2]]).raw]) == ["ok"]
    info = replica.state.get("chain/genesis")
    assert [n["name"] for n in info["nodes"]] == ["org-0", "org-2", "org-3"]
    assert info["threshold"] == 2


def test_genesis_file_round_trips_and_every_member_derives_the_same_envelope() -> None:
    g, _, _ = _founders()
    again = Genesis.parse(g.to_json())
    assert again.envelope() == g.envelope()
    assert Genesis(CHAIN, 2, g.members, {}).missing() == ["org-0", "org-1", "org-2"]


def test_finality_needs_threshold_identical_notes_and_reports_divergence() -> None:
    keys = [crypto.generate() for _ in range(3)]
    members = [NoteVerifier(f"n{i}", k.public) for i, k in enumerate(keys)]
    good = Checkpoint(CHAIN, 10, b"\x01" * 32, 4, b"\x02" * 32, 99)
    bad = Checkpoint(CHAIN, 10, b"\x03" * 32, 4, b"\x04" * 32, 99)
    notes = {4: {"n0": sign_checkpoint(good, keys[0], "n0").encode(),
                 "n1": sign_checkpoint(good, keys[1], "n1").encode(),
                 "n2": sign_checkpoint(bad, keys[2], "n2").encode()}}
    final, diverged = decide(notes, MemberSchedule.fixed(members, 2), {4: good.body()})
    assert final is not None and final.signers == ("n0", "n1")
    assert verify_final(final.note, members, 2) == good
    assert [(d.node, d.height, d.our_root, d.their_root) for d in diverged] == [
        ("n2", 4, good.root, bad.root)]
    final, _ = decide(notes, MemberSchedule.fixed(members, 3), {})
    assert final is None
