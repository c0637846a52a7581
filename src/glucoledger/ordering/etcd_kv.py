"""Side keys of a consortium in etcd, outside the ordered log.

Layout, under ``/glucoledger/<chain>/`` (the log itself is ``batch/``, ``head/``, ``first/``:
``ordering.etcd``):

- ``sig/<height, 20 digits>/<node name>``: that node's signed checkpoint note for the height;
- ``stored/<node name>``: JSON ``{height, cut}`` of the last block the node stored;
- ``health/<node name>``: JSON ``{ok, ...}``: a node that found its store damaged says so here
  (height, the root it derives, what differs) instead of signing;
- ``ctl/<node name>``: the node's control URL (loopback), for peers fetching blocks.

These are not ordered and not part of any block: they carry signatures over what the log
already decided, and liveness. Every method raises OrderingError when etcd fails.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ..errors import OrderingError
from ._gateway import Gateway, GatewayError, TlsFiles, b64, parse_etcd_url, unb64

__all__ = ["EtcdKV"]

_MAX_OPS = 100


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

    @classmethod
    def from_url(cls, url: str, chain: str, *, timeout: float = 5.0) -> EtcdKV:
        endpoints, tls = parse_etcd_url(url)
        return cls(endpoints, chain, timeout=timeout, tls=tls)

    def _call(self, path: str, body: dict[str, object]) -> dict[str, object]:
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
            out[unb64(kv["key"]).decode()[len(full):]] = unb64(kv.get("value", ""))
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
            out.append({unb64(kv["key"]).decode()[len(full):]: unb64(kv.get("value", ""))
                        for kv in kvs})
        return out

    def delete_range(self, start: str, end: str) -> None:
        """Delete keys from ``start`` (inclusive) to ``end`` (exclusive), chain-relative."""
        self._call("/v3/kv/deleterange", {"key": b64(self.prefix + start),
                                          "range_end": b64(self.prefix + end)})

    def close(self) -> None:
        self._gw.close()
