"""Entries of the ordered log: transaction envelopes and block cuts.

The orderer keeps opaque entries; this module gives them meaning. An entry is one kind byte
followed by its payload:

- ``0x01 || envelope``: a signed transaction (the envelope is the Merkle leaf).
- ``0x02 || CBOR {"h": height, "t": time_ms}``: close block ``h`` at time ``t``.

Blocks are cut only by cut entries, never by a node's timer, so every node cuts the same
blocks. A cut whose height is not the open block's (a late duplicate from another node) or
that would close an empty block is ignored, identically everywhere. Block time never goes
backwards: a cut earlier than the previous block's time closes the block at that earlier
block's time.

A cut's time is whatever its writer says. Where other organizations write to the log (etcd),
a node does not derive a block whose cut lies more than :data:`MAX_CUT_AHEAD_MS` ahead of its
own clock (``node.service.Node.sync``): a cut from the future would move block time forward
for good, expiring grants and emergency requests early and opening grants, studies and
recovery windows before their time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import codec
from ..errors import MalformedError

__all__ = ["KIND_CUT", "MAX_CUT_AHEAD_MS", "Cut", "TxEntry", "decode_entry", "encode_cut",
           "encode_tx_entry"]

KIND_TX = 0x01
KIND_CUT = 0x02

#: How far a cut's time may lie ahead of the clock of a node deriving it: the clock skew
#: between members' machines that is tolerated (NTP keeps them within a second).
MAX_CUT_AHEAD_MS = 5 * 60_000


@dataclass(frozen=True, slots=True, init=False)
class TxEntry:
    envelope: bytes

    def __init__(self, envelope: bytes) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``): one a transaction.
        object.__setattr__(self, "envelope", envelope)


@dataclass(frozen=True, slots=True, init=False)
class Cut:
    height: int
    time_ms: int

    def __init__(self, height: int, time_ms: int) -> None:
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "time_ms", time_ms)


def encode_tx_entry(envelope: bytes) -> bytes:
    return bytes([KIND_TX]) + envelope


def encode_cut(height: int, time_ms: int) -> bytes:
    return bytes([KIND_CUT]) + codec.encode({"h": height, "t": time_ms})


def decode_entry(entry: bytes) -> TxEntry | Cut:
    """Raises MalformedError for an entry of unknown kind or a malformed cut.

    A transaction entry is returned as bytes, undecoded: a malformed envelope is still ordered
    and becomes a rejected transaction in its block.
    """
    if not entry:
        raise MalformedError("empty log entry")
    kind = entry[0]
    if kind == KIND_TX:
        return TxEntry(entry[1:])
    if kind == KIND_CUT:
        value = codec.decode(entry[1:], max_size=64)
        if (
            not isinstance(value, dict)
            or set(value) != {"h", "t"}
            or not all(isinstance(value[k], int) and value[k] >= 0 for k in ("h", "t"))
        ):
            raise MalformedError("a cut entry is exactly {h: height, t: time in ms}")
        return Cut(value["h"], value["t"])
    raise MalformedError(f"unknown log entry kind {kind:#04x}")
