"""Block headers and per-transaction results.

Header (deterministic CBOR, hashed with ``tagged_hash("block", ...)``)::

    {v: 1, chain, height, prev, time, tx_count, tx_root, log_size, log_root, results, cut}

- ``prev``: hash of the previous header (32 zero bytes for height 0).
- ``time``: the block time in ms since the epoch, from the cut entry that closed the block.
- ``tx_root``: RFC 9162 root over this block's envelopes (leaf hashes, in order).
- ``log_size``/``log_root``: the global transaction log after this block.
- ``results``: ``tagged_hash("results", encode([[code, message], ...]))`` for this block's
  transactions in order. Rejected transactions are in the block with their reason code.
- ``cut``: position of the cut entry in the orderer's log, so a node knows where to resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..crypto import tagged_hash
from ..errors import MalformedError

__all__ = ["GENESIS_PREV", "BlockHeader", "Result", "encode_results", "results_hash"]

GENESIS_PREV = bytes(32)
OK = "ok"


@dataclass(frozen=True, slots=True)
class Result:
    """What the state machine decided for one transaction: ``ok`` or a reason code."""

    code: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == OK

    def to_value(self) -> list[str]:
        return [self.code, self.message]

    @classmethod
    def from_value(cls, value: Any) -> Result:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise MalformedError("a result is [code, message]")
        return cls(value[0], value[1])


def results_hash(results: Sequence[Result]) -> bytes:
    return tagged_hash("results", codec.encode([r.to_value() for r in results]))


def encode_results(results: Sequence[Result]) -> tuple[tuple[bytes, ...], bytes]:
    """Each result's canonical bytes (as the store keeps them) and ``results_hash`` of all,
    with each result encoded once: a definite-length array's canonical encoding is its head
    followed by its items' encodings (RFC 8949 4.2.1), so the hash needs no second encode."""
    items = tuple(_OK_BYTES if r.code == OK and not r.message else codec.encode(r.to_value())
                  for r in results)
    return items, tagged_hash("results", codec.encode_head(4, len(items)) + b"".join(items))


#: ``codec.encode(Result("ok").to_value())``, the result of most transactions, encoded once.
_OK_BYTES = b"\x82\x62ok\x60"


_FIELDS = ("v", "chain", "height", "prev", "time", "tx_count", "tx_root", "log_size",
           "log_root", "results", "cut")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain: str
    height: int
    prev: bytes
    time: int
    tx_count: int
    tx_root: bytes
    log_size: int
    log_root: bytes
    results: bytes
    cut: int
    #: The canonical bytes, once computed (or as received by ``decode``): the header is
    #: encoded once, then hashed, chained (``prev``) and stored from these bytes.
    _raw: bytes = field(default=b"", init=False, repr=False, compare=False)

    def to_value(self) -> dict[str, Any]:
        return {
            "v": 1,
            "chain": self.chain,
            "height": self.height,
            "prev": self.prev,
            "time": self.time,
            "tx_count": self.tx_count,
            "tx_root": self.tx_root,
            "log_size": self.log_size,
            "log_root": self.log_root,
            "results": self.results,
            "cut": self.cut,
        }

    def encode(self) -> bytes:
        raw = self._raw
        if not raw:
            raw = codec.encode(self.to_value())
            object.__setattr__(self, "_raw", raw)
        return raw

    def hash(self) -> bytes:
        return tagged_hash("block", self.encode())

    @classmethod
    def decode(cls, raw: codec.BytesLike) -> BlockHeader:
        value = codec.decode(raw, max_size=4096)
        if not isinstance(value, dict) or set(value) != set(_FIELDS) or value["v"] != 1:
            raise MalformedError(f"a block header (v1) is exactly {{{', '.join(_FIELDS)}}}")
        ints = ("height", "time", "tx_count", "log_size", "cut")
        hashes = ("prev", "tx_root", "log_root", "results")
        if not all(isinstance(value[k], int) and value[k] >= 0 for k in ints) or not all(
            isinstance(value[k], bytes) and len(value[k]) == 32 for k in hashes
        ):
            raise MalformedError("block header fields have the wrong types")
        if not isinstance(value["chain"], str):
            raise MalformedError("block header chain must be text")
        header = cls(**{k: value[k] for k in _FIELDS if k != "v"})
        object.__setattr__(header, "_raw", bytes(raw))  # canonical (checked): hash as received
        return header
