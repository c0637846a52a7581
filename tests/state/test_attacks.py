"""Table-driven attacks on the state machine, through a real node.

Each bad transaction is ordered, recorded as rejected with its reason code, changes no state,
and the node keeps serving: a valid transaction right after it is accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from glucoledger import codec, crypto
from glucoledger.ledger.tx import Signature, SignedTx, Transaction, sign
from glucoledger.node.service import Node
from glucoledger.state.accounts_model import account_id, patient_policy, single_key_policy


@dataclass
class Patient:
    id: bytes
    k1: crypto.PrivateKey
    k2: crypto.PrivateKey
    trusted: crypto.PrivateKey


def make_patient(node: Node) -> Patient:
    k1, k2, t = crypto.generate(), crypto.generate("p256"), crypto.generate()
    policy = patient_policy(k1.public, k2.public, t.public)
    pid = account_id("patient", policy)
    r = node.submit([sign(Transaction(node.chain, "account.create",
                                      {"kind": "patient", "policy": policy}, pid, 0),
                          [k1, k2]).raw])
    assert r[0].ok, r[0].result
    return Patient(pid, k1, k2, t)


def rule_body(p: Patient) -> dict[str, object]:
    return {"proposer": p.id, "types": [], "remove": True}


def _tx(node: Node, p: Patient, type_: str, body: dict[str, object], nonce: int | None = None,
        account: bytes | None = None) -> Transaction:
    acct = p.id if account is None else account
    return Transaction(node.chain, type_, body, acct,
                       node.next_nonce(acct) if nonce is None else nonce)


def malformed(node: Node, p: Patient) -> bytes:
    return b"\xa1\x61x\x01"


def non_canonical(node: Node, p: Patient) -> bytes:
    raw = sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": [], "remove": True}),
               [p.k1]).raw
    value = codec.decode(raw)
    import cbor2

    if cbor2.dumps(value) != raw:
        return bytes(cbor2.dumps(value, canonical=False))
    return raw[:-1]


def bad_signature(node: Node, p: Patient) -> bytes:
    stx = sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": [], "remove": True}),
               [p.k1])
    sig = bytearray(stx.sigs[0].sig)
    sig[5] ^= 1
    return SignedTx.create(stx.tx, [Signature(stx.sigs[0].key, bytes(sig))]).raw


def reused_nonce(node: Node, p: Patient) -> bytes:
    return sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": [], "remove": True},
                    nonce=0), [p.k1]).raw


def future_nonce(node: Node, p: Patient) -> bytes:
    return sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": [], "remove": True},
                    nonce=99), [p.k1]).raw


def unknown_account(node: Node, p: Patient) -> bytes:
    return sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": []},
                    account=bytes(32), nonce=0), [p.k1]).raw


def too_few_cosignatures(node: Node, p: Patient) -> bytes:
    new = patient_policy(p.k1.public, crypto.generate().public, p.trusted.public)
    return sign(_tx(node, p, "account.update", {"policy": new}), [p.k1]).raw


def trusted_alone_everyday(node: Node, p: Patient) -> bytes:
    return sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": [], "remove": True}),
                [p.trusted]).raw


def not_a_cosigner(node: Node, p: Patient) -> bytes:
    return sign(_tx(node, p, "multisig.rule", {"proposer": p.id, "types": []}),
                [crypto.generate()]).raw


def cosigner_plus_stranger(node: Node, p: Patient) -> bytes:
    new = patient_policy(p.k1.public, crypto.generate().public, p.trusted.public)
    return sign(_tx(node, p, "account.update", {"policy": new}), [p.k1, crypto.generate()]).raw


def wrong_chain(node: Node, p: Patient) -> bytes:
    t = _tx(node, p, "multisig.rule", {"proposer": p.id, "types": []})
    return sign(Transaction("other/chain", t.type, t.body, t.account, t.nonce), [p.k1]).raw


def unknown_type(node: Node, p: Patient) -> bytes:
    return sign(_tx(node, p, "money.print", {}), [p.k1]).raw


def locked_policy(node: Node, p: Patient) -> bytes:
    policy = single_key_policy(p.k1.public)
    policy["thresholds"]["cosigners"] = 5
    return sign(_tx(node, p, "account.update", {"policy": policy}), [p.k1, p.k2]).raw


def second_genesis(node: Node, p: Patient) -> bytes:
    from glucoledger.node.service import genesis_envelope

    return genesis_envelope(node.chain, [("evil", crypto.generate(), crypto.generate())], 1)


def clinician_without_sponsor(node: Node, p: Patient) -> bytes:
    k = crypto.generate()
    pol = single_key_policy(k.public)
    return sign(Transaction(node.chain, "account.create", {"kind": "clinician", "policy": pol},
                            account_id("clinician", pol), 0), [k]).raw


def account_id_mismatch(node: Node, p: Patient) -> bytes:
    k = crypto.generate()
    pol = single_key_policy(k.public)
    return sign(Transaction(node.chain, "account.create", {"kind": "patient", "policy": pol},
                            bytes(32), 0), [k]).raw


def existing_account(node: Node, p: Patient) -> bytes:
    pol = patient_policy(p.k1.public, p.k2.public, p.trusted.public)
    return sign(Transaction(node.chain, "account.create", {"kind": "patient", "policy": pol},
                            p.id, 0), [p.k1, p.k2]).raw


ATTACKS: list[tuple[str, Callable[[Node, Patient], bytes], str]] = [
    ("malformed encoding", malformed, "malformed"),
    ("non-canonical encoding", non_canonical, "malformed"),
    ("bad signature", bad_signature, "bad_signature"),
    ("reused nonce (replay)", reused_nonce, "bad_nonce"),
    ("nonce from the future", future_nonce, "bad_nonce"),
    ("unknown account", unknown_account, "unknown_account"),
    ("too few cosignatures", too_few_cosignatures, "insufficient_signatures"),
    ("trusted party alone, everyday action", trusted_alone_everyday, "insufficient_signatures"),
    ("key not on the account", not_a_cosigner, "not_cosigner"),
    ("cosigner plus a stranger", cosigner_plus_stranger, "not_cosigner"),
    ("wrong chain", wrong_chain, "wrong_chain"),
    ("unknown type", unknown_type, "unknown_type"),
    ("policy that locks the account", locked_policy, "bad_policy"),
    ("second genesis", second_genesis, "genesis_exists"),
    ("clinician without a sponsor", clinician_without_sponsor, "sponsor_required"),
    ("account id not derived from keys", account_id_mismatch, "bad_account_id"),
    ("account that exists", existing_account, "exists"),
]


@pytest.mark.parametrize("name, attack, code", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_and_changes_nothing(node: Node, name: str,
                                               attack: Callable[[Node, Patient], bytes],
                                               code: str) -> None:
    p = make_patient(node)
    # a first valid action, so nonce 0 is used and "reused nonce" is a real replay
    assert node.submit([sign(_tx(node, p, "multisig.rule", rule_body(p)), [p.k1]).raw])[0].ok
    before = node.state.snapshot()
    size = node.replica.tree.size
    receipt = node.submit([attack(node, p)])[0]
    assert receipt.result.code == code, receipt.result
    assert receipt.result.message, "every refusal says why"
    assert node.state.snapshot() == before
    assert node.replica.tree.size == size + 1  # ordered and recorded, never dropped
    # the node keeps serving
    assert node.submit([sign(_tx(node, p, "multisig.rule", rule_body(p)), [p.k1]).raw])[0].ok
    node.verify()


def test_refused_and_accepted_in_one_block(node: Node) -> None:
    p = make_patient(node)
    envs = [bad_signature(node, p), sign(_tx(node, p, "multisig.rule", rule_body(p)), [p.k1]).raw,
            malformed(node, p)]
    receipts = node.submit(envs)
    assert [r.result.code for r in receipts] == ["bad_signature", "ok", "malformed"]
    assert len({r.height for r in receipts}) == 1
