"""One node signature per upload (issue 16): a Nightscout POST to a gateway this node runs
becomes a ``data.commit`` in format 2, signed once, by the node; the ledger verifies; and an
unsigned upload from the network is still refused (only the node's own gateway path vouches).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger import codec
from glucoledger.api.context import ServerContext
from glucoledger.crypto import ed25519
from glucoledger.errors import SignatureError
from glucoledger.glucose.readings import Batch
from glucoledger.ledger.tx import SignedTx
from glucoledger.node.accounts import create_account, identity, keys_of
from glucoledger.node.service import Node
from glucoledger.state.data import VOUCHED
from glucoledger.vault.batch import Upload, prepare_upload

NOW = int(time.time() * 1000)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Node, ServerContext]]:
    node = Node.init(tmp_path / "node")
    ctx = ServerContext.create(node)
    create_account(node, "t", "trusted")
    create_account(node, "ann", "patient", trusted="t")
    ctx.svc.nightscout.add_uploader("ann", "ann-uploader-secret")
    yield node, ctx
    ctx.close()
    node.close()


def _commits(node: Node) -> list[SignedTx]:
    out = []
    for i in range(node.store.tx_count()):
        stx = SignedTx.decode(node.store.tx_at(i).envelope)
        if stx.tx.type == "data.commit":
            out.append(stx)
    return out


def test_a_nightscout_upload_is_signed_once_by_the_node(
        site: tuple[Node, ServerContext], monkeypatch: pytest.MonkeyPatch) -> None:
    node, ctx = site
    ns = ctx.svc.nightscout
    ann = ns.authenticate(hashlib.sha1(b"ann-uploader-secret").hexdigest(), None)
    signed: list[str] = []
    real_sign = ed25519.sign

    def counting(secret: bytes, data: bytes) -> bytes:
        # Counted where crypto.keys hands libsodium the signed bytes (a compiled PrivateKey's
        # methods cannot be replaced): "glucoledger/v1 sig:" + context + NUL + message.
        signed.append(data.split(b"\x00", 1)[0].removeprefix(b"glucoledger/v1 sig:").decode())
        return real_sign(secret, data)

    monkeypatch.setattr(ed25519, "sign", counting)  # counts, then signs for real
    docs = [{"type": "sgv", "sgv": 100 + k, "date": NOW - 3_600_000 + k * 300_000,
             "device": "xDrip-G6"} for k in range(3)]
    ns.post(ann, "entries", docs, NOW).result(30)
    monkeypatch.undo()
    assert signed.count("upload") == 0, signed  # the gateway no longer signs
    assert signed.count("tx") == 1, signed  # the node signs the one data.commit
    (commit,) = _commits(node)
    body = commit.tx.body
    assert body["v"] == VOUCHED and "sig" not in body and "key" not in body
    assert body["trust"] == "gateway-attested" and body["count"] == 3
    assert len(commit.sigs) == 1 and commit.sigs[0].key == node.node_key.public
    report = node.verify()
    assert report.rejected == 0 and report.transactions == node.store.tx_count()


def test_an_unsigned_upload_from_the_network_is_refused(
        site: tuple[Node, ServerContext]) -> None:
    node, ctx = site
    ns = ctx.svc.nightscout
    ann = ns.authenticate(hashlib.sha1(b"ann-uploader-secret").hexdigest(), None)
    ns.post(ann, "entries", [{"type": "sgv", "sgv": 99, "date": NOW - 600_000,
                              "device": "x"}], NOW).result(30)
    (first,) = _commits(node)
    gw, patient = first.tx.body["uploader"], first.tx.body["patient"]
    batch = Batch.from_value({"stream": "cgm", "items": [
        {"type": "cgm", "time_ms": NOW - 300_000, "tz_offset_min": 0, "mgdl": 150,
         "trend": None}], "start_ms": NOW - 300_000, "end_ms": NOW - 300_000, "count": 1})
    gw_key = keys_of(node, identity(node, ann.account))[0]  # the gateway's own key
    assert gw_key.public.key_id in node.account(gw).keys
    vouched = prepare_upload(node.chain, patient, gw, 2, batch, gw_key, vouched=True)
    wire = codec.encode(vouched.to_value())  # what a client could send: no vouched flag
    again = Upload.from_value(codec.decode(wire))
    assert again.vouched is False and again.sig == b""
    ingest = ctx.svc.ingest
    with pytest.raises(SignatureError, match="does not verify"):
        ingest.upload(again)
    (result,) = ingest.upload_wire([wire])
    assert isinstance(result, SignatureError)
    assert len(_commits(node)) == 1  # nothing committed
