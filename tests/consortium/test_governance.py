"""Governance and finality, pure: member changes need the threshold of current members."""

from __future__ import annotations

import pytest

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


def test_the_genesis_file_names_the_access_record_format() -> None:
    """A file written before format 2 has no field: format 1, so the transaction its members
    signed stays the same; a file ``consortium genesis`` writes now names 2; the chain records
    it; an unknown format is refused as the file is read."""
    import dataclasses
    import json

    from glucoledger.errors import MalformedError
    from glucoledger.state.accounts import access_records

    old, _, nodes = _founders()
    assert "access_records" not in json.loads(old.to_json())
    assert Genesis.parse(old.to_json()).envelope() == old.envelope()
    new = dataclasses.replace(old, signatures={}, access_records=2)
    for i in range(3):
        new = new.sign(f"org-{i}", nodes[i])
    doc = json.loads(new.to_json())
    assert doc["access_records"] == 2 and Genesis.parse(new.to_json()) == new
    assert new.envelope() != old.envelope()
    for g, fmt in ((old, 1), (new, 2)):
        replica = Replica(CHAIN)
        assert _run(replica, [g.envelope()]) == ["ok"]
        assert access_records(replica.state) == fmt
    for bad in (3, True, "2"):
        with pytest.raises(MalformedError, match="access_records"):
            Genesis.parse(json.dumps({**doc, "access_records": bad}))


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


def _cosigned(cp: Checkpoint, signers: list[tuple[str, crypto.PrivateKey]]) -> bytes:
    from glucoledger.ledger.finality import cosign

    return cosign(cp.body(), [sign_checkpoint(cp, k, n) for n, k in signers])


def test_finality_of_each_height_is_judged_by_the_members_in_force_at_it() -> None:
    from glucoledger.errors import SignatureError
    from glucoledger.ledger.finality import verify_final_at
    from glucoledger.state.governance import member_schedule

    g, orgs, nodes = _founders()
    replica = Replica(CHAIN)
    assert _run(replica, [g.envelope()]) == ["ok"]  # block 0
    sender = account_id("organization", single_key_policy(orgs[0].public))
    # Block 1 removes org-2 from height 3 on and asks for 2 of the remaining 2.
    rm = Transaction(CHAIN, "gov.member_remove", {"name": "org-2", "threshold": 2, "at": 3},
                     sender, 0)
    late = Transaction(CHAIN, "gov.threshold", {"threshold": 1, "at": 1}, sender, 1)
    assert _run(replica, [sign(rm, [orgs[0], orgs[1]]).raw,
                          sign(late, [orgs[0], orgs[1]]).raw]) == ["ok", "bad_height"]
    schedule = member_schedule(replica.state)
    assert [v.name for v in schedule.at(2)[0]] == ["org-0", "org-1", "org-2"]
    assert [v.name for v in schedule.at(3)[0]] == ["org-0", "org-1"]

    def cp(h: int) -> Checkpoint:
        return Checkpoint(CHAIN, 5 + h, bytes([h]) * 32, h, bytes([h + 1]) * 32, 1000)

    # Before the removal, org-2's signature still counts toward the original 2 of 3.
    before = _cosigned(cp(2), [("org-0", nodes[0]), ("org-2", nodes[2])])
    assert verify_final_at(before, schedule).height == 2
    # From height 3 on, org-2 no longer counts: 1 of the 2 needed.
    after = _cosigned(cp(3), [("org-0", nodes[0]), ("org-2", nodes[2])])
    with pytest.raises(SignatureError, match="1 valid signature"):
        verify_final_at(after, schedule)
    assert verify_final_at(_cosigned(cp(3), [("org-0", nodes[0]), ("org-1", nodes[1])]),
                           schedule).height == 3
    # decide() agrees, height by height.
    notes = {h: {n: sign_checkpoint(cp(h), k, n).encode()
                 for n, k in (("org-0", nodes[0]), ("org-2", nodes[2]))} for h in (2, 3)}
    final, _ = decide({2: notes[2]}, schedule, {})
    assert final is not None and final.checkpoint.height == 2
    final, _ = decide({3: notes[3]}, schedule, {})
    assert final is None


