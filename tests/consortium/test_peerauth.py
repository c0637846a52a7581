"""Who may call node-to-node endpoints (``node.peerauth``), pure: the members in force at
the node's height as the ledger's governance records them, and why a former key is out."""

from __future__ import annotations

from glucoledger import crypto
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.peerauth import NOBODY, peers_at
from glucoledger.state import Replica
from glucoledger.state.accounts_model import account_id, single_key_policy
from glucoledger.state.governance import member_schedule

from .test_governance import CHAIN, _founders, _run


def test_removed_and_replaced_keys_are_former_from_the_height_their_change_states() -> None:
    g, orgs, nodes = _founders()
    replica = Replica(CHAIN)
    assert _run(replica, [g.envelope()]) == ["ok"]  # block 0
    sender = account_id("organization", single_key_policy(orgs[0].public))
    new_key = crypto.generate()

    def gov(type_: str, body: dict[str, object], nonce: int) -> bytes:
        return sign(Transaction(CHAIN, type_, body, sender, nonce), [orgs[0], orgs[1]]).raw

    # Block 1: org-1's node key rotates from height 3; org-2 leaves from height 5.
    assert _run(replica, [
        gov("gov.rotate_key", {"name": "org-1", "node": new_key.public.to_value(), "at": 3}, 0),
        gov("gov.member_remove", {"name": "org-2", "at": 5}, 1)]) == ["ok", "ok"]
    schedule = member_schedule(replica.state)
    ids = [k.public.key_id for k in nodes]

    early = peers_at(schedule, 2)  # nothing in force yet: all three founders' keys
    assert set(early.current) == set(ids) and early.former == {}
    assert early.names == ["org-0", "org-1", "org-2"]

    mid = peers_at(schedule, 4)  # org-1 signs with its new key; its old one is out
    assert set(mid.current) == {ids[0], new_key.public.key_id, ids[2]}
    replaced = mid.former[ids[1]]
    assert (replaced.name, replaced.since, replaced.removed) == ("org-1", 3, False)
    assert replaced.key == nodes[1].public
    assert "replaced at height 3" in replaced.message() and "node-key" in replaced.message()

    late = peers_at(schedule, 9)
    assert late.names == ["org-0", "org-1"] and ids[2] not in late.current
    removed = late.former[ids[2]]
    assert (removed.name, removed.since, removed.removed) == ("org-2", 5, True)
    assert removed.message().startswith("org-2 was removed from the consortium at height 5")
    assert late.former[ids[1]].since == 3  # still the height its own change stated
    assert not set(late.current) & set(late.former)
    # A key the ledger never named is neither current nor former: a stranger (401).
    stranger = crypto.generate().public.key_id
    assert stranger not in late.current and stranger not in late.former


def test_a_key_scheduled_for_later_is_not_in_force_and_no_genesis_means_nobody() -> None:
    keys = [crypto.generate() for _ in range(2)]
    from glucoledger.ledger.finality import MemberSchedule

    a, b = (NoteVerifier(f"n{i}", k.public) for i, k in enumerate(keys))
    schedule = MemberSchedule(((0, (a,), 1), (7, (a, b), 1)))
    assert set(peers_at(schedule, 6).current) == {a.key.key_id}
    assert peers_at(schedule, 6).former == {}  # b is not in force yet, and was never out
    assert set(peers_at(schedule, 7).current) == {a.key.key_id, b.key.key_id}
    assert peers_at(None, 100) is NOBODY and not NOBODY.current
