"""An orderer on an etcd cluster (Raft), spoken to through etcd's v3 JSON gateway.

Layout, under ``/glucoledger/<chain>/``:
- ``head``: the next position, a decimal string (absent means 0);
- ``first``: the lowest readable position, after :meth:`EtcdOrderer.compact` (absent means 0);
- ``batch/<position of its first entry, 20 digits zero-padded>``: the entries of one append,
  packed (:func:`_pack`: a version byte 0x01, then per entry a 4-byte big-endian length and
  the bytes). One key per append, not per entry: etcd's cost is mostly per operation (a
  127-entry append as 127 puts took about twice as long as the same bytes in one put, and
  every reader paid a JSON object per entry), so positions are per entry but keys are not.
  (Layout version 1, one ``log/<position>`` key per entry, is not read: re-create a
  development cluster written by it.)

Invariants (the contract of :mod:`glucoledger.ordering.base`):
- An append is one etcd transaction: compare ``head``'s mod_revision with the one just read
  (``create_revision == 0`` when absent), then put the batch and the new head. Either all
  of it commits, by a Raft quorum, or none of it does, so positions are contiguous, never
  reused, and no reader ever sees half a batch.
- One call appends at most :data:`MAX_BATCH_ENTRIES` entries of at most
  :data:`MAX_BATCH_BYTES` in total (etcd's default request limit is 1.5 MiB); larger batches
  raise ValueError. Splitting a batch over several transactions would let another appender
  slip in between and break contiguity; callers cut batches small instead.
- When an attempt's outcome is unknown (timeout, dropped connection) and the retry then finds
  the head moved, the entries at the attempted position are compared with ours: if they are
  ours (same bytes, written by one transaction) the append returns that position rather than
  appending twice. If a whole call fails, it raises OrderingError; the entries may still land
  (etcd may commit a proposal after the client gave up) and the node deduplicates by
  transaction hash, as the base contract allows.
- Without quorum etcd stalls rather than refusing; every call has a deadline (``timeout``) and
  then says how many members answer.

Compaction records the position in ``first`` (reads below it fail from then on), deletes
every batch that lies wholly below it (a batch straddling it stays, its older entries
unreadable), and compacts etcd's history at that revision. etcd's history is cluster-wide:
other chains' watchers restart, which
:meth:`EtcdOrderer.wait` handles.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
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

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_ENTRIES", "EtcdOrderer", "TlsFiles"]

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
_CHAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _int(value: Any, default: int = 0) -> int:
    """The gateway sends int64 as strings and leaves zeros out."""
    return default if value is None else int(value)


class EtcdOrderer(Orderer):
    """Orderer over an etcd 3.4+ cluster. Thread-safe; every call fails over between endpoints.

    Every public method raises OrderingError when etcd fails (the message names the cause and
    what to do) and ValueError on misuse (bad arguments, oversized entries or batches).
    """

    def __init__(self, endpoints: Sequence[str], chain: str, *, timeout: float = 5.0,
                 tls: TlsFiles | None = None) -> None:
        if not chain or len(chain) > 64 or not set(chain) <= _CHAIN_CHARS:
            raise ValueError(f"chain name {chain!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        self.chain = chain
        self.timeout = timeout
        self._gw = Gateway(list(endpoints), timeout, tls)
        self._members = len(self._gw.endpoints)
        self._known_head: tuple[int, int] | None = None
        prefix = f"/glucoledger/{chain}/"
        self._head = b64(prefix + "head")
        self._first = b64(prefix + "first")
        self._log_prefix = prefix + "batch/"
        self._log_start = b64(self._log_prefix)

    @classmethod
    def from_url(cls, url: str, chain: str, *, timeout: float = 5.0) -> EtcdOrderer:
        """``etcd://host:port,host:port[?tls=DIR]`` -> an orderer on those endpoints
        (over TLS with DIR's client certificate, see ``ordering._gateway``)."""
        endpoints, tls = parse_etcd_url(url)
        return cls(endpoints, chain, timeout=timeout, tls=tls)

    def _key(self, position: int) -> str:
        return b64(f"{self._log_prefix}{position:0{_POS_DIGITS}d}")

    def _position(self, key: str) -> int:
        name = unb64(key).decode()
        if not name.startswith(self._log_prefix) or not name[len(self._log_prefix):].isdigit():
            raise OrderingError(f"etcd log of chain {self.chain!r} holds a stray key {name!r}: "
                                "keys under /glucoledger/ were changed outside glucoledger")
        return int(name[len(self._log_prefix):])

    # -- the contract --------------------------------------------------------------------------

    def append(self, entries: Sequence[bytes]) -> int:
        batch = [bytes(e) for e in entries]
        _check_batch(batch)
        deadline = time.monotonic() + self.timeout
        maybe_ours: list[int] = []  # positions of attempts whose outcome is unknown
        packed = b64(_pack(batch))
        # The head as this client last saw it: one round trip per append when it alone writes.
        # A stale guess only costs a failed compare, whose answer carries the current head.
        known = self._known_head
        if known is None:
            known = self._read_counter(self._head, deadline, "appends")
        for attempt in range(_MAX_CAS_ATTEMPTS):
            head, head_rev = known
            for pos in maybe_ours:
                if pos < head and self._landed(pos, batch, deadline):
                    return pos
            ops: list[JSON] = [{"request_put": {"key": self._key(head), "value": packed}}]
            ops.append({"request_put": {"key": self._head, "value": b64(str(head + len(batch)))}})
            txn = {
                "compare": [self._unchanged(self._head, head_rev)],
                "success": ops,
                "failure": [{"request_range": {"key": self._head}}],
            }
            try:
                reply = self._gw.call("/v3/kv/txn", txn, deadline=deadline)
            except GatewayError as exc:
                self._known_head = None
                raise self._failure(exc, "appends") from exc
            if reply.body.get("succeeded"):
                revision = _int(reply.body.get("header", {}).get("revision"))
                self._known_head = (head + len(batch), revision)
                return head
            if reply.maybe_applied_before:
                maybe_ours.append(head)
            responses = reply.body.get("responses") or [{}]
            kvs = _kvs(responses[0])
            known = (
                (int(unb64(kvs[0]["value"])), _int(kvs[0].get("mod_revision"))) if kvs else (0, 0)
            )
            self._known_head = known
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
        body = self._txn_read(
            [
                {"request_range": {"key": self._first}},
                # The batch holding ``start``: the last one beginning at or before it.
                {
                    "request_range": {
                        "key": self._log_start,
                        "range_end": self._key(start + 1),
                        "limit": "1",
                        "sort_order": "DESCEND",
                        "sort_target": "KEY",
                    }
                },
                {
                    "request_range": {
                        "key": self._key(start + 1),
                        "range_end": self._key(start + limit),
                        # Batches beginning below start + limit: at most limit + one
                        # batch's entries travel, however the log was batched.
                        "limit": str(limit),
                    }
                },
            ],
            "reads",
        )
        first_kvs, at_kvs, log_kvs = (_kvs(r) for r in body.get("responses", []))
        first = int(unb64(first_kvs[0]["value"])) if first_kvs else 0
        if start < first:
            raise OrderingError(
                f"position {start} of chain {self.chain!r} was compacted away; the log now "
                f"starts at {first}: read from there, or rebuild from a checkpoint"
            )
        out: list[bytes] = []
        expected = start
        for kv in at_kvs + log_kvs:
            pos = self._position(kv["key"])
            entries = _unpack(unb64(kv.get("value", "")), self.chain, pos)
            if pos <= start:  # the batch holding start (or one ending before it)
                entries = entries[start - pos:]
                pos = start
            if not entries:
                continue
            if pos != expected:
                raise OrderingError(
                    f"etcd log of chain {self.chain!r} has a gap at position {expected}: keys "
                    "under /glucoledger/ were changed outside glucoledger; restore the cluster "
                    "from a snapshot"
                )
            out.extend(entries)
            expected += len(entries)
            if len(out) >= limit:
                break
        return out[:limit]

    def size(self) -> int:
        return self._read_counter(self._head, time.monotonic() + self.timeout, "reads")[0]

    def first(self) -> int:
        return self._read_counter(self._first, time.monotonic() + self.timeout, "reads")[0]

    def compact(self, below: int) -> None:
        """Delete entries below ``below`` (clamped to the size) and compact etcd's history."""
        if below < 0:
            raise ValueError("compact(below) needs below >= 0")
        deadline = time.monotonic() + self.timeout
        for _ in range(_MAX_CAS_ATTEMPTS):
            body = self._txn_read(
                [{"request_range": {"key": self._head}}, {"request_range": {"key": self._first}}],
                "compaction",
                deadline,
            )
            head_kvs, first_kvs = (_kvs(r) for r in body.get("responses", []))
            head = int(unb64(head_kvs[0]["value"])) if head_kvs else 0
            first = int(unb64(first_kvs[0]["value"])) if first_kvs else 0
            first_rev = _int(first_kvs[0].get("mod_revision")) if first_kvs else 0
            target = min(below, head)
            if target <= first:
                return
            # Delete the batches wholly below target: all but the one holding target.
            holding = self._txn_read(
                [{"request_range": {"key": self._log_start, "range_end": self._key(target + 1),
                                    "limit": "1", "sort_order": "DESCEND",
                                    "sort_target": "KEY", "keys_only": True}}],
                "compaction",
                deadline,
            )
            at = _kvs(holding["responses"][0])
            keep_from = self._position(at[0]["key"]) if at else target
            txn = {
                "compare": [self._unchanged(self._first, first_rev)],
                "success": [
                    {
                        "request_delete_range": {
                            "key": self._log_start,
                            "range_end": self._key(keep_from),
                        }
                    },
                    {"request_put": {"key": self._first, "value": b64(str(target))}},
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
        current, revision = self._read_counter_at(call_deadline)
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

    def _read_counter(self, key: str, deadline: float, what: str) -> tuple[int, int]:
        """(value, mod_revision) of a decimal counter key; (0, 0) when absent."""
        body = self._call("/v3/kv/range", {"key": key}, what, deadline)
        kvs = body.get("kvs") or []
        if not kvs:
            return 0, 0
        return int(unb64(kvs[0].get("value", ""))), _int(kvs[0].get("mod_revision"))

    def _read_counter_at(self, deadline: float) -> tuple[int, int]:
        """(head, store revision the answer reflects)."""
        body = self._call("/v3/kv/range", {"key": self._head}, "reads", deadline)
        kvs = body.get("kvs") or []
        head = int(unb64(kvs[0].get("value", ""))) if kvs else 0
        return head, _int(body.get("header", {}).get("revision"))

    def _landed(self, pos: int, batch: list[bytes], deadline: float) -> bool:
        """Whether positions pos.. hold exactly ``batch``, written by one transaction."""
        body = self._call("/v3/kv/range", {"key": self._key(pos)}, "appends", deadline)
        kvs = body.get("kvs") or []
        return len(kvs) == 1 and unb64(kvs[0].get("value", "")) == _pack(batch)

    def _watch_head(self, size: int, revision: int, deadline: float) -> int | None:
        """Watch ``head`` from ``revision + 1``; the first value above ``size``, or the last
        seen at the deadline; None when no member would hold the watch."""
        request = {"create_request": {"key": self._head, "start_revision": str(revision + 1)}}
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
                        value = event.get("kv", {}).get("value")
                        if value is not None:
                            seen = max(seen, int(unb64(value)))
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


def _pack(batch: Sequence[bytes]) -> bytes:
    parts = [bytes([_PACK_VERSION])]
    for e in batch:
        parts.append(len(e).to_bytes(4, "big"))
        parts.append(e)
    return b"".join(parts)


def _unpack(data: bytes, chain: str, pos: int) -> list[bytes]:
    out: list[bytes] = []
    if data[:1] != bytes([_PACK_VERSION]):
        raise OrderingError(f"etcd log of chain {chain!r}: the batch at position {pos} is not "
                            "in a layout this version reads; keys under /glucoledger/ were "
                            "changed outside glucoledger, or by another version")
    k = 1
    while k < len(data):
        n = int.from_bytes(data[k:k + 4], "big")
        if k + 4 + n > len(data):
            raise OrderingError(f"etcd log of chain {chain!r}: the batch at position {pos} is "
                                "truncated; restore the cluster from a snapshot")
        out.append(data[k + 4:k + 4 + n])
        k += 4 + n
    return out


def _kvs(response: JSON) -> list[JSON]:
    kvs: list[JSON] = response.get("response_range", {}).get("kvs") or []
    return kvs


def _check_batch(batch: list[bytes]) -> None:
    if not batch:
        raise ValueError("append() needs at least one entry")
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
