"""The deterministic state machine: ``apply(state, envelope, ctx) -> Result``.

Transitions are data: every transaction type is registered once in ``REGISTRY`` with the
action class its signers must meet (``default``, ``grant``, ``cosigners``, ...) and how it is
authorized. ``apply`` runs the same checks, in the same order, for every type:

1. the envelope decodes (else ``malformed``);
2. it is for this chain (``wrong_chain``) and of a known type (``unknown_type``);
3. every signature verifies over the transaction hash (``bad_signature``);
4. for account-authorized types: the account exists (``unknown_account``), the nonce is the
   account's next one (``bad_nonce``), every signer is a cosigner of the account
   (``not_cosigner``) and their weights for the type's action class reach its threshold
   (``insufficient_signatures``);
5. the handler runs inside a state transaction; it raises RejectedError to refuse.

A refused transaction is still ordered and recorded with its reason code; it changes nothing.

Malformed input never halts the chain. Every node replays every transaction, so a handler
that raises an unexpected exception stops every node at the same block, and again at each
restart (fail-stop; audit F5: a list where ``research.manifest`` wanted a grant id raised
TypeError). Handlers check shapes and raise RejectedError/MalformedError (held to it by
tests/state/test_handler_fuzz.py); as defence in depth ``apply`` also turns the exceptions
that malformed input deterministically causes in pure code (``MALFORMED_INPUT``: TypeError,
KeyError, ValueError, IndexError) into a ``malformed`` refusal, after rolling the state
transaction back. Why this is safe:

- determinism: the same code over the same state and transaction raises the same class at
  the same point on every node; the recorded message names only the class (an exception's
  text may change between Python versions). Exceptions that are *not* deterministic
  (MemoryError, RecursionError, which depend on the host's memory and stack) and any other
  class still roll back and stop the node, as before;
- existing chains: a transaction that raised one of these before could never have been
  applied (every node stopped at it), so no chain that replays today holds one; such a chain
  now replays past it, with the refusal that should have been recorded;
- a node whose *own* state is damaged (a record missing a key) records ``malformed`` where
  the others record ``ok``: results are hashed into the block, so its blocks differ from
  theirs and the divergence shows at the next checkpoint instead of as a stop.
On success the account's nonce advances. Pure: no I/O, clock or randomness; time is
``ctx.time_ms``, the block's time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

from .. import codec
from ..crypto import PublicKey
from ..errors import MalformedError, RejectedError, SignatureError
from ..ledger.block import Result
from ..ledger.trust import TrustCache
from ..ledger.tx import SignedTx, Transaction
from .accounts_model import Account, account_key, load_account
from .store import State

__all__ = [
    "MALFORMED_INPUT",
    "MISSING",
    "REGISTRY",
    "Body",
    "Context",
    "StopNode",
    "TxType",
    "after",
    "apply",
    "authorize",
    "need",
    "register",
    "type_of",
    "wire_names",
]

_B = TypeVar("_B", bound="Body")


class _Missing:
    """The value of a typed body's field that the wire body does not carry."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

#: Exceptions that malformed input deterministically raises in pure handler code; ``apply``
#: records them as a ``malformed`` refusal (module docs). Never MemoryError or RecursionError.
MALFORMED_INPUT: Final = (TypeError, KeyError, ValueError, IndexError)


class Body:
    """Base of the typed transaction bodies (one frozen dataclass per type, declared beside
    its handler and named in ``register(..., body=...)``).

    Invariants: ``parse(body)`` makes the shape checks a handler has always made at the
    point it calls it, in the same order and with the same codes and words (refusal messages
    are hashed into blocks: old ledgers must replay to the same results); fields checked
    later, after state checks, are kept as received (``Any``) and checked by the handler
    with ``need``. A field the wire body lacks is ``MISSING``. ``to_body()`` gives back the
    wire dict (without MISSING fields), so ``T.parse(T.parse(b).to_body()) == T.parse(b)``
    for every body ``parse`` accepts. Wire names that are not identifiers (``from``) are
    declared with ``wire_names`` after the class.
    """

    __slots__ = ()

    @classmethod
    def of(cls: type[_B], body: Mapping[str, Any]) -> _B:
        """The typed view of ``body``, without checks (``parse`` checks first)."""
        wire = _WIRE_NAMES.get(cls, _NO_NAMES)
        return cls(**{f.name: body.get(wire.get(f.name, f.name), MISSING)
                      for f in fields(cls)})  # type: ignore[arg-type]

    @classmethod
    def parse(cls: type[_B], body: dict[str, Any]) -> _B:
        """Raises MalformedError or RejectedError (``malformed`` and type-specific codes)."""
        return cls.of(body)

    def to_body(self) -> dict[str, Any]:
        wire = _WIRE_NAMES.get(type(self), _NO_NAMES)
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not MISSING:
                out[wire.get(f.name, f.name)] = value
        return out


