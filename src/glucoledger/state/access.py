"""Audited access and erasure: the ``access`` and ``erase`` contracts, and the batch index.

The batch index: after every accepted ``data.commit`` the machine files the batch under
``dc/<patient>/<stream>/<hour>`` (one entry per UTC hour its (hour-rounded) range touches:
``[ct, commit tx hash, start, end, count]``) and widens ``dcspan/<patient>/<stream>``. So the
machine itself knows which batches a permitted scope covers. Buckets are hours, not days (a
monitor uploading every 5 minutes adds 12 entries to a bucket, a reader of one hour decodes a
dozen, not a day of 288), and filing one more entry appends its encoding to the bucket's
bytes (``State.append_each``) instead of decoding and re-encoding the entries before it.

``access`` (sent on the requester's account, signed by the requester's keys, with the
requester's nonce; action class ``default``). Body ``{request}`` (state/consent.py
``Request``). The handler runs ``decide`` at the block's time and records, whatever the
decision, ``access/<tx hash>``::

    {requester, patient, request, decision (permit scope or deny reason), grant,
     emergency, time, height,
     format 1: batches [ct...], commits [data.commit tx hash...]
     format 2: released (how many), digest (``released_digest``)}

and appends it to the patient's audit trail. The format is the chain's, named at genesis
(``ChainGenesis.access_records``): chains founded before format 2 keep listing every batch
(a 14-day read of one-reading uploads: about 4,000 batches, 270 KB of state a read, kept by
every member); a format-2 record is the same size whatever it released, and commits to
exactly the same list, in ``batches_in`` order, which the node rebuilds from the index
(node/access.py ``authorize``: the batches of the permitted window whose ``data.commit``
was ordered before the access, checked against the count and the digest). A denied request
is accepted as a transaction (its record is the audit entry) but releases no batch; the node
releases exactly the batches a permit names, and only after reading this record from an
ordered block (write-ahead). A
forged request (a key that is not the requester's) or a replayed one (a used nonce) is
refused by the machine before any handler runs: it is ordered and kept in the log with its
reason code, and releases nothing.

``erase`` (sent on the patient's account; action class ``erase``). Body ``{streams, from,
to}`` (``from``/``to`` may be None: everything). Every indexed batch of those streams whose
range overlaps ``[from, to)`` is removed from the index (from state rule set 4, from every
hour it was filed under; before, only from the hours of ``[from, to)``) and marked
``erased/<ct>`` with the erasing transaction; ``erasure/<tx hash>`` lists them. Erasure
works on whole batches: a batch that overlaps the range is erased entirely (more, never
less, than asked). The node then
destroys the batches' blobs and wrapped data keys (and the stream's key-encryption key when a
whole stream is erased); ``verify`` reports those batches as "erased by" that transaction.

Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..crypto.hashing import tagged_hash
from ..errors import MalformedError
from ..glucose.readings import STREAMS
from ..ledger.tx import SignedTx
from .accounts import access_records, rules
from .accounts_model import load_account
from .consent import Permit, Request, decide
from .grants import audit_append
from .machine import Body, Context, after, body_field, register, require, wire_names
from .store import State

__all__ = ["access_key", "batches_in", "erased_key", "erasure_key", "holds_batches",
           "newest_start", "released_count", "released_digest"]

_BIG: Final = 1 << 62


def access_key(tx_hash: bytes) -> str:
    return "access/" + tx_hash.hex()


def erased_key(ct: bytes) -> str:
    return "erased/" + ct.hex()


def erasure_key(tx_hash: bytes) -> str:
    return "erasure/" + tx_hash.hex()


_BUCKET_MS = 3_600_000


def _bucket_key(patient: bytes, stream: str, bucket: int) -> str:
    return f"dc/{patient.hex()}/{stream}/{bucket:010d}"


def _span_key(patient: bytes, stream: str) -> str:
    return f"dcspan/{patient.hex()}/{stream}"


@after("data.commit")
def _index_commit(state: State, stx: SignedTx, ctx: Context) -> None:
    """File an accepted batch commitment under each day its range touches."""
    b = stx.tx.body
    patient, stream, start, end = b["patient"], b["stream"], b["start"], b["end"]
    first, last = start // _BUCKET_MS, (end - 1) // _BUCKET_MS
    entry = [b["ct"], stx.tx_hash, start, end, b["count"]]
    state.append_each((_bucket_key(patient, stream, bucket) for bucket in range(first, last + 1)),
                      entry)
    span = state.get(_span_key(patient, stream))
    state.put(_span_key(patient, stream),
              [first, last] if span is None else [min(span[0], first), max(span[1], last)])


def _filed_under(entries: Iterable[Sequence[Any]]) -> set[int]:
    """Every hour bucket the index entries were filed under (``_index_commit``)."""
    return {bucket for e in entries
            for bucket in range(e[2] // _BUCKET_MS, (e[3] - 1) // _BUCKET_MS + 1)}


def holds_batches(state: State) -> bool:
    """Whether any ``data.commit`` was accepted (the first files a patient's span)."""
    return next(state.keys("dcspan/"), None) is not None


def batches_in(state: State, patient: bytes, streams: Iterable[str], lo: int,
               hi: int) -> list[list[Any]]:
    """Index entries ``[ct, commit, start, end, count]`` overlapping ``[lo, hi)``, by time."""
    seen: set[bytes] = set()
    out: list[list[Any]] = []
    for stream in streams:
        span = state.get(_span_key(patient, stream))
        if span is None:
            continue
        for bucket in range(max(span[0], lo // _BUCKET_MS),
                            min(span[1], (hi - 1) // _BUCKET_MS) + 1):
            for e in state.get(_bucket_key(patient, stream, bucket)) or []:
                if e[0] not in seen and e[2] < hi and e[3] > lo:
                    seen.add(e[0])
                    out.append([*e, stream])
    out.sort(key=lambda e: (e[2], e[4], e[0]))
    return [e[:5] for e in out]


def released_digest(entries: Iterable[Sequence[Any]]) -> bytes:
    """What a format-2 access record commits to: the released batches' ciphertext hashes and
    ``data.commit`` hashes, in ``batches_in`` order."""
    return tagged_hash("access.released", b"".join(e[0] + e[1] for e in entries))


def released_count(record: Mapping[str, Any]) -> int:
    """How many batches an access record released, in either format."""
    return int(record["released"]) if "released" in record else len(record["batches"])


def newest_start(state: State, patient: bytes, streams: Iterable[str], lo: int,
                 need: int) -> int:
    """The latest hour boundary ``t > lo`` such that the batches of ``streams`` that start at
    or after ``t`` hold at least ``need`` records between them; ``lo`` if there is none.

    So ``[t, ...)`` holds at least the ``need`` newest records of those streams: a read of
    the newest few (a follower's poll) releases those batches, not every batch since ``lo``.
    Walks the hour buckets from the newest down; a batch is counted in the bucket of its
    start, which is where it is first filed, so each is counted once and only once every
    batch that starts later has been."""
    spans = [(s, span) for s in streams
             if (span := state.get(_span_key(patient, s))) is not None]
    if not spans or need <= 0:
        return lo
    held = 0
    bottom = lo // _BUCKET_MS
    for bucket in range(max(span[1] for _, span in spans), bottom, -1):
        for stream, span in spans:
            if span[0] <= bucket <= span[1]:
                for e in state.get(_bucket_key(patient, stream, bucket)) or []:
                    if e[2] // _BUCKET_MS == bucket:
                        held += e[4]
        if held >= need:
            return bucket * _BUCKET_MS
    return lo


@dataclass(frozen=True, slots=True, init=False)
class Access(Body):
    """The body of ``access``: ``{request}`` (state/consent.py ``Request``'s wire value)."""

    request: Any

    def __init__(self, request: Any) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``): one a read.
        object.__setattr__(self, "request", request)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Access:
        require(set(body) == {"request"}, "malformed", "access takes exactly {request}")
        return cls(body["request"])


@register("access", body=Access)
def _access(state: State, stx: SignedTx, ctx: Context) -> None:
    """A read request, signed by the requester; records the decision computed here."""
    request = Request.from_value(Access.parse(stx.tx.body).request)
    decision = decide(state, stx.tx.account, request, ctx.time_ms)
    batches: list[list[Any]] = []
    if isinstance(decision, Permit):
        batches = batches_in(state, request.patient, decision.streams, decision.start_ms,
                             decision.end_ms)
    emergency = isinstance(decision, Permit) and decision.emergency
    record: dict[str, Any] = {
        "requester": stx.tx.account, "patient": request.patient,
        "request": request.to_value(), "decision": decision.to_value(),
        "grant": decision.grant, "emergency": emergency,
        "time": ctx.time_ms, "height": ctx.height}
    if access_records(state) == 2:
        record["released"] = len(batches)
        record["digest"] = released_digest(batches)
    else:
        record["batches"] = [e[0] for e in batches]
        record["commits"] = [e[1] for e in batches]
    state.put(access_key(stx.tx_hash), record)
    if "acct/" + request.patient.hex() in state:  # the record exists: not decoded
        audit_append(state, request.patient, "access", stx.tx_hash, emergency=emergency)


@dataclass(frozen=True, slots=True)
class Erase(Body):
    """The body of ``erase``: ``{streams, from, to}`` (``from``/``to`` both None: all)."""

    streams: list[str]
    lo: int | None
    hi: int | None

    @property
    def whole(self) -> bool:
        return self.lo is None and self.hi is None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Erase:
        require(set(body) == {"streams", "from", "to"}, "malformed",
                "erase takes streams, from, to (from/to None for everything)")
        streams = body_field(body, "streams", list)
        require(bool(streams) and all(s in STREAMS for s in streams)
                and len(set(streams)) == len(streams), "malformed",
                f"streams is a non-empty list of {', '.join(STREAMS)}")
        lo, hi = body["from"], body["to"]
        if not (lo is None and hi is None):
            if type(lo) is not int or type(hi) is not int or not 0 <= lo < hi:
                raise MalformedError("from and to are epoch ms with from < to (or both None)")
        return cls(streams, lo, hi)


wire_names(Erase, lo="from", hi="to")


@register("erase", action="erase", body=Erase)
def _erase(state: State, stx: SignedTx, ctx: Context) -> None:
    """Erase the patient's batches of some streams (in a time range, or all of them)."""
    acct = load_account(state, stx.tx.account)
    require(acct.kind == "patient", "not_patient", "only a patient erases her data")
    b = Erase.parse(stx.tx.body)
    streams, whole = b.streams, b.whole
    lo, hi = (0, _BIG) if b.lo is None or b.hi is None else (b.lo, b.hi)
    patient = stx.tx.account
    erased: list[bytes] = []
    every_hour = rules(state) >= 4
    for stream in sorted(streams):
        entries = batches_in(state, patient, [stream], lo, hi)
        gone = {e[0] for e in entries}
        filed = _filed_under(entries) if every_hour else set()
        if every_hour:  # one a chain upgraded from 1-3 left filed: gone, erased before
            entries = [e for e in entries if erased_key(e[0]) not in state]
        for e in entries:
            state.put(erased_key(e[0]), {"tx": stx.tx_hash, "patient": patient,
                                         "stream": stream, "commit": e[1],
                                         "height": ctx.height})
            erased.append(e[0])
        span = state.get(_span_key(patient, stream))
        if span is None:
            continue
        buckets = range(max(span[0], lo // _BUCKET_MS),
                        min(span[1], (hi - 1) // _BUCKET_MS) + 1)
        for bucket in sorted(filed.union(buckets)):
            key = _bucket_key(patient, stream, bucket)
            old = state.get(key)
            if old is None:
                continue
            keep = [e for e in old if e[0] not in gone]
            if keep:
                state.put(key, keep)
            else:
                state.delete(key)
        if whole:
            state.delete(_span_key(patient, stream))
    state.put(erasure_key(stx.tx_hash), {"patient": patient, "streams": sorted(streams),
                                         "from": b.lo, "to": b.hi,
                                         "batches": erased, "whole": whole,
                                         "height": ctx.height, "time": ctx.time_ms})
    audit_append(state, patient, "erase", stx.tx_hash)
