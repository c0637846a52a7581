"""What one node has already established, so that it is not established twice.

A ``TrustCache`` is owned by one ``Node`` and handed down explicitly (to its replica, through
``state.machine.Context``, to ingest); nothing in ``crypto`` or ``ledger`` keeps a
process-wide memo (pyca/cryptography never caches a verification; STYLE.md). Three facts are
kept, each bounded (oldest dropped first):

- **verified**: signatures that verified, keyed by SHA-256 of (algorithm, key, signed bytes,
  signature). Ed25519 and ECDSA verification are pure functions of those four, so a success
  stays a success; only successes are kept, only after this node (or one of its own worker
  processes, through ``note_verified``) ran the check, or made the signature itself.
- **signed here**: envelopes this node signed (every signature valid by construction), by
  their bytes, so its own transactions skip the workers' signature check.
- **decoded**: envelopes already parsed and proven canonical here, by their bytes: the
  ``SignedTx`` (immutable) is handed back instead of parsing again. Submit, apply and
  receipts thus decode an envelope once per process.

The envelope caches are keyed by the envelope's bytes themselves, not a digest of them: a
look-up hashes them with the dict's keyed SipHash (kept on the bytes object, so asking again
with the same object hashes nothing), where SHA-256 cost about 15,000 instructions for a
400-byte envelope, and a node asked it 3 to 4 times a transaction it orders (``_check_early``,
``submit``, the workers' hand-out, ``apply``). They hold no more memory for it: the key is the
``SignedTx``'s own ``raw``, and a node's own envelopes are small (a data commitment, a
cosignature).

Why this is safe: every entry is keyed by the exact bytes it speaks for (the envelopes'
own bytes, compared in full on a hit; for signatures, a collision-resistant hash of them),
so it says nothing about any other bytes; entries only record outcomes that are
deterministic functions of those bytes. Results therefore never depend on the cache, which
``verify`` proves by replaying every block with no cache at all. Safe to share between a
node's threads. Decoded envelopes are shared objects: handlers read bodies, never write them
(the typed bodies in ``state`` are frozen).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

from ..crypto import PrivateKey, PublicKey, signing_input, tagged_hash
from ..errors import SignatureError
from .tx import Signature, SignedTx, Transaction

__all__ = ["TrustCache"]

_DEFAULT_LIMIT = 1 << 16


def _sig_key(key: PublicKey, data: bytes, signature: bytes) -> bytes:
    return hashlib.sha256(key.alg.encode() + b"\x00" + key.raw + signature + data).digest()


class _Bounded:
    """An insertion-ordered set or map that drops its oldest entry beyond ``limit``.
    Writers take a lock (HTTP threads and the syncing thread share one node); reads are
    single dict operations.

    An ``OrderedDict``, not a ``dict``: a full cache drops an entry on every put, and a
    plain dict finds its oldest entry (``next(iter(d))``) by walking past every slot its
    earlier drops emptied, a walk that grows with every drop. At 65,536 entries a put cost
    16-19 us on average over 200,000 puts instead of 0.5 (``python -m
    glucoledger.bench.trustcache``), one put or more a transaction once a long-running node
    had filled its caches. ``popitem(last=False)`` unlinks the oldest in constant time."""

    __slots__ = ("_d", "_limit", "_lock")

    def __init__(self, limit: int) -> None:
        self._d: OrderedDict[bytes, object] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def put(self, key: bytes, value: object = None) -> None:
        with self._lock:
            d = self._d
            if key not in d and len(d) >= self._limit:
                d.popitem(last=False)
            d[key] = value

    def get(self, key: bytes) -> object:
        return self._d.get(key)

    def __contains__(self, key: bytes) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


class TrustCache:
    """One node's memo of verified signatures, own envelopes and decoded envelopes."""

    __slots__ = ("_decoded", "_own", "_verified")

    def __init__(self, limit: int = _DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("a trust cache holds at least one entry")
        self._verified = _Bounded(limit)
        self._own = _Bounded(limit)
        self._decoded = _Bounded(limit)

    def clear(self) -> None:
        """Forget everything (benchmarks: treat this node's own envelopes as foreign)."""
        self._verified.clear()
        self._own.clear()
        self._decoded.clear()

    # --- signatures ------------------------------------------------------------------------
    def verify(self, key: PublicKey, context: str, message: bytes, signature: bytes) -> None:
        """``key.verify``, skipped if this exact signature already verified here."""
        data = signing_input(context, message)
        memo = _sig_key(key, data, signature)
        if memo in self._verified:
            return
        key.verify_raw(data, signature)
        self._verified.put(memo)

    def note_verified(self, key: PublicKey, context: str, message: bytes,
                      signature: bytes) -> None:
        """Record a success of a check this node ran in one of its own worker processes.
        Never for a signature nobody here checked."""
        self._verified.put(_sig_key(key, signing_input(context, message), signature))

    def sign(self, key: PrivateKey, context: str, message: bytes) -> bytes:
        """``key.sign``, remembering the signature as verified."""
        sig = key.sign(context, message)
        self.note_verified(key.public, context, message, sig)
        return sig

    def check_signatures(self, stx: SignedTx) -> None:
        """``stx.check_signatures()``, through the memo. Raises SignatureError."""
        data = signing_input("tx", stx.tx_hash)  # the same signed bytes for every signer
        verified = self._verified
        for i, s in enumerate(stx.sigs):
            key = s.key
            memo = _sig_key(key, data, s.sig)
            if memo in verified:
                continue
            try:
                key.verify_raw(data, s.sig)
            except SignatureError:
                raise SignatureError(
                    f"signature {i} (key {s.key.key_id.hex()[:16]}) does not verify over "
                    f"transaction {stx.tx_hash.hex()[:16]}; re-sign the transaction"
                ) from None
            verified.put(memo)

    # --- envelopes -------------------------------------------------------------------------
    def sign_tx(self, tx: Transaction, keys: Sequence[PrivateKey]) -> SignedTx:
        """Sign ``tx`` with every key; the envelope counts as signed, verified and decoded."""
        tx_bytes = tx.encode()
        h = tagged_hash("tx", tx_bytes)
        sigs = tuple(Signature(k.public, self.sign(k, "tx", h)) for k in keys)
        return self._mine(SignedTx.assemble(tx, sigs, tx_bytes, h))

    def add_signatures(self, stx: SignedTx, keys: Sequence[PrivateKey]) -> SignedTx:
        """Add cosignatures; the result counts as signed here only if ``stx`` did."""
        extra = [Signature(k.public, self.sign(k, "tx", stx.tx_hash)) for k in keys]
        combined = SignedTx.create(stx.tx, [*stx.sigs, *extra])
        if self.signed_here(stx.raw):
            return self._mine(combined)
        self._decoded.put(combined.raw, combined)
        return combined

    def _mine(self, stx: SignedTx) -> SignedTx:
        self._own.put(stx.raw)
        self._decoded.put(stx.raw, stx)
        return stx

    def signed_here(self, envelope: bytes) -> bool:
        """True if this node made every signature on ``envelope`` (so they verify)."""
        return bytes(envelope) in self._own

    def decode(self, envelope: bytes) -> SignedTx:
        """``SignedTx.decode``, once per envelope: later calls return the same object.
        Raises MalformedError as ``SignedTx.decode`` does (refusals are not cached)."""
        known = self._decoded.get(bytes(envelope))
        if known is not None:
            assert isinstance(known, SignedTx)
            return known
        stx = SignedTx.decode(envelope)
        self._decoded.put(stx.raw, stx)  # the key is the object the entry holds anyway
        return stx

    def sizes(self) -> dict[str, int]:
        return {"verified": len(self._verified), "signed": len(self._own),
                "decoded": len(self._decoded)}