#: Wire names that are not Python identifiers (``from``, ``type``), by body class:
#: attribute -> wire name (``wire_names``). Kept here, not as a class attribute: a compiled
#: class lists every class attribute among its annotations, and ``dataclass`` would take it
#: for a field (the compiled core, README "How it is built").
_WIRE_NAMES: dict[type, Mapping[str, str]] = {}
_NO_NAMES: Final[Mapping[str, str]] = MappingProxyType({})
#: The transaction type each typed body belongs to (``register(..., body=...)``).
_TYPE_OF: dict[type, str] = {}


def wire_names(body: type, **names: str) -> None:
    """Declare the attributes of ``body`` (a typed body class) whose wire names are not
    identifiers. (A call after the class, not a class decorator: a compiled class with a
    decorator other than ``dataclass`` cannot inherit from ``Body``.)"""
    _WIRE_NAMES[body] = MappingProxyType(dict(names))


def type_of(body: type) -> str:
    """The transaction type ``body`` (a typed body class) was registered for."""
    return _TYPE_OF[body]


@dataclass(frozen=True, slots=True, init=False)
class Context:
    chain: str
    height: int
    time_ms: int
    #: Position of the transaction in the global log (its Merkle leaf index).
    index: int = 0
    #: The node's memo of what it already established (None: establish everything, as
    #: ``verify`` does). It can only spare work, never change a result.
    trust: TrustCache | None = field(default=None, compare=False, repr=False)

    def __init__(self, chain: str, height: int, time_ms: int, index: int = 0,
                 trust: TrustCache | None = None) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``); one a transaction.
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "time_ms", time_ms)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "trust", trust)

    def verify_signature(self, key: PublicKey, context: str, message: bytes,
                         signature: bytes) -> None:
        """``key.verify`` through the node's memo, if any. Raises SignatureError."""
        if self.trust is None:
            key.verify(context, message, signature)
        else:
            self.trust.verify(key, context, message, signature)


Handler = Callable[[State, SignedTx, Context], None]
Auth = Literal["account", "self"]


@dataclass(frozen=True, slots=True)
class TxType:
    name: str
    action: str
    handler: Handler
    #: "account": the signers must meet the account's threshold for ``action`` and the nonce
    #: must be the account's next. "self": the handler authorizes (account creation, cosigning).
    auth: Auth
    doc: str
    #: The frozen dataclass its body parses into (declared beside the handler), if typed.
    body: type | None = None


REGISTRY: dict[str, TxType] = {}
#: Handlers that run after a type's own handler, in the same state transaction (a module that
#: keeps an index of another module's transactions, e.g. consent's index of data.commit).
AFTER: dict[str, list[Handler]] = {}


def register(name: str, *, action: str = "default", auth: Auth = "account",
             body: type | None = None) -> Callable[[Handler], Handler]:
    """Register ``name``'s handler; ``body``: the frozen dataclass its body parses into
    (``Body.parse(dict)``, called by the handler at the point its checks belong)."""
    def wrap(fn: Handler) -> Handler:
        if name in REGISTRY:
            raise RuntimeError(f"transaction type {name} registered twice")
        REGISTRY[name] = TxType(name, action, fn, auth, (fn.__doc__ or "").strip(), body)
        if body is not None:
            _TYPE_OF[body] = name
        return fn

    return wrap


def after(name: str) -> Callable[[Handler], Handler]:
    """Run the decorated handler after every accepted ``name`` transaction's own handler."""

    def wrap(fn: Handler) -> Handler:
        AFTER.setdefault(name, []).append(fn)
        return fn

    return wrap


def authorize(account: Account, stx: SignedTx, action: str) -> None:
    """Raise RejectedError unless the signers are cosigners meeting ``action``'s threshold."""
    weights = account.weights(action)
    total = 0
    for key_id in sorted(stx.signer_ids):  # sorted: messages are hashed, sets have no order
        if key_id not in account.keys:
            raise RejectedError(
                f"key {key_id.hex()[:16]} is not a cosigner of account "
                f"{account.id.hex()[:16]}; sign with one of the account's keys",
                code="not_cosigner",
            )
        total += weights.get(key_id, 0)
    need = account.threshold(action)
    if total < need:
        raise RejectedError(
            f"signatures carry weight {total} for '{action}' on account "
            f"{account.id.hex()[:16]}; {need} needed: add cosignatures",
            code="insufficient_signatures",
        )


