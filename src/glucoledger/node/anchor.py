"""Anchoring final checkpoints to an Ethereum-compatible chain (web3.py), and checking them.

A final (cosigned) checkpoint is written as the data of a zero-value transaction::

    payload = b"GLAN" || 0x01 || height (8 bytes, big-endian) || size (8) || root (32)
              || SHA-256(origin)[:16]                                       (69 bytes)

The receipt (chain id, transaction hash, block number) goes on the ledger as an
``anchor.record`` transaction (``state.governance``), signed by a member organization.
``verify_anchor`` checks a recorded anchor against the public chain and the checkpoint: the
chain id, the transaction exists in that block, succeeded, and its data is exactly the
payload of that checkpoint, whose cosignatures verify under the members' keys.

The endpoint is a setting: ``tester`` (an in-process eth-tester chain with py-evm, for tests
and the benchmark) or an ``http(s)://`` JSON-RPC URL. web3 is an optional dependency
(``pip install 'glucoledger[anchor]'``); without it, these functions raise InputError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..crypto import PrivateKey, sha256
from ..errors import ConsistencyError, InputError, NotFoundError
from ..jsonin import recursion_limit_kept
from ..ledger.checkpoint import Checkpoint, parse_note
from ..ledger.finality import MemberSchedule, verify_final_at
from ..ledger.tx import SignedTx, Transaction, sign
from ..state.accounts_model import account_id, single_key_policy
from ..state.governance import ANCHOR_PREFIX, member_schedule

if TYPE_CHECKING:
    from .service import Node

__all__ = ["AnchorReceipt", "Anchorer", "check_recorded", "connect", "payload", "record_tx",
           "verify_anchor"]

_MAGIC = b"GLAN\x01"


def payload(cp: Checkpoint) -> bytes:
    return (_MAGIC + struct.pack(">QQ", cp.height, cp.size) + cp.root
            + sha256(cp.origin.encode())[:16])


@dataclass(frozen=True, slots=True)
class AnchorReceipt:
    chain_id: int
    tx_hash: bytes
    block_number: int
    height: int
    size: int
    root: bytes

    def body(self) -> dict[str, Any]:
        return {"height": self.height, "size": self.size, "root": self.root,
                "chain_id": self.chain_id, "tx_hash": self.tx_hash,
                "block_number": self.block_number}


def connect(endpoint: str) -> Any:
    """A Web3 for ``tester`` (in-process eth-tester) or an http(s) JSON-RPC URL."""
    try:
        with recursion_limit_kept():  # web3 imports py_ecc, which raises it (see jsonin)
            from web3 import EthereumTesterProvider, HTTPProvider, Web3
    except ImportError:
        raise InputError("anchoring needs web3: pip install 'glucoledger[anchor]'") from None
    if endpoint == "tester":
        with recursion_limit_kept():  # py-evm raises it on import too
            return Web3(EthereumTesterProvider())
    if endpoint.startswith(("http://", "https://")):
        return Web3(HTTPProvider(endpoint))
    raise InputError(f"anchor endpoint {endpoint!r}: use 'tester' or an http(s):// URL")


class Anchorer:
    def __init__(self, w3: Any, sender: str | None = None) -> None:
        self.w3 = w3
        self.sender = sender or w3.eth.accounts[0]

    def send(self, cp: Checkpoint) -> bytes:
        """Send the anchoring transaction; return its hash without waiting."""
        tx_hash = self.w3.eth.send_transaction(
            {"from": self.sender, "to": self.sender, "value": 0,
             "data": "0x" + payload(cp).hex()})
        return bytes(tx_hash)

    def anchor(self, final_note: bytes, schedule: MemberSchedule) -> AnchorReceipt:
        """Verify the cosigned checkpoint (by the members at its height), write it to the
        chain, wait for the receipt."""
        cp = verify_final_at(final_note, schedule)
        tx_hash = self.send(cp)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise ConsistencyError(f"anchor transaction {tx_hash.hex()} failed on chain")
        return AnchorReceipt(int(self.w3.eth.chain_id), tx_hash, int(receipt["blockNumber"]),
                             cp.height, cp.size, cp.root)


def record_tx(chain: str, receipt: AnchorReceipt, org_key: PrivateKey,
              anchor_nonce: int) -> SignedTx:
    """The ``anchor.record`` transaction, sent by the organization whose key signs it; its
    nonce is the consortium's anchor counter (``anchor_nonce``), not the governance one."""
    org = account_id("organization", single_key_policy(org_key.public))
    return sign(Transaction(chain, "anchor.record", receipt.body(), org, anchor_nonce),
                [org_key])


