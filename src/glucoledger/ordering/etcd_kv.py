"""Side keys of a consortium in etcd, outside the ordered log.

Layout, under ``/glucoledger/<chain>/`` (the log itself is ``batch/``, ``head/``, ``first/``:
``ordering.etcd``):

- ``sig/<node name>/<height, 20 digits>``: that node's signed checkpoint note for the height;
- ``stored/<node name>``: JSON ``{height, cut}`` of the last block the node stored;
- ``health/<node name>``: JSON ``{ok, ...}``: a node that found its store damaged says so here
  (height, the root it derives, what differs) instead of signing;
- ``ctl/<node name>``: the node's control URL (loopback), for peers fetching blocks.

These are not ordered and not part of any block: they carry signatures over what the log
already decided, and liveness. Every method raises OrderingError when etcd fails.

Each member writes only its own keys (``ordering.etcd_rbac``) but may write anything there.
``read_members`` is how a node reads the others: per member in force, only that member's
keys, only the heights it needs, and never a value above :data:`MAX_SIDE_VALUE`; a key or
value that breaks the layout is skipped and named (``SideRead.problems``), so one member's
keys can neither crowd out another's nor make a reader pull megabytes a round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import OrderingError
from ._gateway import Gateway, GatewayError, TlsFiles, b64, parse_etcd_url, unb64

__all__ = ["MAX_SIDE_VALUE", "EtcdKV", "SideRead"]

_MAX_OPS = 100
#: The largest side value a reader accepts. The largest honest one is a ``health/`` report
#: (a refusal's reason, a few hundred bytes); a note is a checkpoint body (origin up to 64
#: characters, two base64 hashes: about 200 bytes) and one signature line (a name up to 128
#: characters and 104 base64 characters): under 600 bytes. Larger values are skipped.
MAX_SIDE_VALUE = 8 * 1024
_HEIGHT_DIGITS = 20
#: Heights of notes read per member and round at most (the newest below our height).
MAX_NOTE_HEIGHTS = 128


@dataclass
class SideRead:
    """What ``read_members`` found: ``notes[height][member]``, ``health[member]``,
    ``stored[member]``, and ``problems``: keys or values a member wrote that break the layout
    (each message names the member), skipped."""

    notes: dict[int, dict[str, bytes]] = field(default_factory=dict)
    health: dict[str, bytes] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix``."""
    raw = prefix.encode()
    return b64(raw[:-1] + bytes([raw[-1] + 1]))