def _check_nonce(account: Account, tx: Transaction) -> None:
    if tx.nonce != account.nonce:
        raise RejectedError(
            f"nonce {tx.nonce} is not account {account.id.hex()[:16]}'s next nonce "
            f"({account.nonce}): "
            f"{'already used (replay?)' if tx.nonce < account.nonce else 'a gap'};"
            " fetch the account's nonce and re-sign",
            code="bad_nonce",
        )


def bump_nonce(state: State, account: Account) -> None:
    """Store ``account``'s next nonce in its record, as it is now (the handler may have
    changed it). Only the nonce's bytes are replaced (``codec.value_span``): the record keeps
    its keys, so the result is the record's canonical encoding, nothing else re-encoded."""
    key = account_key(account.id)
    raw = state.get_raw(key)
    if raw is None:
        raise RuntimeError(f"account {account.id.hex()[:16]} vanished while applying")
    start, end = codec.value_span(raw, "nonce")
    state.put_encoded(key, b"".join((raw[:start], codec.encode_head(0, account.nonce + 1),
                                     raw[end:])))


class StopNode(Exception):  # noqa: N818 - not an error of the input: the node must stop
    """Raised by a handler that meets a transaction every member authorized but this code
    cannot apply: a chain moved (``gov.upgrade``) to rules it does not know. Not a refusal:
    a refusal is recorded, and code that knows those rules would replay it as applied; so
    the node stops here (the replica says why) until it runs code that knows them."""


def apply(
    state: State,
    envelope: bytes | SignedTx,
    ctx: Context,
    *,
    signatures_checked: bool = False,
) -> tuple[Result, SignedTx | None]:
    """Apply one ordered transaction. Never raises for bad input: it returns the Result.

    ``signatures_checked`` says the caller already verified the cryptography (in parallel);
    authorization (who may sign) is always decided here.
    """
    trust = ctx.trust
    try:
        if isinstance(envelope, SignedTx):
            stx = envelope
        else:
            stx = SignedTx.decode(envelope) if trust is None else trust.decode(envelope)
    except MalformedError as exc:
        return Result("malformed", exc.message), None
    tx = stx.tx
    if tx.chain != ctx.chain:
        return Result("wrong_chain",
                      f"transaction is for chain {tx.chain!r}, not {ctx.chain!r}"), stx
    ttype = REGISTRY.get(tx.type)
    if ttype is None:
        return Result("unknown_type", f"unknown transaction type {tx.type!r}"), stx
    if not signatures_checked:
        try:
            if trust is None:
                stx.check_signatures()
            else:
                trust.check_signatures(stx)
        except SignatureError as exc:
            return Result("bad_signature", exc.message), stx
    state.begin()
    try:
        account = None
        if ttype.auth == "account":
            account = load_account(state, tx.account)
            _check_nonce(account, tx)
            authorize(account, stx, ttype.action)
        ttype.handler(state, stx, ctx)
        for hook in AFTER.get(tx.type, ()):
            hook(state, stx, ctx)
        if account is not None:
            bump_nonce(state, account)
    except RejectedError as exc:
        state.rollback()
        return Result(exc.code, exc.message), stx
    except MalformedError as exc:
        state.rollback()
        return Result("malformed", exc.message), stx
    except MALFORMED_INPUT as exc:
        # Defence in depth (see the module docs): a handler that missed a shape check
        # refuses the transaction instead of halting every node. The message names only
        # the exception's class: its text may differ between Python versions.
        state.rollback()
        return Result("malformed", f"the transaction's body could not be processed "
                      f"({type(exc).__name__}): a field has the wrong type or shape; check "
                      "the body against docs/formats.md"), stx
    except Exception:
        # A bug in a handler must not leave half-applied state, nor diverge silently:
        # roll back and let the node stop (a replica that failed mid-apply says so).
        state.rollback()
        raise
    state.commit()
    return _OK, stx


_OK: Final = Result("ok")  # frozen: one object for every accepted transaction


def require(condition: bool, code: str, message: str) -> None:
    """Refuse the transaction with ``code`` unless ``condition`` holds."""
    if not condition:
        raise RejectedError(message, code=code)


def body_field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch a required body field of the given type, or refuse as malformed."""
    if name not in body:
        raise MalformedError(f"transaction body lacks field {name!r}")
    return typed_field(body[name], name, kind)


def need(value: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    """A typed body's field checked where the handler has always checked it: refuse as
    malformed if the wire body lacked it or it has the wrong type (``body_field``'s words)."""
    if value is MISSING:
        raise MalformedError(f"transaction body lacks field {name!r}")
    return typed_field(value, name, kind)


def typed_field(value: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    """``value`` if it is of type ``kind`` (a bool is no int), else refuse as malformed."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedError(f"transaction body field {name!r} has the wrong type")
    return value
