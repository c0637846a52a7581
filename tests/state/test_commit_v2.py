"""``data.commit`` format 2 (node-vouched gateway uploads), as a pure function: no ``Node``.

One node signature per upload: a gateway the committing node's organization sponsored (its
key custodial in the node's wallet) does not sign the upload; the node's signature on the
commit covers every field. A device never loses its own signature; a gateway someone else
sponsored keeps signing; format 1 commits are accepted as before.
"""

from __future__ import annotations

from typing import Any

from glucoledger import crypto, state  # noqa: F401 - importing state registers the handlers
from glucoledger.crypto import PrivateKey
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.state.accounts_model import account_id, account_key, single_key_policy
from glucoledger.state.data import UPLOAD_CONTEXT, VOUCHED, DataCommit, upload_statement
from glucoledger.state.devices import device_id, device_key
from glucoledger.state.machine import Context, apply
from glucoledger.state.store import State

CHAIN = "test/v2"
T = 1_700_000_000_000
H = 3_600_000


class _World:
    def __init__(self) -> None:
        self.st = State()
        self.i = 0
        self.org, self.node, self.patient = crypto.generate(), crypto.generate(), crypto.generate()
        self.org_id = account_id("organization", single_key_policy(self.org.public))
        self.node_id = account_id("node", single_key_policy(self.node.public))
        genesis = {"orgs": [{"name": "org", "policy": single_key_policy(self.org.public),
                             "node": self.node.public.to_value()}], "threshold": 1}
        self.ok(sign(Transaction(CHAIN, "chain.genesis", genesis, self.org_id, 0), [self.node]))
        self.patient_id = self.create("patient", self.patient)

    def run(self, stx: Any) -> str:
        result, _ = apply(self.st, stx, Context(CHAIN, 1, T, self.i))
        self.i += 1
        return f"{result.code}: {result.message}" if not result.ok else "ok"

    def ok(self, stx: Any) -> None:
        assert self.run(stx) == "ok"

    def create(self, kind: str, key: PrivateKey, sponsor: tuple[bytes, PrivateKey] | None = None
               ) -> bytes:
        body: dict[str, Any] = {"kind": kind, "policy": single_key_policy(key.public)}
        signers = [key]
        if sponsor is not None:
            body["sponsor"] = sponsor[0]
            signers.append(sponsor[1])
        acct = account_id(kind, body["policy"])
        self.ok(sign(Transaction(CHAIN, "account.create", body, acct, 0), signers))
        return acct

    def nonce(self, acct: bytes) -> int:
        return int(self.st.get(account_key(acct))["nonce"])

    def bind(self, uploader: bytes) -> None:
        self.ok(sign(Transaction(CHAIN, "device.bind", {"device": uploader}, self.patient_id,
                                 self.nonce(self.patient_id)), [self.patient]))

    def commit(self, uploader: bytes, seq: int, trust: str, signer: PrivateKey | None,
               **over: Any) -> str:
        root = crypto.sha256(b"root%d" % seq)
        b = DataCommit(self.patient_id, "cgm", T - T % H, T - T % H + H, 12, root,
                       crypto.sha256(b"ct%d" % seq), uploader, seq, "node", trust)
        body = b.to_body()
        if signer is None:
            body["v"] = VOUCHED
        else:
            statement = upload_statement(chain=CHAIN, patient=self.patient_id,
                                         uploader=uploader, stream="cgm", seq=seq,
                                         start=b.start, end=b.end, count=12, root=root)
            body["key"] = signer.public.to_value()
            body["sig"] = signer.sign(UPLOAD_CONTEXT, statement)
        body.update(over)
        return self.run(sign(Transaction(CHAIN, "data.commit", body, self.node_id, seq),
                             [self.node]))


def test_a_gateway_of_the_nodes_organization_needs_no_upload_signature() -> None:
    w = _World()
    gw_key = crypto.generate()
    gw = w.create("gateway", gw_key, (w.org_id, w.org))
    w.bind(gw)
    assert w.commit(gw, 1, "gateway-attested", None) == "ok"
    assert w.st.get(device_key(gw))["seq"] == 1
    # the same rules as format 1 otherwise: replays, trust level
    before = w.st.snapshot()
    assert w.commit(gw, 1, "gateway-attested", None).startswith("replayed_seq")
    assert w.commit(gw, 2, "device-signed", None).startswith("wrong_trust")
    assert w.st.snapshot() == before
    # format 1 from the same gateway still works, and the two interleave on one sequence
    assert w.commit(gw, 2, "gateway-attested", gw_key) == "ok"
    assert w.commit(gw, 3, "gateway-attested", None) == "ok"


def test_a_device_always_signs_its_own_uploads() -> None:
    w = _World()
    maker = crypto.generate()
    maker_id = w.create("maker", maker, (w.org_id, w.org))
    dev = crypto.generate()
    w.ok(sign(Transaction(CHAIN, "device.register", {"serial": "S1", "model": "G7",
                                                      "key": dev.public.to_value()},
                          maker_id, 1), [maker]))
    did = device_id(maker_id, "S1")
    w.bind(did)
    before = w.st.snapshot()
    got = w.commit(did, 1, "device-signed", None)
    assert got.startswith("unsigned_upload") and "device's own signature" in got
    assert w.st.snapshot() == before
    assert w.commit(did, 1, "device-signed", dev) == "ok"


def test_a_gateway_sponsored_by_someone_else_keeps_signing() -> None:
    w = _World()
    gw_key = crypto.generate()
    gw = w.create("gateway", gw_key, (w.patient_id, w.patient))
    w.bind(gw)
    before = w.st.snapshot()
    got = w.commit(gw, 1, "gateway-attested", None)
    assert got.startswith("not_custodian") and "format 1" in got
    assert w.st.snapshot() == before
    assert w.commit(gw, 1, "gateway-attested", gw_key) == "ok"


def test_format_2_shape_refusals_use_format_1_words() -> None:
    w = _World()
    gw = w.create("gateway", crypto.generate(), (w.org_id, w.org))
    w.bind(gw)
    for over in ({"v": 3}, {"v": True}, {"v": "2"}, {"v": 2, "sig": b"x" * 64}):
        got = w.commit(gw, 1, "gateway-attested", None, **over)
        assert got.startswith("malformed: data.commit takes exactly"), (over, got)
    assert w.st.get(device_key(gw))["seq"] == 0


def test_round_trip_of_both_formats() -> None:
    b2 = DataCommit(bytes(32), "cgm", 0, H, 1, bytes(32), bytes(32), bytes(32), 1, "node",
                    "gateway-attested", v=VOUCHED)
    assert set(b2.to_body()) == {"patient", "stream", "start", "end", "count", "root", "ct",
                                 "uploader", "seq", "trust", "custody", "v"}
    assert DataCommit.parse(b2.to_body()) == b2
    b1 = DataCommit(bytes(32), "cgm", 0, H, 1, bytes(32), bytes(32), bytes(32), 1, "node",
                    "device-signed", {"alg": "ed25519"}, b"s")
    assert DataCommit.parse(b1.to_body()) == b1 and "v" not in b1.to_body()
