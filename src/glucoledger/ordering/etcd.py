"""An orderer on an etcd cluster (Raft), spoken to through etcd's v3 JSON gateway.

Layout 2, under ``/glucoledger/<chain>/``. Every key an appender writes lies under its own
name (``writer``: the consortium member, whose etcd role in ``ordering.etcd_rbac`` grants
write access to exactly these keys and no shared one):

- ``batch/<writer>/<position of its first entry, 20 digits zero-padded>``: the entries of
  one append, packed (:func:`_pack`: a version byte 0x01, then per entry a 4-byte big-endian
  length and the bytes; or, on chains of state rule set 5 and later, the byte 0x02 and that
  whole packing compressed with zlib, about 0.4 of the bytes, which every member's etcd
  writes, replicates and serves again). One key per append, not per entry: etcd's cost is
  mostly per operation, so positions are per entry but keys are not;
- ``head/<writer>``: one past the last position of the writer's latest batch (decimal);
- ``first/<writer>``: the position below which the writer deleted its own batches (its
  compaction floor; never above its own head).

The log's size is the largest ``head/*`` value (0 when there is none). A writer's floor
covers only that writer's own batches: an entry below its own writer's floor, or a position
no batch holds below the floor of a writer who may have deleted it, was compacted away; any
other writer's entry is read whatever one writer's floor says. ``first()`` is the largest
floor (from there on every position is readable). (Layout 1, a shared ``head`` and
``batch/<position>`` keys every member could write, is not read: re-create a development
cluster written by it.)

Invariants (the contract of :mod:`glucoledger.ordering.base`):
- An append is one etcd transaction. It compares the whole ``head/`` range (etcd 3.3+
  ``Compare.range_end``: every key in it has ``mod_revision < R + 1``, R being the revision
  at which the appender computed the size, so no member appended since) and the absence of
  its batch key, then puts ``batch/<writer>/<size>`` and ``head/<writer>``. etcd applies
  transactions one at a time in Raft log order, so of two appenders that read the same size
  exactly one wins and the other's compare fails and it retries at the new size: positions
  are contiguous, never reused, the same for every reader, and no reader sees half a batch.
  What decides the order is etcd's serial application of transactions, not a key any
  member can write.
- One call appends at most :data:`MAX_BATCH_ENTRIES` non-empty entries of at most
  ``MAX_ENTRY`` bytes each and :data:`MAX_BATCH_BYTES` in total; other batches raise
  ValueError. Readers hold every batch to the same limits (see below), and unpack and
  check each batch once (a batch key is written once: its name and create revision
  identify its bytes).
- When an attempt's outcome is unknown (timeout, dropped connection) and the retry finds the
  size moved, the writer's own key at the attempted position is compared with its batch:
  if it holds these bytes the append returns that position rather than appending twice. If
  a whole call fails it raises OrderingError; the entries may still land and the node
  deduplicates by transaction hash, as the base contract allows.
- Without quorum etcd stalls rather than refusing; every call has a deadline (``timeout``)
  and then says how many members answer.

What a member can still do with its own keys, and what readers do about it: they stop with
an OrderingError that names the member instead of reading a log other than the one their
peers read.
- Rewrite one of its batches after it was ordered: etcd counts every put of a key
  (``version``), which no client can set; a batch key with version above 1 is refused.
- Put a batch without the compare: a claim overlapping another batch, or a batch at a later
  position created (etcd ``create_revision``) before the one at an earlier position, is
  refused; honest appends can produce neither.
- Claim a head no batch reaches: reading the missing position says whose head claims it.
- Put a batch beyond the append limits (too many, empty or oversized entries, too many
  bytes): refused as put outside the protocol, naming its writer, at the first read that
  reaches it (not re-read for every read of the entries behind it).
- Record a floor (``first/<writer>``) beyond the log's size, which no compaction does: it
  counts for nothing (not in ``first()``, not for gaps); only reading that writer's own
  entries stops, naming it. A floor within the log makes only that writer's own entries
  below it unreadable, as deleting its own batches would: readers that already read them
  are unaffected, others catch up from peers' verified blocks.
Such a member can stall the log (as any member can stop cosigning) but cannot change what
was ordered without every reader seeing it, and cannot touch another member's keys at all.

Who may write is decided above this module: every node counts an entry only when its writer
(this layout's key, which etcd's access control ties to the member's user) is a member in
force at the open height, so a writer etcd still lets in after its removal orders nothing
(``Node._counted``). :meth:`EtcdOrderer.writer_of` says who wrote an entry of the calling
thread's latest read.

Compaction by a writer records ``first/<writer>`` (at most its own head) and deletes its own
batches wholly below it (a batch straddling it stays, its older entries unreadable); each
member compacts its own batches (every consortium node runs the same compaction rule). It
then compacts etcd's history at that revision; that history is cluster-wide: other chains'
watchers restart, which :meth:`EtcdOrderer.wait` handles.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from glucoledger.errors import OrderingError
from glucoledger.ordering._gateway import (
    JSON,
    Gateway,
    GatewayError,
    TlsFiles,
    b64,
    parse_etcd_url,
    unb64,
)
from glucoledger.ordering.base import MAX_ENTRY, Orderer

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_ENTRIES", "MEMBER_MISBEHAVED", "REQUEST_KINDS",
           "EtcdOrderer", "TlsFiles"]

#: What ``EtcdOrderer.request_counts`` counts: reads of the log (a read transaction),
#: reads of the heads alone (an append's guess), appends that landed, and append
#: transactions whose compare failed (a write through Raft all the same, batch included).
REQUEST_KINDS = ("log reads", "head reads", "appends", "lost compares")

#: Entries per append (kept from layout 1, where each entry was one of etcd's 128 operations
#: a transaction allows; callers size their batches by it).
MAX_BATCH_ENTRIES = 127
#: Total entry bytes per append; etcd's default --max-request-bytes is 1.5 MiB (1,572,864) and
#: keys, the batch framing (4 bytes an entry) and protobuf framing need the rest.
MAX_BATCH_BYTES = 1_500_000

_MAX_CAS_ATTEMPTS = 200
_POS_DIGITS = 20
_MAX_POSITION = 10**_POS_DIGITS - 1  # keys must keep their width to sort by position
#: Entries per read request: the contract lets read() return fewer than asked, and a bounded
#: answer keeps one read from pulling gigabytes through the gateway.
_READ_CAP = 1000
_PACK_VERSION = 1
#: A batch packed as version 1, then compressed (zlib; ``EtcdOrderer.compress``).
_PACK_ZLIB = 2
#: The most bytes a version-1 packing of an append may hold; a compressed batch holds no
#: more either way, and is never inflated past it (``_unpack``).
_PACKED_LIMIT = 1 + MAX_BATCH_BYTES + 4 * MAX_BATCH_ENTRIES
#: Parsed batches kept per orderer (at most MAX_BATCH_BYTES each; a read spans at most
#: _READ_CAP entries, so a few hundred batches cover the reads in flight).
_PARSED_CACHE = 256
_CHAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
#: The etcd user prefix of members (``ordering.etcd_rbac.USER_PREFIX``; not imported: the
#: RBAC module builds on this one).
_MEMBER_USER = "member:"
#: The code of an OrderingError caused by what a member wrote under its own keys.
MEMBER_MISBEHAVED = "member_misbehaved"


def _int(value: Any, default: int = 0) -> int:
    """The gateway sends int64 as strings and leaves zeros out."""
    return default if value is None else int(value)


def _end(key: str) -> str:
    """The range end covering every key that starts with ``key``."""
    raw = key.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


@dataclass(frozen=True, slots=True)
class _Batch:
    pos: int
    writer: str
    created: int  # etcd create_revision: the order etcd applied it in
    entries: list[bytes]

    @property
    def end(self) -> int:
        return self.pos + len(self.entries)


class EtcdOrderer(Orderer):
    """Orderer over an etcd 3.4+ cluster. Thread-safe; every call fails over between endpoints.

    ``writer`` names the keys this client writes (layout above): with etcd auth it is the
    member named by the TLS folder's etcd user and cannot differ from it.

    Every public method raises OrderingError when etcd fails (the message names the cause and
    what to do) and ValueError on misuse (bad arguments, oversized entries or batches).
    """

    def __init__(self, endpoints: Sequence[str], chain: str, *, timeout: float = 5.0,
                 tls: TlsFiles | None = None, writer: str | None = None) -> None:
        if not chain or len(chain) > 64 or not set(chain) <= _CHAIN_CHARS:
            raise ValueError(f"chain name {chain!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        user = tls.user if tls is not None else None
        if user is not None and user.startswith(_MEMBER_USER):
            member = user[len(_MEMBER_USER):]
            if writer is not None and writer != member:
                raise ValueError(f"this node's etcd user is {user!r}: it appends as "
                                 f"{member!r}, not {writer!r}")
            writer = member
        writer = "_" if writer is None else writer
        if not writer or len(writer) > 128 or "/" in writer or not writer.isprintable():
            raise ValueError(f"writer name {writer!r}: 1-128 printable characters, no '/'")
        self.chain = chain
        self.writer = writer
        self.timeout = timeout
        self._gw = Gateway(list(endpoints), timeout, tls)
        self._members = len(self._gw.endpoints)
        #: (size, the etcd revision it was read at): the guess an append compares against.
        #: Every read and every append of this client refreshes it (``_saw_head``).
        self._known_head: tuple[int, int] | None = None
        self._head_lock = threading.Lock()
        #: The newest revision at which a follower's watch saw a head move (``head_moved``).
        self._head_moved = 0
        #: Write batches compressed (pack version 2). A member sets it once its chain is on
        #: state rule set 5 (``node.consortium``): every member of such a chain reads them,
        #: and this code reads both versions whatever it writes.
        self.compress = False
        #: Requests of the log by kind (``request_counts``), under ``_head_lock``.
        self._counts = dict.fromkeys(REQUEST_KINDS, 0)
        self._writers: tuple[str, ...] = ()
        #: (end position, create revision) of the last batch a read returned in full.
        self._cursor: tuple[int, int] | None = None
        #: Per thread: (first position, end, writer) of each batch the thread's latest read
        #: returned entries of (another thread's read must not change what ``writer_of`` says).
        self._reads = threading.local()
        #: Batches already unpacked and checked, by (key, create revision): see ``_parse``.
        self._parsed: dict[tuple[str, int], _Batch] = {}
        self._parsed_lock = threading.Lock()
        self._prefix = f"/glucoledger/{chain}/"
        self._heads = self._prefix + "head/"
        self._firsts = self._prefix + "first/"
        self._batches = self._prefix + "batch/"

    @classmethod
    def from_url(cls, url: str, chain: str, *, timeout: float = 5.0,
                 writer: str | None = None) -> EtcdOrderer:
        """``etcd://host:port,host:port[?tls=DIR]`` -> an orderer on those endpoints
        (over TLS with DIR's client certificate, see ``ordering._gateway``)."""
        endpoints, tls = parse_etcd_url(url)
        return cls(endpoints, chain, timeout=timeout, tls=tls, writer=writer)

    def _key(self, writer: str, position: int) -> str:
        return f"{self._batches}{writer}/{position:0{_POS_DIGITS}d}"

    def _parse(self, kv: JSON) -> _Batch:
        name = unb64(kv["key"]).decode(errors="replace")
        writer, _, digits = name[len(self._batches):].rpartition("/")
        if not name.startswith(self._batches) or not writer or not digits.isdecimal():
            raise OrderingError(f"etcd log of chain {self.chain!r} holds a stray key {name!r}: "
                                "keys under /glucoledger/ were changed outside glucoledger")
        pos = int(digits)
        if _int(kv.get("version"), 1) != 1:
            raise OrderingError(
                f"member {writer!r} rewrote its batch at position {pos} of chain "
                f"{self.chain!r} after it was ordered (etcd version {kv.get('version')}); "
                "the log cannot be trusted past it: tell the consortium's operators")
        created = _int(kv.get("create_revision"))
        # A batch key is put once (version 1): its name and creation revision identify its
        # bytes, so each batch is unpacked and checked once, however often reads fetch it.
        cache_key = (name, created)
        with self._parsed_lock:
            cached = self._parsed.get(cache_key)
        if cached is not None:
            return cached
        batch = _Batch(pos, writer, created,
                       _unpack(unb64(kv.get("value", "")), self.chain, pos, writer))
        with self._parsed_lock:
            if len(self._parsed) >= _PARSED_CACHE:
                self._parsed.clear()
            self._parsed[cache_key] = batch
        return batch

    # -- the contract --------------------------------------------------------------------------

    def append(self, entries: Sequence[bytes]) -> int:
        first = self._append(entries, None)
        assert first is not None
        return first

    def append_at(self, entries: Sequence[bytes], size: int) -> int | None:
        """The same compare as every append (no head moved since the size was read), with
        the size required to be ``size``: None, appending nothing, once it is not."""
        return self._append(entries, size)

    def _append(self, entries: Sequence[bytes], at: int | None) -> int | None:
        batch = [bytes(e) for e in entries]
        _check_batch(batch)
        deadline = time.monotonic() + self.timeout
        maybe_ours: list[int] = []  # positions of attempts whose outcome is unknown
        raw = _pack(batch, compress=self.compress)
        packed = b64(raw)
        # The size as this client last read it or left it (``_saw_head``): one round trip
        # per append when nobody appended since. A stale guess costs a failed compare, whose
        # answer carries the current heads.
        with self._head_lock:
            known = self._known_head
            stale = known is not None and known[1] < self._head_moved
        if known is None or at is not None or stale:
            known = self._size_at(deadline, "appends")
        for attempt in range(_MAX_CAS_ATTEMPTS):
            head, revision = known
            for pos in maybe_ours:
                if pos < head and self._landed(pos, raw, deadline):
                    return pos
            if at is not None and head != at:
                return None
            key = b64(self._key(self.writer, head))
            txn = {
                "compare": [
                    {"key": b64(self._heads), "range_end": b64(_end(self._heads)),
                     "target": "MOD", "result": "LESS", "mod_revision": str(revision + 1)},
                    {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
                ],
                "success": [
                    {"request_put": {"key": key, "value": packed}},
                    {"request_put": {"key": b64(self._heads + self.writer),
                                     "value": b64(str(head + len(batch)))}},
                ],
                "failure": [{"request_range": {"key": b64(self._heads),
                                               "range_end": b64(_end(self._heads))}}],
            }
            try:
                reply = self._gw.call("/v3/kv/txn", txn, deadline=deadline)
            except GatewayError as exc:
                self._known_head = None
                raise self._failure(exc, "appends") from exc
            if reply.body.get("succeeded"):
                self._count("appends")
                self._saw_head(head + len(batch),
                               _int(reply.body.get("header", {}).get("revision")))
                return head
            self._count("lost compares")
            if reply.maybe_applied_before:
                maybe_ours.append(head)
            responses = reply.body.get("responses") or [{}]
            fresh = (_max_value(_kvs(responses[0])),
                     _int(reply.body.get("header", {}).get("revision")))
            if fresh[0] == head and not maybe_ours:
                raise OrderingError(
                    f"etcd log of chain {self.chain!r}: this member's key at position {head} "
                    "exists although no head reaches past it; keys under /glucoledger/ were "
                    "changed outside glucoledger: restore the cluster from a snapshot")
            self._saw_head(*fresh)
            known = fresh
            if time.monotonic() >= deadline:
                break
            if attempt:  # contended: back off a little, with jitter
                time.sleep(random.uniform(0, min(0.002 * attempt, 0.05)))
        raise OrderingError(
            f"etcd append for chain {self.chain!r} lost the race for the log head "
            f"{_MAX_CAS_ATTEMPTS} times or ran out of its {self.timeout}s; too many concurrent "
            "appenders: retry, or batch entries into fewer, larger appends"
        )

    def read(self, start: int, limit: int = 1000) -> list[bytes]:
        if start < 0 or limit < 0:
            raise ValueError("read(start, limit) needs start >= 0 and limit >= 0")
        if start >= _MAX_POSITION:
            raise ValueError(f"read(start) needs start < {_MAX_POSITION}")
        limit = min(limit, _READ_CAP, _MAX_POSITION - start)
        if limit == 0:
            return []
        deadline = time.monotonic() + self.timeout
        for _ in range(3):  # a member appending for the first time joins the writers
            cursor = self._cursor
            at_boundary = cursor is not None and cursor[0] == start
            writers = self._writers
            ops: list[JSON] = [self._range(self._firsts), self._range(self._heads)]
            for w in writers:
                if not at_boundary:  # the batch holding start: the last one at or before it
                    ops.append({"request_range": {
                        "key": b64(self._batches + w + "/"),
                        "range_end": b64(self._key(w, start + 1)), "limit": "1",
                        "sort_order": "DESCEND", "sort_target": "KEY"}})
                lo = start if at_boundary else start + 1
                # Batches beginning below start + limit: at most limit + one batch's entries
                # a writer travel, however the log was batched.
                ops.append({"request_range": {"key": b64(self._key(w, lo)),
                                              "range_end": b64(self._key(w, start + limit)),
                                              "limit": str(limit)}})
            body = self._txn_read(ops, "reads", deadline)
            self._count("log reads")
            responses = body.get("responses", [])
            first_kvs = _kvs(responses[0])
            head_kvs = _kvs(responses[1])
            found = tuple(sorted(unb64(kv["key"]).decode()[len(self._heads):]
                                 for kv in head_kvs))
            if set(found) <= set(writers):
                break
            self._writers = tuple(sorted(set(writers) | set(found)))
        else:
            raise OrderingError(f"the writers of chain {self.chain!r} kept changing; retry")
        heads = self._values(head_kvs, self._heads)
        self._saw_head(max(heads.values(), default=0),
                       _int(body.get("header", {}).get("revision")))
        floors = _Floors(self.chain, self._values(first_kvs, self._firsts), heads)
        batches = {}
        for r in responses[2:]:
            for kv in _kvs(r):
                b = self._parse(kv)
                if b.end > start:
                    batches[(b.writer, b.pos)] = b
        prev = cursor[1] if at_boundary and cursor is not None else 0
        return self._walk(sorted(batches.values(), key=lambda b: b.pos), start,
                          min(start + limit, max(heads.values(), default=0)), heads, prev,
                          floors)

    def _values(self, kvs: list[JSON], prefix: str) -> dict[str, int]:
        """``{writer: position}`` of ``head/`` or ``first/`` keys (``_position``: a value
        that is not a position is an OrderingError naming its writer)."""
        return {unb64(kv["key"]).decode(errors="replace")[len(prefix):]: _position(kv)
                for kv in kvs}

    def _walk(self, batches: list[_Batch], start: int, stop: int, heads: dict[str, int],
              prev_created: int, floors: _Floors | None = None) -> list[bytes]:
        """The entries start..stop-1 from ``batches`` (sorted by position), checking that they
        tile the positions exactly, that etcd created them in position order, and that no
        entry lies below its own writer's compaction floor (``_Floors``)."""
        floors = floors or _Floors(self.chain, {}, heads)
        out: list[bytes] = []
        spans: list[tuple[int, int, str]] = []
        self._reads.spans = spans
        pos = start
        for b in batches:
            if b.pos < pos and out:  # checked past ``stop`` too: every batch fetched
                raise OrderingError(
                    f"etcd log of chain {self.chain!r}: member {b.writer!r}'s batch at "
                    f"position {b.pos} overlaps the batch before it (up to {pos}): it was put "
                    "outside the append protocol; the log cannot be trusted past it")
            if pos >= stop or b.pos > pos:
                break  # done, or a gap (reported below)
            if b.created <= prev_created:
                raise OrderingError(
                    f"etcd log of chain {self.chain!r}: member {b.writer!r}'s batch at "
                    f"position {b.pos} was created (etcd revision {b.created}) before the "
                    "batch ahead of it: it was put outside the append protocol; the log "
                    "cannot be trusted past it")
            if b.end > stop and out:
                # Return up to the last whole batch (the contract allows fewer): the next
                # read then starts at a batch boundary, the cheap case above.
                self._cursor = (pos, prev_created)
                return out
            floors.check_entry(b.writer, pos)
            prev_created = b.created
            out.extend(b.entries[pos - b.pos:])
            spans.append((b.pos, b.end, b.writer))
            pos = b.end
        if pos < stop:
            floors.check_gap(pos)
            claim = sorted(w for w, h in heads.items() if h > pos)
            raise OrderingError(
                f"etcd log of chain {self.chain!r} has a gap at position {pos}: no batch "
                f"holds it although the head of {', '.join(map(repr, claim))} reaches past "
                "it; keys under /glucoledger/ were changed outside glucoledger or a member "
                "broke the append protocol: restore the cluster from a snapshot")
        if out and pos == stop:
            self._cursor = (pos, prev_created)
        return out[:max(0, stop - start)]

    def size(self) -> int:
        return self._size_at(time.monotonic() + self.timeout, "reads")[0]

    def writer_of(self, position: int) -> str | None:
        spans: list[tuple[int, int, str]] = getattr(self._reads, "spans", [])
        # Spans are sorted and disjoint: the last one starting at or before ``position``.
        k = bisect.bisect_right(spans, position, key=lambda span: span[0]) - 1
        return spans[k][2] if k >= 0 and position < spans[k][1] else None

    def first(self) -> int:
        """The largest compaction floor (``first/<writer>``) of the writers, leaving out a
        floor above the log's size, which no compaction records (``_Floors``): from here on
        every position is readable; below it some (another writer's) may still be."""
        body = self._txn_read([self._range(self._firsts), self._range(self._heads)], "reads",
                              time.monotonic() + self.timeout)
        first_kvs, head_kvs = (_kvs(r) for r in body.get("responses", []))
        return _Floors(self.chain, self._values(first_kvs, self._firsts),
                       self._values(head_kvs, self._heads)).first

    def own_first(self) -> int:
        """The position below which this writer deleted its own batches (``first/<writer>``);
        ``first()`` is the largest over all writers (but a broken one)."""
        body = self._call("/v3/kv/range", {"key": b64(self._firsts + self.writer)}, "reads",
                          time.monotonic() + self.timeout)
        return _max_value(body.get("kvs") or [])

    def compact(self, below: int) -> None:
        """Delete this writer's batches wholly below ``below`` (clamped to the size), record
        ``first/<writer>`` and compact etcd's history."""
        if below < 0:
            raise ValueError("compact(below) needs below >= 0")
        deadline = time.monotonic() + self.timeout
        mine = b64(self._firsts + self.writer)
        for _ in range(_MAX_CAS_ATTEMPTS):
            body = self._txn_read([self._range(self._heads), {"request_range": {"key": mine}}],
                                  "compaction", deadline)
            head_kvs, first_kvs = (_kvs(r) for r in body.get("responses", []))
            # This writer's own head: its floor covers its own batches only (``_Floors``).
            head = self._values(head_kvs, self._heads).get(self.writer, 0)
            first = int(unb64(first_kvs[0]["value"])) if first_kvs else 0
            first_rev = _int(first_kvs[0].get("mod_revision")) if first_kvs else 0
            target = min(below, head)
            if target <= first:
                return
            # Delete this writer's batches wholly below target: all but the one holding it.
            holding = self._txn_read(
                [{"request_range": {"key": b64(self._batches + self.writer + "/"),
                                    "range_end": b64(self._key(self.writer, target + 1)),
                                    "limit": "1", "sort_order": "DESCEND",
                                    "sort_target": "KEY"}}],
                "compaction", deadline)
            at = [self._parse(kv) for kv in _kvs(holding["responses"][0])]
            # Its last batch at or below target stays if it holds target (it may end before:
            # the other writers' batches lie between).
            keep_from = at[0].pos if at and at[0].end > target else target
            txn = {
                "compare": [self._unchanged(mine, first_rev)],
                "success": [
                    {"request_delete_range": {"key": b64(self._batches + self.writer + "/"),
                                              "range_end": b64(self._key(self.writer,
                                                                         keep_from))}},
                    {"request_put": {"key": mine, "value": b64(str(target))}},
                ],
            }
            reply = self._call("/v3/kv/txn", txn, "compaction", deadline)
            if not reply.get("succeeded"):
                continue
            revision = _int(reply.get("header", {}).get("revision"))
            try:
                self._gw.call("/v3/kv/compaction", {"revision": str(revision)}, deadline=deadline)
            except GatewayError as exc:
                if exc.code != 11:  # 11: already compacted at or past that revision: fine.
                    raise self._failure(exc, "compaction") from exc
            return
        raise OrderingError(f"compaction of chain {self.chain!r} kept racing; retry later")

    def wait(self, size: int, timeout: float) -> int:
        deadline = time.monotonic() + max(0.0, timeout)
        call_deadline = max(deadline, time.monotonic() + self.timeout)
        current, revision = self._size_at(call_deadline, "reads")
        if current > size or time.monotonic() >= deadline:
            return current
        seen = self._watch_head(size, revision, deadline)
        if seen is not None:
            return seen
        # The watch could not run (member down, history compacted): poll, briefly, instead.
        while True:
            current = self.size()
            remaining = deadline - time.monotonic()
            if current > size or remaining <= 0:
                return current
            time.sleep(min(remaining, 0.05))

    def close(self) -> None:
        self._gw.close()

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _range(prefix: str) -> JSON:
        return {"request_range": {"key": b64(prefix), "range_end": b64(_end(prefix))}}

    def _unchanged(self, key: str, mod_revision: int) -> JSON:
        if mod_revision == 0:
            return {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        return {
            "key": key,
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": str(mod_revision),
        }

    def _call(self, path: str, body: JSON, what: str, deadline: float | None = None) -> JSON:
        try:
            return self._gw.call(path, body, deadline=deadline).body
        except GatewayError as exc:
            raise self._failure(exc, what) from exc

    def _txn_read(self, ops: list[JSON], what: str, deadline: float | None = None) -> JSON:
        body = self._call("/v3/kv/txn", {"success": ops}, what, deadline)
        if len(body.get("responses", [])) != len(ops):
            raise OrderingError(f"etcd answered a read with {body!r:.200}; is it etcd 3.4+?")
        return body

    def _size_at(self, deadline: float, what: str) -> tuple[int, int]:
        """(size, the store revision the answer reflects)."""
        body = self._call("/v3/kv/range", self._range(self._heads)["request_range"], what,
                          deadline)
        seen = _max_value(body.get("kvs") or []), _int(body.get("header", {}).get("revision"))
        self._count("head reads")
        self._saw_head(*seen)
        return seen

    def _count(self, kind: str) -> None:
        with self._head_lock:
            self._counts[kind] += 1

    def request_counts(self) -> dict[str, int]:
        """This client's requests of the log so far, by kind (``REQUEST_KINDS``): what
        ``bench.consortium`` reports a 100 transactions."""
        with self._head_lock:
            return dict(self._counts)

    def head_moved(self, revision: int) -> None:
        """A watch saw a head key change at ``revision`` (``etcd_watch.KeyWatch``'s
        ``on_log``): while the guess is older, the next append reads the heads first.

        Only a read sets the guess: a watch event carries one writer's head, and the log's
        size is the largest of them all, so an event alone would not be an exact guess. The
        read costs etcd far less than what it saves: under load about half the appends of a
        member that had not read the log since another's append failed their compare, and a
        failed compare is still a write through etcd's Raft log, the whole batch with it."""
        with self._head_lock:
            if revision > self._head_moved:
                self._head_moved = revision

    def _saw_head(self, size: int, revision: int) -> None:
        """Keep ``(size, revision)`` as the next append's guess when it is newer than the
        one held.

        The guess must be exact: the log's size *at* that revision, the heads and the
        revision taken from one etcd answer (a read transaction, a range, an append's own
        answer). The append's compare proves only that no head moved after the revision,
        so a size below the true one at it would put a batch over another's. An exact but
        older guess is safe: the compare fails, and its answer carries the current heads.

        Every read refreshes it, so a member that follows the log appends at the size it
        last read, not at the one its own last append left, which another member's append
        has usually moved since (each failed compare is one more write through etcd's Raft
        log). Held under a lock so that an older answer never replaces a newer one.
        """
        with self._head_lock:
            known = self._known_head
            if known is None or revision > known[1]:
                self._known_head = (size, revision)

    def _landed(self, pos: int, packed: bytes, deadline: float) -> bool:
        """Whether this writer's key at pos holds exactly ``packed`` (one transaction's)."""
        body = self._call("/v3/kv/range", {"key": b64(self._key(self.writer, pos))},
                          "appends", deadline)
        kvs = body.get("kvs") or []
        return len(kvs) == 1 and unb64(kvs[0].get("value", "")) == packed

    def _watch_head(self, size: int, revision: int, deadline: float) -> int | None:
        """Watch ``head/`` from ``revision + 1``; the first value above ``size``, or the last
        seen at the deadline; None when no member would hold the watch."""
        request = {"create_request": {"key": b64(self._heads),
                                      "range_end": b64(_end(self._heads)),
                                      "start_revision": str(revision + 1)}}
        seen = size
        n = len(self._gw.endpoints)
        for k in range(n):
            i = (self._gw.preferred + k) % n
            stream = self._gw.stream(i, "/v3/watch", request, deadline)
            try:
                for message in stream:
                    result = message.get("result")
                    if not isinstance(result, dict) or result.get("canceled"):
                        return None  # an error or a compacted start revision: poll instead
                    for event in result.get("events") or []:
                        kv = event.get("kv", {})
                        if kv.get("value") is not None:
                            seen = max(seen, _position(kv))  # a bad head names its writer
                    if seen > size:
                        return seen
                return None
            except TimeoutError:
                return seen
            except (GatewayError, OSError, ValueError):
                continue
            finally:
                stream.close()
        return None

    def _failure(self, exc: GatewayError, what: str) -> OrderingError:
        """Turn a gateway failure into an error that says what is wrong and what to do."""
        if exc.code == 3:
            return OrderingError(
                f"etcd refused the request: {exc}; the batch is too large or has too many "
                "entries for the cluster's --max-request-bytes / --max-txn-ops"
            )
        if exc.code == 8:
            return OrderingError(
                f"etcd is out of space or the message is too large: {exc}; compact the log "
                "and defragment (etcdctl defrag), or raise --quota-backend-bytes"
            )
        if not exc.transient:
            return OrderingError(f"etcd failed: {exc}")
        reachable, with_leader = self._probe()
        if len(self._gw.endpoints) == 1:  # a consortium node reaches its own member alone
            host, port = self._gw.endpoints[0]
            if reachable == 0:
                return OrderingError(
                    f"the etcd member at {host}:{port} does not answer ({exc}); {what} are "
                    "stopped until it does: this node reaches etcd through it alone, so start "
                    "it, or check its address and this node's certificate (tls/)")
            if with_leader == 0:
                return OrderingError(
                    f"etcd cluster has no quorum (the member at {host}:{port} knows no "
                    f"leader); {what} are stopped until it returns (last error: {exc})")
        total = max(self._members, reachable)
        if reachable < total // 2 + 1 or with_leader == 0:
            return OrderingError(
                f"etcd cluster has no quorum ({reachable} of {total} members reachable); "
                f"{what} are stopped until it returns (last error: {exc})"
            )
        return OrderingError(
            f"etcd did not answer within {self.timeout}s ({exc}); {reachable} of {total} "
            f"members answer: retry, and check the cluster (etcdctl endpoint health)"
        )

    def _probe(self) -> tuple[int, int]:
        """(members answering /v3/maintenance/status, of those how many know a leader)."""
        reachable = with_leader = 0
        for i in range(len(self._gw.endpoints)):
            try:
                status = self._gw.call_one(i, "/v3/maintenance/status", {}, timeout=0.5)
            except GatewayError:
                continue
            reachable += 1
            with_leader += _int(status.get("leader")) != 0
        return reachable, with_leader


class _Floors:
    """The writers' compaction floors (``first/<writer>``) as a read judges them.

    A writer's floor covers its own batches only: an entry of writer W below W's floor was
    compacted away (a batch straddling the floor stays, its older entries unreadable); an
    entry of another writer is read whatever W's floor says. A position no batch holds is
    compacted when it lies below the floor of a writer who may have deleted it; otherwise it
    is a gap (``_walk``). A floor above the log's size was recorded by no compaction (one
    clamps to the writer's own head, before to the size): it is a protocol break that
    stops a read only at that writer's own entries, naming it, and counts nowhere else."""

    def __init__(self, chain: str, firsts: dict[str, int], heads: dict[str, int]) -> None:
        self.chain = chain
        self.size = max(heads.values(), default=0)
        self.valid = {w: f for w, f in firsts.items() if 0 < f <= self.size}
        self.broken = {w: f for w, f in firsts.items() if f > self.size}
        self.first = max(self.valid.values(), default=0)

    def _compacted(self, pos: int, writers: list[str]) -> OrderingError:
        by = ", ".join(f"{w!r} (its batches below {self.valid[w]})" for w in writers)
        return OrderingError(
            f"position {pos} of chain {self.chain!r} was compacted away by member {by}; "
            f"the log now starts at {self.first}: read from there, or rebuild from a "
            "checkpoint")

    def check_entry(self, writer: str, pos: int) -> None:
        """Refuse reading writer's entries from ``pos`` when its floor lies above it."""
        if writer in self.broken:
            raise OrderingError(
                f"etcd log of chain {self.chain!r}: member {writer!r} recorded its "
                f"compaction floor (first/{writer}) at {self.broken[writer]}, beyond the "
                f"log's size {self.size}: no compaction does that, so its entries (from "
                f"position {pos}) cannot be read; it broke the protocol: tell the "
                f"consortium's operators (remove {writer!r} by governance, and have it "
                "restore its key)")
        if pos < self.valid.get(writer, 0):
            raise self._compacted(pos, [writer])

    def check_gap(self, pos: int) -> None:
        """No batch holds ``pos``: compacted when a writer's floor covers it."""
        covering = sorted(w for w, f in self.valid.items() if f > pos)
        if covering:
            raise self._compacted(pos, covering)


def _pack(batch: Sequence[bytes], *, compress: bool = False) -> bytes:
    parts = [bytes([_PACK_VERSION])]
    for e in batch:
        parts.append(len(e).to_bytes(4, "big"))
        parts.append(e)
    packed = b"".join(parts)
    # Level 1: 0.2 ms a batch of 100 signed transactions, 0.40 of their bytes (level 6
    # gains nothing on them).
    return bytes([_PACK_ZLIB]) + zlib.compress(packed, 1) if compress else packed


def _inflate(data: bytes, where: str, broke: str) -> bytes:
    """The version-1 packing inside a compressed batch, never inflated past what an append
    may hold (a small batch must not expand into gigabytes in every reader)."""
    inflater = zlib.decompressobj()
    try:
        inner = inflater.decompress(data[1:], _PACKED_LIMIT + 1)
    except zlib.error:
        raise OrderingError(f"{where} is not valid compressed data: it {broke}") from None
    if len(inner) > _PACKED_LIMIT or inflater.unconsumed_tail:
        raise OrderingError(f"{where} inflates to more bytes than an append may hold "
                            f"({_PACKED_LIMIT}): it {broke}")
    if not inflater.eof or inflater.unused_data:
        raise OrderingError(f"{where} is truncated or has bytes after its compressed data: "
                            f"it {broke}")
    if inner[:1] != bytes([_PACK_VERSION]):
        raise OrderingError(f"{where} holds no version-1 packing inside its compression: it "
                            f"{broke}")
    return inner


def _unpack(data: bytes, chain: str, pos: int, writer: str) -> list[bytes]:
    """The entries of member ``writer``'s batch at ``pos``. The append limits hold for what
    is read as for what is appended (``_check_batch``): at most MAX_BATCH_ENTRIES non-empty
    entries of at most MAX_ENTRY bytes, MAX_BATCH_BYTES in all. A batch beyond them was put
    outside the append protocol: OrderingError naming its writer (every reader stops there
    alike, rather than re-reading a huge batch for every read)."""
    where = f"etcd log of chain {chain!r}: member {writer!r}'s batch at position {pos}"
    broke = ("was put outside the append protocol; the log cannot be trusted past it: tell "
             f"the consortium's operators (restore the cluster from a snapshot taken before "
             f"position {pos} and remove {writer!r} by governance)")
    out: list[bytes] = []
    if data[:1] not in (bytes([_PACK_VERSION]), bytes([_PACK_ZLIB])):
        raise OrderingError(f"{where} is not in a layout this version reads; keys under "
                            "/glucoledger/ were changed outside glucoledger, or by another "
                            "version")
    if len(data) > _PACKED_LIMIT:
        raise OrderingError(f"{where} holds {len(data)} bytes, more than an append may "
                            f"({MAX_BATCH_BYTES} bytes of entries): it {broke}")
    if data[:1] == bytes([_PACK_ZLIB]):
        data = _inflate(data, where, broke)
    k = 1
    total = 0
    while k < len(data):
        if len(out) == MAX_BATCH_ENTRIES:
            raise OrderingError(f"{where} holds more than the {MAX_BATCH_ENTRIES} entries an "
                                f"append may: it {broke}")
        if k + 4 > len(data):
            raise OrderingError(f"{where} is truncated; restore the cluster from a snapshot")
        n = int.from_bytes(data[k:k + 4], "big")
        if k + 4 + n > len(data):
            raise OrderingError(f"{where} is truncated; restore the cluster from a snapshot")
        if n == 0 or n > MAX_ENTRY:
            size = "an empty entry" if n == 0 else f"an entry of {n} bytes (at most {MAX_ENTRY})"
            raise OrderingError(f"{where} holds {size}: it {broke}")
        total += n
        out.append(data[k + 4:k + 4 + n])
        k += 4 + n
    if not out or total > MAX_BATCH_BYTES:
        size = "no entry" if not out else f"{total} bytes of entries (at most {MAX_BATCH_BYTES})"
        raise OrderingError(f"{where} holds {size}: it {broke}")
    return out


def _position(kv: JSON) -> int:
    """The log position a ``head/<writer>`` or ``first/<writer>`` key holds (decimal; empty
    is 0). Raises OrderingError naming the writer when it holds anything else: the member
    wrote it under its own key outside the protocol."""
    raw = unb64(kv.get("value", "")) or b"0"
    if len(raw) > _POS_DIGITS or not all(0x30 <= c <= 0x39 for c in raw):  # ASCII 0-9
        key = unb64(kv["key"]).decode(errors="backslashreplace")
        raise OrderingError(
            f"member {key.rpartition('/')[2]!r} wrote {raw[:40]!r} under its log key {key!r}, "
            "not a log position: it broke the append protocol; the log cannot be read until "
            "it puts its last position back: tell the consortium's operators",
            code=MEMBER_MISBEHAVED)
    return int(raw)


def _max_value(kvs: list[JSON]) -> int:
    """The largest position of ``kvs`` (``_position``; 0 when there is none)."""
    return max((_position(kv) for kv in kvs), default=0)


def _kvs(response: JSON) -> list[JSON]:
    kvs: list[JSON] = response.get("response_range", {}).get("kvs") or []
    return kvs


def _check_batch(batch: list[bytes]) -> None:
    if not batch:
        raise ValueError("append() needs at least one entry")
    if not all(batch):
        raise ValueError("append() takes no empty entries (readers refuse a batch holding one)")
    if len(batch) > MAX_BATCH_ENTRIES:
        raise ValueError(
            f"append() takes at most {MAX_BATCH_ENTRIES} entries per call on etcd "
            f"(got {len(batch)}); split the batch"
        )
    total = 0
    for e in batch:
        if len(e) > MAX_ENTRY:
            raise ValueError(f"an entry of {len(e)} bytes exceeds the {MAX_ENTRY}-byte limit")
        total += len(e)
    if total > MAX_BATCH_BYTES:
        raise ValueError(
            f"a batch of {total} bytes exceeds etcd's {MAX_BATCH_BYTES}-byte limit per append; "
            "split it"
        )