def test_a_member_added_later_never_counts_for_earlier_heights() -> None:
    from glucoledger.errors import SignatureError
    from glucoledger.ledger.finality import verify_final_at
    from glucoledger.state.governance import member_schedule

    g, orgs, nodes = _founders()
    replica = Replica(CHAIN)
    _run(replica, [g.envelope()])
    new_org, new_node = crypto.generate(), crypto.generate()
    sender = account_id("organization", single_key_policy(orgs[0].public))
    add = Transaction(CHAIN, "gov.member_add", {"name": "org-3", "policy": single_key_policy(
        new_org.public), "node": new_node.public.to_value()}, sender, 0)
    assert _run(replica, [sign(add, [orgs[0], orgs[1]]).raw]) == ["ok"]  # block 1: from 2
    schedule = member_schedule(replica.state)
    old = Checkpoint(CHAIN, 3, b"\x05" * 32, 1, b"\x06" * 32, 1000)
    with pytest.raises(SignatureError):
        verify_final_at(_cosigned(old, [("org-0", nodes[0]), ("org-3", new_node)]), schedule)
    new = Checkpoint(CHAIN, 4, b"\x07" * 32, 2, b"\x08" * 32, 1000)
    assert verify_final_at(_cosigned(new, [("org-0", nodes[0]), ("org-3", new_node)]),
                           schedule) == new


def test_key_rotation_takes_effect_at_its_height_and_anchor_nonce_is_its_own() -> None:
    from glucoledger.state.governance import member_schedule

    g, orgs, nodes = _founders()
    replica = Replica(CHAIN)
    _run(replica, [g.envelope()])
    sender = account_id("organization", single_key_policy(orgs[1].public))
    fresh = crypto.generate()
    rot = Transaction(CHAIN, "gov.rotate_key", {"name": "org-1", "node": fresh.public.to_value(),
                                                "at": 5}, sender, 0)
    body = {"height": 0, "size": 1, "root": b"\x01" * 32, "chain_id": 1,
            "tx_hash": b"\x02" * 32, "block_number": 3}
    anchor = Transaction(CHAIN, "anchor.record", body, sender, 0)  # nonce 0 of its own counter
    assert _run(replica, [sign(anchor, [orgs[1]]).raw, sign(rot, [orgs[1]]).raw,
                          sign(rot, [orgs[1], orgs[2]]).raw]) == [
        "ok", "insufficient_signatures", "ok"]
    schedule = member_schedule(replica.state)
    assert schedule.at(4)[0][1].key == nodes[1].public
    assert schedule.at(5)[0][1].key == fresh.public
    info = replica.state.get("chain/genesis")
    assert (info["gov_nonce"], info["anchor_nonce"]) == (1, 1)


def test_a_proposal_is_cosigned_only_after_its_signatures_check() -> None:
    from glucoledger.errors import InputError, SignatureError
    from glucoledger.node.proposals import cosign, describe

    _, orgs, _ = _founders()
    sender = account_id("organization", single_key_policy(orgs[0].public))
    prop = sign(Transaction(CHAIN, "gov.threshold", {"threshold": 3}, sender, 0), [orgs[0]])
    two = cosign(prop.raw, orgs[1])
    assert len(two.sigs) == 2 and two.tx == prop.tx
    assert "gov.threshold" in describe(two) and "2 signature(s)" in describe(two)
    with pytest.raises(InputError, match="already"):
        cosign(two.raw, orgs[1])
    tampered = bytearray(prop.raw)
    tampered[-5] ^= 1  # inside the first signature
    with pytest.raises(SignatureError):
        cosign(bytes(tampered), orgs[1])
    other = sign(Transaction(CHAIN, "account.update", {}, sender, 0), [orgs[0]])
    with pytest.raises(InputError, match="not a governance proposal"):
        cosign(other.raw, orgs[1])