class EtcdKV:
    def __init__(self, endpoints: Sequence[str], chain: str, *, timeout: float = 5.0,
                 tls: TlsFiles | None = None) -> None:
        self._gw = Gateway(list(endpoints), timeout, tls)
        self.timeout = timeout
        self.prefix = f"/glucoledger/{chain}/"
        self._lock = threading.Lock()
        self._counts = {"side reads": 0, "side writes": 0}

    @classmethod
    def from_url(cls, url: str, chain: str, *, timeout: float = 5.0) -> EtcdKV:
        endpoints, tls = parse_etcd_url(url)
        return cls(endpoints, chain, timeout=timeout, tls=tls)

    def request_counts(self) -> dict[str, int]:
        """Requests so far: reads, and writes (puts and deletes) of the side keys."""
        with self._lock:
            return dict(self._counts)

    def _call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        ops = body.get("success")
        writes = path == "/v3/kv/deleterange" or (isinstance(ops, list) and any(
            "request_put" in op or "request_delete_range" in op for op in ops))
        with self._lock:
            self._counts["side writes" if writes else "side reads"] += 1
        try:
            return self._gw.call(path, body, deadline=time.monotonic() + self.timeout).body
        except GatewayError as exc:
            raise OrderingError(f"etcd side-key request failed: {exc}; is the cluster up "
                                "and does it have quorum?") from exc

    def put_many(self, items: Mapping[str, bytes]) -> None:
        keys = list(items)
        for k in range(0, len(keys), _MAX_OPS):
            ops = [{"request_put": {"key": b64(self.prefix + key), "value": b64(items[key])}}
                   for key in keys[k:k + _MAX_OPS]]
            self._call("/v3/kv/txn", {"success": ops})

    def put(self, key: str, value: bytes) -> None:
        self.put_many({key: value})

    def get(self, key: str) -> bytes | None:
        body = self._call("/v3/kv/range", {"key": b64(self.prefix + key)})
        kvs = body.get("kvs") or []
        assert isinstance(kvs, list)
        return unb64(kvs[0].get("value", "")) if kvs else None

    def scan(self, prefix: str, *, start: str | None = None, limit: int = 5000) -> dict[str, bytes]:
        """Keys (relative to the chain prefix, minus ``prefix``) -> values, sorted."""
        full = self.prefix + prefix
        body = self._call("/v3/kv/range", {
            "key": b64(self.prefix + (start if start is not None else prefix)),
            "range_end": _end(full), "limit": str(limit)})
        out: dict[str, bytes] = {}
        kvs = body.get("kvs") or []
        assert isinstance(kvs, list)
        for kv in kvs:
            # A key that is not UTF-8 is not glucoledger's: shown escaped, never raised on.
            key = unb64(kv["key"]).decode(errors="backslashreplace")
            out[key[len(full):]] = unb64(kv.get("value", ""))
        return out

    def scan_many(self, prefixes: Sequence[str], *, limit: int = 5000
                  ) -> list[dict[str, bytes]]:
        """``scan`` of several prefixes in one request (one etcd read transaction).

        Serializable: the member answers from its own state, without a Raft round, so the
        answer may be a few milliseconds old; fit for side keys that are signed or advisory
        (notes are verified, reports only ever grow), not for the log.
        """
        ops = [{"request_range": {"key": b64(self.prefix + p), "range_end": _end(self.prefix + p),
                                  "limit": str(limit), "serializable": True}}
               for p in prefixes]
        body = self._call("/v3/kv/txn", {"success": ops})
        responses = body.get("responses") or []
        assert isinstance(responses, list)
        if len(responses) != len(prefixes):
            raise OrderingError(f"etcd answered a read with {body!r:.200}; is it etcd 3.4+?")
        out: list[dict[str, bytes]] = []
        for p, r in zip(prefixes, responses, strict=True):
            full = self.prefix + p
            kvs = r.get("response_range", {}).get("kvs") or []
            out.append({unb64(kv["key"]).decode(errors="backslashreplace")[len(full):]:
                        unb64(kv.get("value", ""))
                        for kv in kvs})
        return out

    def read_members(self, members: Sequence[str], lo: int, hi: int) -> SideRead:
        """Each member's notes for heights ``lo`` .. ``hi - 1`` (at most
        :data:`MAX_NOTE_HEIGHTS`, the newest), its ``health/`` and ``stored/`` values: one
        bounded range per member, so no member's keys crowd out another's. Serializable reads
        (see ``scan_many``)."""
        lo = max(lo, hi - MAX_NOTE_HEIGHTS, 0)
        ops: list[dict[str, object]] = []
        for m in members:
            base = f"{self.prefix}sig/{m}/"
            ops.append({"request_range": {
                "key": b64(f"{base}{lo:0{_HEIGHT_DIGITS}d}"),
                "range_end": b64(f"{base}{max(hi, lo):0{_HEIGHT_DIGITS}d}"),
                # Keys between two heights' keys (``<h>x``) count against this member only.
                "limit": str(max(hi - lo, 1)), "serializable": True}})
            for side in ("health", "stored"):
                ops.append({"request_range": {"key": b64(f"{self.prefix}{side}/{m}"),
                                              "serializable": True}})
        responses: list[Any] = []
        for k in range(0, len(ops), _MAX_OPS):
            chunk = ops[k:k + _MAX_OPS]
            body = self._call("/v3/kv/txn", {"success": chunk})
            got = body.get("responses") or []
            assert isinstance(got, list)
            if len(got) != len(chunk):
                raise OrderingError(f"etcd answered a read with {body!r:.200}; is it etcd 3.4+?")
            responses += got
        out = SideRead()
        for i, m in enumerate(members):
            sigs, health, stored = (r.get("response_range", {}).get("kvs") or []
                                    for r in responses[3 * i:3 * i + 3])
            skip = len(f"{self.prefix}sig/{m}/".encode())
            for kv in sigs:
                digits = unb64(kv["key"])[skip:]
                if len(digits) != _HEIGHT_DIGITS or not all(0x30 <= c <= 0x39
                                                             for c in digits):  # ASCII 0-9
                    out.problems.append(
                        f"member {m!r} wrote a key under its sig/ that names no height "
                        f"({digits[:40]!r}); skipped")
                    continue
                value = self._bounded(kv, m, f"note for height {int(digits)}", out)
                if value is not None:
                    out.notes.setdefault(int(digits), {})[m] = value
            for kvs, into, what in ((health, out.health, "health/ report"),
                                    (stored, out.stored, "stored/ report")):
                if kvs:
                    value = self._bounded(kvs[0], m, what, out)
                    if value is not None:
                        into[m] = value
        return out

    @staticmethod
    def _bounded(kv: dict[str, str], member: str, what: str, out: SideRead) -> bytes | None:
        value = unb64(kv.get("value", ""))
        if len(value) > MAX_SIDE_VALUE:
            out.problems.append(f"member {member!r} wrote a {what} of {len(value)} bytes "
                                f"(at most {MAX_SIDE_VALUE}); skipped")
            return None
        return value

    def delete_range(self, start: str, end: str) -> None:
        """Delete keys from ``start`` (inclusive) to ``end`` (exclusive), chain-relative."""
        self._call("/v3/kv/deleterange", {"key": b64(self.prefix + start),
                                          "range_end": b64(self.prefix + end)})

    def close(self) -> None:
        self._gw.close()