def verify_anchor(w3: Any, record: dict[str, Any], cp: Checkpoint) -> Checkpoint:
    """Check a recorded anchor against the chain and a checkpoint the caller verified
    (``ledger.finality.verify_final_at`` for a cosigned one).

    Raises ConsistencyError (what differs) or NotFoundError (no such transaction); returns
    the anchored checkpoint.
    """
    if (cp.height, cp.size, cp.root) != (record["height"], record["size"], record["root"]):
        raise ConsistencyError(f"the anchor names block {record['height']} (size "
                               f"{record['size']}), the checkpoint block {cp.height}")
    if int(w3.eth.chain_id) != record["chain_id"]:
        raise ConsistencyError(f"the anchor is on chain id {record['chain_id']}; this "
                               f"endpoint is chain id {w3.eth.chain_id}")
    try:
        tx = w3.eth.get_transaction(record["tx_hash"])
        receipt = w3.eth.get_transaction_receipt(record["tx_hash"])
    except Exception as exc:  # noqa: BLE001 - web3 raises TransactionNotFound and others
        raise NotFoundError(f"anchor transaction {record['tx_hash'].hex()} not found on the "
                            f"chain ({type(exc).__name__})") from None
    if int(receipt["blockNumber"]) != record["block_number"] or receipt["status"] != 1:
        raise ConsistencyError(f"anchor transaction is in block {receipt['blockNumber']} "
                               f"(status {receipt['status']}), the record says block "
                               f"{record['block_number']}")
    if bytes(tx["input"]) != payload(cp):
        raise ConsistencyError("the anchor transaction's data is not this checkpoint's "
                               "root and size")
    return cp


def check_recorded(node: Node, w3: Any, height: int | None = None,
                   cosigned: bytes | None = None) -> tuple[Checkpoint, dict[str, Any]]:
    """Check the anchor recorded on ``node``'s ledger (the latest, or the one of block
    ``height``) against the public chain behind ``w3``.

    The checkpoint is ``cosigned`` (a note cosigned by the members in force at its height,
    C2SP cosignature/v1 or type-0x01 lines) or else this node's own stored note. Raises
    NotFoundError (no such anchor), SignatureError, ConsistencyError; returns the anchored
    checkpoint and the record.
    """
    keys = sorted(node.state.keys(ANCHOR_PREFIX))
    if height is not None:  # anchor/<height> (rule set 1) or anchor/<height>/<member>
        at = f"{ANCHOR_PREFIX}{height:020d}"
        keys = [k for k in keys if k == at or k.startswith(at + "/")]
    if not keys:
        raise NotFoundError("no anchor recorded on this ledger" + (
            f" for block {height}" if height is not None else "") + ": anchor with "
            "`glucoledger node --anchor-endpoint URL`")
    # The records of that block (several members may each record one, rule set 2): the
    # first that verifies; a bogus one recorded by some member does not hide the others.
    block = keys[-1][len(ANCHOR_PREFIX):len(ANCHOR_PREFIX) + 20]
    first_error: ConsistencyError | NotFoundError | None = None
    for key in [k for k in keys if k[len(ANCHOR_PREFIX):].startswith(block)]:
        record: dict[str, Any] = dict(node.state.get(key))
        if cosigned is not None:
            cp = verify_final_at(cosigned, member_schedule(node.state))
        else:
            note = parse_note(node.store.checkpoint_at(record["height"]))
            note.verify([node.verifier()])
            cp = Checkpoint.parse_body(note.text)
        try:
            return verify_anchor(w3, record, cp), record
        except (ConsistencyError, NotFoundError) as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error
