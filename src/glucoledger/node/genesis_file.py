"""The consortium genesis file, and setting up a member's folder from it.

Format (JSON, ``docs``-style, one file shared by every member)::

    {
      "format": "glucoledger-genesis/1",
      "chain": "glucoledger/consortium",          the chain name (checkpoint origin)
      "threshold": 2,                              signatures that make a checkpoint final
      "members": [                                 founding organizations, in order
        {"name": "org-a",                          the node's checkpoint key name
         "org_key": {"alg": "ed25519", "pub": "<hex>"},   the organization's account key
         "vkey": "org-a+1a2b3c4d+AX...",           the node key, C2SP vkey form
         "tls_ca": "-----BEGIN CERTIFICATE-----..."},  the member's TLS CA (optional)
        ...
      ],
      "signatures": {"org-a": "<hex Ed25519 signature of the genesis tx hash>", ...}
    }

The genesis transaction (``chain.genesis``) is derived from ``chain``, ``threshold`` and
``members`` alone, so every member computes the same one; each member's node key signs its
hash (``glucoledger consortium sign``). When every member has signed, the envelope is complete
and byte-identical everywhere (signatures in member order), and any member may append it.

Workflow: ``consortium keys`` (each org) -> ``consortium genesis`` (anyone, from the member
lines) -> ``consortium sign`` (each org) -> ``consortium init`` (each org, same file) ->
``glucoledger node`` (each org).

TLS (``crypto.tls``): ``create_member`` also makes the organization's own CA and its node's
certificate (``tls/ca.pem``, ``tls/ca.key``, ``tls/node.pem``, ``tls/node.key``, keys mode
0600). The CA certificate travels in the member line (fifth field, base64 of the PEM) and in
the genesis file (``tls_ca``); ``init_member`` writes ``tls/trust.pem``, the bundle of every
member's CA, which etcd and the node's etcd client verify peers against. The TLS CAs are not
part of the genesis transaction (its hash and signatures are unchanged).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto import PrivateKey, PublicKey, generate, tls
from ..crypto.tls import fingerprint
from ..errors import InputError, MalformedError, SignatureError
from ..files import atomic_write
from ..ledger.checkpoint import NoteVerifier
from ..ledger.log import encode_cut, encode_tx_entry
from ..ledger.tx import Signature, SignedTx, Transaction
from ..ordering.base import Orderer
from ..ordering.etcd_rbac import client_identity
from ..state.accounts import ACCESS_RECORDS, RULES
from ..state.accounts_model import account_id, single_key_policy
from .keystore import Wallet, create_master_key, load_master_key
from .service import GenesisMismatchError, NodeConfig

__all__ = ["FORMAT", "Genesis", "GenesisMismatchError", "Member", "check_genesis",
           "create_member", "init_member"]

FORMAT = "glucoledger-genesis/1"


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    org_key: PublicKey
    node: NoteVerifier
    tls_ca: bytes = b""  # PEM of the member's TLS CA ("": none)

    def to_json(self) -> dict[str, Any]:
        doc = {"name": self.name, "org_key": {"alg": self.org_key.alg,
                                              "pub": self.org_key.raw.hex()},
               "vkey": self.node.vkey()}
        if self.tls_ca:
            doc["tls_ca"] = self.tls_ca.decode()
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Member:
        try:
            node = NoteVerifier.parse(doc["vkey"])
            org = PublicKey(doc["org_key"]["alg"], bytes.fromhex(doc["org_key"]["pub"]))
            if node.name != doc["name"]:
                raise MalformedError(f"member {doc['name']}: its vkey is named {node.name}")
            ca = str(doc.get("tls_ca", "")).encode()
            if ca:
                fingerprint(ca)  # parses, or MalformedError
            return cls(str(doc["name"]), org, node, ca)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"genesis member entry is malformed ({exc}); expected "
                                 "{name, org_key: {alg, pub}, vkey}") from None

    def line(self) -> str:
        """``name:alg:orgkeyhex:vkey[:base64 TLS CA PEM]``: what ``consortium keys`` prints
        to share."""
        line = f"{self.name}:{self.org_key.alg}:{self.org_key.raw.hex()}:{self.node.vkey()}"
        return line + (f":{base64.b64encode(self.tls_ca).decode()}" if self.tls_ca else "")

    @classmethod
    def parse_line(cls, line: str) -> Member:
        parts = line.strip().split(":", 4)
        if len(parts) not in (4, 5):
            raise InputError(f"member {line[:60]!r}: expected name:alg:orgkeyhex:vkey[:tlsca]")
        name, alg, pub, vkey = parts[:4]
        doc: dict[str, Any] = {"name": name, "org_key": {"alg": alg, "pub": pub}, "vkey": vkey}
        if len(parts) == 5:
            try:
                doc["tls_ca"] = base64.b64decode(parts[4], validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise InputError(f"member {name}: the TLS CA field is not base64 PEM") from None
        return cls.from_json(doc)


@dataclass(frozen=True, slots=True)
class Genesis:
    chain: str
    threshold: int
    members: tuple[Member, ...]
    signatures: dict[str, bytes]
    #: The chain's access record format (state/accounts.py ``ChainGenesis``): 2 for a file
    #: ``consortium genesis`` writes now; a file without the field (written before) is 1,
    #: so the transaction its members signed stays the same.
    access_records: int = 1
    #: The chain's state rule set (state/accounts.py ``RULES``): 4 for a file ``consortium
    #: genesis`` writes now; a file without the field (written before) is 1, likewise.
    rules: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= len(self.members):
            raise InputError(f"threshold {self.threshold} must be 1..{len(self.members)}")
        if len({m.name for m in self.members}) != len(self.members):
            raise InputError("member names must be distinct")

    def transaction(self) -> Transaction:
        body: dict[str, Any] = {
            "orgs": [{"name": m.name, "policy": single_key_policy(m.org_key),
                      "node": m.node.key.to_value()} for m in self.members],
            "threshold": self.threshold,
        }
        if self.access_records != 1:
            body["access_records"] = self.access_records
        if self.rules != 1:
            body["rules"] = self.rules
        first = account_id("organization", body["orgs"][0]["policy"])
        return Transaction(self.chain, "chain.genesis", body, first, 0)

    def sign(self, name: str, node_key: PrivateKey) -> Genesis:
        member = next((m for m in self.members if m.name == name), None)
        if member is None or member.node.key != node_key.public:
            raise InputError(f"{name} with this node key is not a member of this genesis")
        sig = node_key.sign("tx", self.transaction().hash())
        return dataclasses.replace(self, signatures={**self.signatures, name: sig})

    def missing(self) -> list[str]:
        return [m.name for m in self.members if m.name not in self.signatures]

    def envelope(self) -> bytes:
        """The complete, verified genesis envelope. Raises InputError while unsigned."""
        if self.missing():
            raise InputError(f"genesis is not signed yet by {', '.join(self.missing())}: "
                             "run `glucoledger consortium sign` in their folders")
        stx = SignedTx.create(self.transaction(), [
            Signature(m.node.key, self.signatures[m.name]) for m in self.members])
        try:
            stx.check_signatures()
        except SignatureError as exc:
            raise InputError(f"a genesis signature is wrong: {exc.message}") from None
        return stx.raw

    def verifiers(self) -> list[NoteVerifier]:
        return [m.node for m in self.members]

    def trust_bundle(self) -> bytes:
        """Every member's TLS CA, concatenated ("" unless every member has one)."""
        if not all(m.tls_ca for m in self.members):
            return b""
        return b"".join(m.tls_ca if m.tls_ca.endswith(b"\n") else m.tls_ca + b"\n"
                        for m in self.members)

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "format": FORMAT, "chain": self.chain, "threshold": self.threshold,
            "members": [m.to_json() for m in self.members],
            "signatures": {k: v.hex() for k, v in sorted(self.signatures.items())},
        }
        if self.access_records != 1:
            doc["access_records"] = self.access_records
        if self.rules != 1:
            doc["rules"] = self.rules
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def parse(cls, text: str) -> Genesis:
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise MalformedError(f"not a {FORMAT} file")
            records = doc.get("access_records", 1)
            if records not in ACCESS_RECORDS or type(records) is not int:
                raise MalformedError(f"access_records is one of {ACCESS_RECORDS}, not {records!r}")
            rule_set = doc.get("rules", 1)
            if rule_set not in RULES or type(rule_set) is not int:
                raise MalformedError(f"rules is one of {RULES}, not {rule_set!r}")
            return cls(str(doc["chain"]), int(doc["threshold"]),
                       tuple(Member.from_json(m) for m in doc["members"]),
                       {k: bytes.fromhex(v) for k, v in doc.get("signatures", {}).items()},
                       records, rule_set)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedError(f"genesis file is malformed ({exc})") from None

    @classmethod
    def load(cls, path: Path) -> Genesis:
        """Read and parse a genesis file. Raises InputError (unreadable) or MalformedError."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the genesis file {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        return cls.parse(text)


def create_member(data_dir: Path, name: str, hosts: list[str] | None = None) -> Member:
    """Make a member folder: master key, node key, organization key and TLS identity (its
    own CA, a node certificate for ``hosts``, default 127.0.0.1 and localhost, and an etcd
    client certificate, ``ordering.etcd_rbac``); no chain yet."""
    data_dir = Path(data_dir)
    if (data_dir / "master.key").exists() or (data_dir / "node.json").exists():
        raise InputError(f"{data_dir} already holds keys; use another folder")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    create_master_key(data_dir)
    wallet = Wallet(data_dir, load_master_key(data_dir))
    node_key, org_key = generate("ed25519"), generate("ed25519")
    wallet.save("node", node_key)
    wallet.save("org", org_key)
    atomic_write(data_dir / "member.txt", (name + "\n").encode())
    now = datetime.datetime.now(datetime.UTC)
    ca = tls.make_ca(name, now)
    leaf = tls.issue(ca, name, hosts or ["127.0.0.1", "localhost"], now)
    folder = data_dir / "tls"
    folder.mkdir(mode=0o700, exist_ok=True)
    atomic_write(folder / "ca.key", ca.key_pem, mode=0o600)
    atomic_write(folder / "ca.pem", ca.cert_pem)
    atomic_write(folder / "node.key", leaf.key_pem, mode=0o600)
    atomic_write(folder / "node.pem", leaf.cert_pem)
    client_identity(folder, folder, name)  # etcd's gateway under auth: no CommonName
    return Member(name, org_key.public, NoteVerifier(name, node_key.public), ca.cert_pem)


def member_of(data_dir: Path) -> tuple[str, Wallet]:
    data_dir = Path(data_dir)
    try:
        name = (data_dir / "member.txt").read_text().strip()
    except OSError:
        raise InputError(f"{data_dir} is not a member folder: run `glucoledger consortium keys`"
                         ) from None
    return name, Wallet(data_dir, load_master_key(data_dir))


def check_genesis(data_dir: Path, envelope: bytes | None, what: str, todo: str) -> None:
    """The member's root of trust, checked in one place: block 0 must carry, first, exactly
    the envelope of ``<data_dir>/genesis.json``, which every founding member signed. Used
    on every path block 0 comes by: derived from the ordered log (``Node.sync``), found in
    the store at start (``ConsortiumNode``), imported from a peer or a file
    (``blockexport.import_blocks``).

    ``what`` says where this block 0 comes from, ``todo`` what to do when it differs.
    Raises GenesisMismatchError (missing or unusable file, or another envelope)."""
    path = Path(data_dir) / "genesis.json"
    try:
        expected = Genesis.load(path).envelope()
    except InputError as exc:
        raise GenesisMismatchError(
            f"{path} cannot be used ({exc.message}), so block 0 cannot be checked: restore "
            "it from the consortium's signed genesis file (`glucoledger consortium rejoin "
            "--genesis FILE`)") from None
    if envelope != expected:
        raise GenesisMismatchError(f"{what} is not the genesis in {path} (the envelope every "
                                   f"founding member signed): {todo}")


def init_member(data_dir: Path, genesis: Genesis, orderer_url: str, orderer: Orderer) -> None:
    """Record the chain, name and orderer in node.json; append the genesis if the log is empty.

    Every member runs this with the same file; the append compares the log's size with 0
    (``Orderer.append_at``), so exactly one lands, whole, and a late one appends nothing.
    What is at position 0 is checked by every node before it derives block 0 (a genesis
    someone else put there first stops them all: ``check_genesis``). Raises InputError
    when the folder's keys are not the member's.
    """
    data_dir = Path(data_dir)
    name, wallet = member_of(data_dir)
    member = next((m for m in genesis.members if m.name == name), None)
    if member is None or member.node.key != wallet.load("node").public:
        raise InputError(f"this folder's node key is not {name}'s key in the genesis file")
    envelope = genesis.envelope()
    NodeConfig(genesis.chain, name, orderer_url).save(data_dir)
    atomic_write(data_dir / "genesis.json", genesis.to_json().encode())
    bundle = genesis.trust_bundle()
    if bundle and (data_dir / "tls").is_dir():
        atomic_write(data_dir / "tls" / "trust.pem", bundle)
    if orderer.size() == 0:
        orderer.append_at([encode_tx_entry(envelope), encode_cut(0, 0)], 0)
