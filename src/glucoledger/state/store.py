"""The world state the state machine reads and writes: a journaled key-value map.

Keys are text (``acct/<hex id>``, ``prop/<hex>`` ...); values are canonical CBOR bytes, so a
handler can never mutate stored state behind the journal's back, and two nodes holding the same
state hold the same bytes.

Transactions are atomic: ``begin()`` opens a journal, ``commit()`` keeps the writes,
``rollback()`` restores every key the transaction touched. A rejected transaction therefore
changes nothing. ``take_changes()`` hands the store everything written since the last call, so
the node persists each block's writes in the same database transaction as the block.

Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .. import codec

__all__ = ["State"]

_MISSING = object()


#: Prefixes whose sorted keys ``State.keys`` keeps (the oldest asked is dropped first).
_PREFIXES_KEPT = 32


class State:
    __slots__ = ("_changed", "_data", "_journal", "_sorted")

    def __init__(self, data: Mapping[str, bytes] | None = None) -> None:
        self._data: dict[str, bytes] = dict(data or {})
        self._journal: dict[str, object] | None = None
        self._changed: set[str] = set()
        #: prefix -> its keys, sorted: what ``keys`` answered, until a key with that prefix
        #: comes or goes (a value overwritten changes no key set). Lists are replaced, never
        #: changed, so an iterator handed out earlier still walks the keys of its time.
        self._sorted: dict[str, list[str]] = {}

    # reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        raw = self._data.get(key)
        return None if raw is None else codec.decode_trusted(raw)

    def get_raw(self, key: str) -> bytes | None:
        return self._data.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys with ``prefix``, sorted (so iteration order is the same on every node).

        A scan of every key the first time a prefix is asked for, then the kept answer
        until a key with that prefix is added or deleted (the member schedule, asked for
        several times a block, would otherwise scan the whole state each time)."""
        found = self._sorted.get(prefix)
        if found is None:
            found = sorted(k for k in self._data if k.startswith(prefix))
            if len(self._sorted) >= _PREFIXES_KEPT:
                del self._sorted[next(iter(self._sorted))]
            self._sorted[prefix] = found
        return iter(found)

    def _key_set_changed(self, key: str) -> None:
        """``key`` was added or deleted: forget the kept answers it belongs to."""
        if self._sorted:
            for prefix in [p for p in self._sorted if key.startswith(p)]:
                del self._sorted[prefix]

    # writes --------------------------------------------------------------------------------
    def _remember(self, key: str) -> None:
        if self._journal is not None and key not in self._journal:
            self._journal[key] = self._data.get(key, _MISSING)

    def put(self, key: str, value: Any) -> None:
        self.put_encoded(key, codec.encode(value))

    def put_encoded(self, key: str, raw: bytes) -> None:
        """``put`` of the value whose canonical encoding is ``raw``: bytes this process
        encoded (``codec.encode``, ``codec.encode_with``), never bytes from outside."""
        data = self._data
        old = data.get(key, _MISSING)
        journal = self._journal
        if journal is not None and key not in journal:  # _remember, inline
            journal[key] = old
        if old is _MISSING:
            self._key_set_changed(key)
        data[key] = raw
        self._changed.add(key)

    def append_each(self, keys: Iterable[str], item: Any) -> None:
        """Add ``item`` at the end of the list stored under each key (a list ``[item]`` where
        there is none yet), without decoding the lists: ``item`` is encoded once and each
        list's bytes grow by it (codec.append_encoded). The batch index files an upload's
        entry under every hour it covers this way (state/access.py)."""
        keys = list(keys)
        if not keys:
            return
        fresh = codec.encode([item])
        for key in keys:
            old = self._data.get(key)
            self._remember(key)
            if old is None:
                self._key_set_changed(key)
                self._data[key] = fresh
            else:
                self._data[key] = codec.append_encoded(old, item)
            self._changed.add(key)

    def delete(self, key: str) -> None:
        if key in self._data:
            self._remember(key)
            del self._data[key]
            self._key_set_changed(key)
            self._changed.add(key)

    # transactions --------------------------------------------------------------------------
    def begin(self) -> None:
        if self._journal is not None:
            raise RuntimeError("a state transaction is already open")
        self._journal = {}

    def commit(self) -> None:
        if self._journal is None:
            raise RuntimeError("no state transaction is open")
        self._journal = None

    def rollback(self) -> None:
        if self._journal is None:
            raise RuntimeError("no state transaction is open")
        for key, old in self._journal.items():
            if old is _MISSING:
                if self._data.pop(key, None) is not None:
                    self._key_set_changed(key)
            else:
                assert isinstance(old, bytes)
                if key not in self._data:
                    self._key_set_changed(key)
                self._data[key] = old
        self._journal = None

    def take_changes(self) -> dict[str, bytes | None]:
        """Writes since the last call: key -> new bytes, or None if deleted."""
        if self._journal is not None:
            raise RuntimeError("cannot take changes inside an open state transaction")
        changes = {k: self._data.get(k) for k in sorted(self._changed)}
        self._changed = set()
        return changes

    def snapshot(self) -> dict[str, bytes]:
        return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)
