"""Transactions: canonical encoding, hashing and signatures.

A transaction is ``{chain, type, body, account, nonce}`` in deterministic CBOR. Its hash is
``tagged_hash("tx", encode(tx))``. Signers sign that hash with context "tx". The envelope that
is ordered, stored and made a Merkle leaf is ``{tx, sigs}``, where each signature carries its
public key (``{"a": alg, "p": pub, "s": sig}``), so checking the cryptography needs no state
and can run on every core before the state machine decides whether those keys may sign.

Invariants:
- ``SignedTx.decode`` accepts only canonical bytes with exactly these fields; so one envelope
  has one encoding and its leaf hash names it.
- At most ``MAX_SIGNATURES`` signatures, no key twice.
- No process-wide state: what a node already established (verified signatures, its own
  envelopes, envelopes decoded once) lives in the node's ``ledger.trust.TrustCache``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..crypto import ALGORITHMS, PrivateKey, PublicKey, tagged_hash
from ..errors import MalformedError, SignatureError

__all__ = ["MAX_SIGNATURES", "MAX_TX_BYTES", "Signature", "SignedTx", "Transaction",
           "add_signatures", "sign"]

MAX_SIGNATURES = 16
MAX_TX_BYTES = 256 * 1024
_ACCOUNT_LEN = 32
_TX_FIELDS = frozenset({"chain", "type", "body", "account", "nonce"})
_SIG_FIELDS = frozenset({"a", "p", "s"})
_ENVELOPE_FIELDS = frozenset({"tx", "sigs"})


@dataclass(frozen=True, slots=True, init=False)
class Transaction:
    chain: str
    type: str
    body: dict[str, Any]
    account: bytes
    nonce: int

    def __init__(self, chain: object, type: object, body: object, account: object,
                 nonce: object) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``): the checks, then the fields.
        # The parameters are ``object``: a compiled function checks its declared types at the
        # call (TypeError), and a decoded envelope's fields may be anything; each must be
        # refused here as malformed, the same in both builds.
        if not isinstance(chain, str) or not 0 < len(chain) <= 128:
            raise MalformedError("transaction chain must be a name of 1 to 128 characters")
        if not isinstance(type, str) or not 0 < len(type) <= 64:
            raise MalformedError("transaction type must be a name of 1 to 64 characters")
        if not isinstance(body, dict):
            raise MalformedError("transaction body must be a map")
        if not isinstance(account, bytes) or len(account) != _ACCOUNT_LEN:
            raise MalformedError("transaction account must be a 32-byte account id")
        if not isinstance(nonce, int) or isinstance(nonce, bool) or nonce < 0:
            raise MalformedError("transaction nonce must be a non-negative integer")
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "account", account)
        object.__setattr__(self, "nonce", nonce)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # (a field is named "type")
        # Compiled with a written ``__init__``, the default unpickling calls it without
        # arguments (``crypto.keys.PublicKey.__reduce__``); the envelope's classes pickle.
        return Transaction, (self.chain, self.type, self.body, self.account, self.nonce)

    def to_value(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "type": self.type,
            "body": self.body,
            "account": self.account,
            "nonce": self.nonce,
        }

    @classmethod
    def from_value(cls, value: Any) -> Transaction:
        if not isinstance(value, dict) or value.keys() != _TX_FIELDS:
            raise MalformedError(
                "a transaction is exactly {chain, type, body, account, nonce}"
            )
        return cls(value["chain"], value["type"], value["body"], value["account"], value["nonce"])

    def encode(self) -> bytes:
        """The canonical bytes of the transaction (what its hash covers)."""
        return codec.encode(self.to_value())

    def hash(self) -> bytes:
        return tagged_hash("tx", self.encode())


@dataclass(frozen=True, slots=True, init=False)
class Signature:
    key: PublicKey
    sig: bytes

    def __init__(self, key: PublicKey, sig: bytes) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "sig", sig)

    def __reduce__(self) -> tuple[type[Signature], tuple[PublicKey, bytes]]:
        return Signature, (self.key, self.sig)

    def to_value(self) -> dict[str, Any]:
        return {"a": self.key.alg, "p": self.key.raw, "s": self.sig}

    @classmethod
    def from_value(cls, value: Any) -> Signature:
        if (
            not isinstance(value, dict)
            or value.keys() != _SIG_FIELDS
            or value["a"] not in ALGORITHMS
            or not isinstance(value["p"], bytes)
            or not isinstance(value["s"], bytes)
        ):
            raise MalformedError("a signature is exactly {a: algorithm, p: public key, s: bytes}")
        return cls(PublicKey(value["a"], value["p"]), value["s"])


@dataclass(frozen=True, slots=True, init=False)
class SignedTx:
    tx: Transaction
    sigs: tuple[Signature, ...]
    #: The exact canonical bytes (the Merkle leaf); set by encode/decode.
    raw: bytes = field(default=b"", compare=False, repr=False)
    tx_hash: bytes = field(default=b"", compare=False, repr=False)
    #: ``signer_ids``, once computed.
    _signers: frozenset[bytes] | None = field(default=None, init=False, compare=False,
                                              repr=False)

    def __init__(self, tx: Transaction, sigs: tuple[Signature, ...], raw: bytes = b"",
                 tx_hash: bytes = b"") -> None:
        object.__setattr__(self, "tx", tx)
        object.__setattr__(self, "sigs", sigs)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "tx_hash", tx_hash)
        object.__setattr__(self, "_signers", None)

    def __reduce__(self) -> tuple[type[SignedTx], tuple[Any, ...]]:
        return SignedTx, (self.tx, self.sigs, self.raw, self.tx_hash)

    @classmethod
    def create(cls, tx: Transaction, sigs: Sequence[Signature]) -> SignedTx:
        return cls.assemble(tx, tuple(sigs), tx.encode())

    @classmethod
    def assemble(cls, tx: Transaction, sigs: tuple[Signature, ...], tx_bytes: bytes,
                 tx_hash: bytes | None = None) -> SignedTx:
        """The envelope around ``tx_bytes`` (``codec.encode(tx.to_value())``), encoded once.

        Canonical order puts "tx" before "sigs" (shorter key first), so the envelope is
        ``a2 62 't' 'x' <tx> 64 's' 'i' 'g' 's' <sigs>``: the same bytes ``codec.encode`` gives.
        """
        raw = _HEAD_TX + tx_bytes + _HEAD_SIGS + codec.encode([s.to_value() for s in sigs])
        return cls._checked(tx, sigs, raw, tagged_hash("tx", tx_bytes) if tx_hash is None
                            else tx_hash)

    @classmethod
    def decode(cls, raw: codec.BytesLike) -> SignedTx:
        """Parse envelope bytes. Raises MalformedError (never anything else) on bad input."""
        if len(raw) > MAX_TX_BYTES:
            raise MalformedError(f"transaction is {len(raw)} bytes; the limit is {MAX_TX_BYTES}")
        raw = bytes(raw)
        value, starts = codec.decode_spans(raw)
        if not isinstance(value, dict) or value.keys() != _ENVELOPE_FIELDS:
            raise MalformedError("a signed transaction is exactly {tx, sigs}")
        if not isinstance(value["sigs"], list):
            raise MalformedError("sigs must be a list")
        tx = Transaction.from_value(value["tx"])
        sigs = tuple(Signature.from_value(s) for s in value["sigs"])
        # Canonical form puts "tx" first: a2 62 't' 'x' <tx> 64 's' 'i' 'g' 's' <sigs>.
        # The transaction's own encoding is that slice, as received: hash it, no re-encode.
        return cls._checked(tx, sigs, raw, tagged_hash("tx", raw[starts[1]:starts[2]]))

    @classmethod
    def _checked(cls, tx: Transaction, sigs: tuple[Signature, ...], raw: bytes,
                 tx_hash: bytes | None = None) -> SignedTx:
        if not 1 <= len(sigs) <= MAX_SIGNATURES:
            raise MalformedError(f"a transaction needs 1 to {MAX_SIGNATURES} signatures")
        if len({(s.key.alg, s.key.raw) for s in sigs}) != len(sigs):
            raise MalformedError("the same key signed twice; send each signature once")
        if len(raw) > MAX_TX_BYTES:
            raise MalformedError(f"transaction is {len(raw)} bytes; the limit is {MAX_TX_BYTES}")
        return cls(tx, sigs, raw, tx.hash() if tx_hash is None else tx_hash)

    def body_encoding(self, name: str) -> bytes:
        """The canonical encoding of the body's field ``name``, as it lies in ``raw``: a
        handler that stores or hashes a field takes these bytes instead of encoding the
        decoded value again. They are what ``codec.encode`` gives that value: ``raw`` is
        canonical (``decode`` proved it, ``assemble`` wrote it). KeyError when the body
        lacks the field."""
        raw = self.raw
        if not raw:  # built without its bytes (a multisig proposal's inner transaction)
            return codec.encode(self.tx.body[name])
        start, end = codec.value_span(raw, name, _BODY_AT)
        return raw[start:end]

    def check_signatures(self) -> None:
        """Raise SignatureError unless every signature verifies over the transaction hash."""
        for i, s in enumerate(self.sigs):
            try:
                s.key.verify("tx", self.tx_hash, s.sig)
            except SignatureError:
                raise SignatureError(
                    f"signature {i} (key {s.key.key_id.hex()[:16]}) does not verify over "
                    f"transaction {self.tx_hash.hex()[:16]}; re-sign the transaction"
                ) from None

    @property
    def signer_ids(self) -> frozenset[bytes]:
        ids = self._signers
        if ids is None:
            ids = frozenset(s.key.key_id for s in self.sigs)
            object.__setattr__(self, "_signers", ids)
        return ids


_HEAD_TX = b"\xa2\x62tx"
_HEAD_SIGS = b"\x64sigs"
#: Where the body's map starts in an envelope: the transaction's map (five entries, head
#: a5) puts "body" first (64 'b' 'o' 'd' 'y': of the shortest keys, first bytewise).
_BODY_AT = len(_HEAD_TX) + 1 + 5


def sign(tx: Transaction, keys: Sequence[PrivateKey]) -> SignedTx:
    """Sign ``tx`` with every key in ``keys`` and return the envelope. (A node signs through
    its ``TrustCache.sign_tx``, which also remembers the envelope as its own.)"""
    tx_bytes = tx.encode()
    h = tagged_hash("tx", tx_bytes)
    sigs = tuple(Signature(k.public, k.sign("tx", h)) for k in keys)
    return SignedTx.assemble(tx, sigs, tx_bytes, h)


def add_signatures(stx: SignedTx, keys: Sequence[PrivateKey]) -> SignedTx:
    """Add cosignatures to an envelope (collected off-chain, submitted once)."""
    extra = [Signature(k.public, k.sign("tx", stx.tx_hash)) for k in keys]
    return SignedTx.create(stx.tx, [*stx.sigs, *extra])
