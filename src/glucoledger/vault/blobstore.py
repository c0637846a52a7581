"""Content-addressed blob storage: the ciphertexts of the vault.

A blob's name is the SHA-256 of its bytes (hex). ``BlobStore`` is the whole interface; an
S3-compatible store implements it with ``PutObject``/``GetObject``/``DeleteObject``/
``HeadObject`` under the key ``blobs/ab/cdef...``. Every public method turns a failure of the
backend into ``StorageError`` (a missing blob is ``NotFoundError``), so callers handle one
error tree whatever the backend.

``FsBlobStore`` keeps two kinds of files under its root:

- loose blobs, ``<root>/ab/cdef...`` (two-level fan-out), from ``put``: written to a temporary
  file and renamed into place, so a blob is either absent or complete; with ``fsync=True``
  (default) the file is flushed to disk before the rename;
- pack files, ``<root>/packs/<random>.pack``, from ``put_many`` (the ingest group commit): the
  group's blobs as records ``sha256 (32 bytes) || length (4 bytes, big-endian) || blob``,
  appended with one write to this store's active pack and made durable with one fdatasync,
  before anyone refers to them. A store opens a new pack (and syncs the folder once) when it
  starts, after a failed write, and when the active pack passes ``PACK_LIMIT`` bytes; it never
  appends to a pack it did not create, so a torn tail left by a crash stays a tail. Creating a
  file per blob cost more than all the cryptography of a single-reading upload; a file per
  group cost two fsyncs a group.

Both are content-addressed: ``get``/``exists``/``delete`` take the SHA-256 and find the blob
wherever it is (packs are indexed in memory on first use, by reading their record headers; a
truncated tail, as a crash mid-write leaves it, ends the scan: nothing refers to it yet).
``delete`` destroys the bytes, not only the name: a packed record's hash and blob are
overwritten with zeros in place (and synced); a pack with no live record left is removed;
a loose file is zeroed before it is unlinked. So erasure can destroy one blob of a group.
Blobs are immutable: putting an existing blob is a no-op. ``get`` does not check the hash:
readers (``Vault.open``, ``verify``) check it and name the batch when it differs.
``locate`` says which file and byte range hold a blob (for tamper tests and demos).
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..crypto import sha256
from ..errors import NotFoundError, StorageError
from ..files import storage_error

__all__ = ["PACK_LIMIT", "BlobStore", "FsBlobStore", "MemoryBlobStore"]

#: A store starts a new pack once its active one holds this many bytes.
PACK_LIMIT = 64 << 20


class BlobStore(abc.ABC):
    @abc.abstractmethod
    def put(self, data: bytes) -> bytes:
        """Store ``data``; return its SHA-256 (its name). Raises StorageError."""

    @abc.abstractmethod
    def get(self, digest: bytes) -> bytes:
        """The blob named ``digest``. Raises NotFoundError if absent, StorageError on failure."""

    @abc.abstractmethod
    def delete(self, digest: bytes) -> None:
        """Remove the blob (absent is fine). Raises StorageError."""

    @abc.abstractmethod
    def exists(self, digest: bytes) -> bool:
        """Raises StorageError when the backend cannot tell."""

    def put_many(self, blobs: list[bytes]) -> list[bytes]:
        """Store several blobs, durable when it returns (a backend may sync once)."""
        return [self.put(b) for b in blobs]

    def names(self) -> Iterator[bytes]:  # pragma: no cover - optional for backends
        raise NotImplementedError

    def close(self) -> None:
        """Release what the store holds open (it may be used again: it reopens)."""


class FsBlobStore(BlobStore):
    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._made: set[str] = set()
        self._lock = threading.RLock()
        #: digest -> (pack path, offset of the blob, length); None until first needed.
        self._index: dict[bytes, tuple[Path, int, int]] | None = None
        #: pack path -> live records in it.
        self._live: dict[Path, int] = {}
        #: pack path -> where its scan stopped (the end of its last complete record).
        self._scanned: dict[Path, int] = {}
        #: the pack this store appends to: (path, descriptor, size); None until first write.
        self._active: tuple[Path, int, int] | None = None
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, self.root, "creating the blob folder") from None

    def path(self, digest: bytes) -> Path:
        """Where the loose copy of a blob lives (packed blobs: see ``locate``)."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError("blob names are 32-byte SHA-256 digests")
        h = digest.hex()
        return self.root / h[:2] / h[2:]

    # --- packs ----------------------------------------------------------------------------
    @property
    def _packs(self) -> Path:
        return self.root / "packs"

    def _packed(self, *, refresh: bool = False) -> dict[bytes, tuple[Path, int, int]]:
        """The index of packed blobs; built on first use. ``refresh`` also reads packs that
        appeared since (written by another process over the same folder)."""
        with self._lock:
            if self._index is None or refresh:
                if self._index is None:
                    self._index, self._live = {}, {}
                try:
                    for pack in sorted(self._packs.glob("*.pack")):
                        if self._active is None or pack != self._active[0]:
                            self._scan(pack)
                except OSError as exc:
                    raise storage_error(exc, self.root, "reading the blob packs"
                                       ) from None
            return self._index

    def _scan(self, pack: Path) -> None:
        """Index the records of ``pack`` from where its last scan stopped (a pack another
        process appends to grows; a torn tail is read again once it is complete)."""
        assert self._index is not None
        live = self._live.get(pack, 0)
        with open(pack, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos = self._scanned.get(pack, 0)
            while pos + _REC_HEAD <= size:
                f.seek(pos)
                head = f.read(_REC_HEAD)
                length = int.from_bytes(head[32:], "big")
                if pos + _REC_HEAD + length > size:
                    break  # a torn tail (a crash mid-write): nothing refers to it
                digest = head[:32]
                if digest != _ZERO and digest not in self._index:
                    self._index[digest] = (pack, pos + _REC_HEAD, length)
                    live += 1
                pos += _REC_HEAD + length
        self._live[pack] = live
        self._scanned[pack] = pos

    def put_many(self, blobs: list[bytes]) -> list[bytes]:
        """Append the blobs to the active pack, durable when this returns (one fdatasync)."""
        index = self._packed()
        out = [sha256(b) for b in blobs]
        todo: dict[bytes, bytes] = {}
        for digest, data in zip(out, blobs, strict=True):
            # (a loose copy, from ``put``, is not looked for: a stat a blob, and at worst
            # the same bytes twice, which ``delete`` zeroes both of)
            if digest not in index and digest not in todo:
                todo[digest] = data
        if not todo:
            return out
        parts: list[bytes] = []
        where: list[tuple[bytes, int, int]] = []
        pos = 0
        for digest, data in todo.items():
            parts += (digest, len(data).to_bytes(4, "big"), data)
            where.append((digest, pos + _REC_HEAD, len(data)))
            pos += _REC_HEAD + len(data)
        with self._lock:
            pack, fd, size = self._pack_for_append()
            try:
                view = memoryview(b"".join(parts))
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fdatasync(fd)
            except OSError as exc:
                self._retire()  # its tail may be torn: never append to it again
                raise storage_error(exc, self.root, "writing a blob pack"
                                   ) from None
            self._active = (pack, fd, size + pos)
            for digest, offset, length in where:
                index.setdefault(digest, (pack, size + offset, length))
            self._live[pack] = self._live.get(pack, 0) + len(where)
            self._scanned[pack] = size + pos
            if size + pos >= PACK_LIMIT:
                self._retire()
        return out

    def _pack_for_append(self) -> tuple[Path, int, int]:
        """The active pack, opened (and its folder synced) on first use."""
        if self._active is not None:
            return self._active
        pack = self._packs / f"{os.urandom(8).hex()}.pack"
        try:
            if "packs" not in self._made:
                self._packs.mkdir(mode=0o700, exist_ok=True)
                self._made.add("packs")
            fd = os.open(pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            _hold(fd)  # until retired: another process's delete leaves this file in place
            if self.fsync:
                _sync_dir(self._packs)
        except OSError as exc:
            raise storage_error(exc, self.root, "creating a blob pack") from None
        self._live.setdefault(pack, 0)
        self._scanned[pack] = 0
        self._active = (pack, fd, 0)
        return self._active

    def _retire(self) -> None:
        """Stop appending to the active pack (a new one is opened on the next write)."""
        if self._active is not None:
            pack, fd, _ = self._active
            self._active = None
            try:
                os.close(fd)
            except OSError:
                pass
            if self._live.get(pack, 0) <= 0:
                try:
                    pack.unlink(missing_ok=True)
                except OSError:
                    pass
                self._live.pop(pack, None)
                self._scanned.pop(pack, None)

    def close(self) -> None:
        with self._lock:
            self._retire()

    def locate(self, digest: bytes) -> tuple[Path, int, int]:
        """(file, offset, length) of the blob's bytes. Raises NotFoundError if absent.

        The packs' index first (most blobs: no system call), then a loose copy, then packs
        another process wrote since."""
        found = self._packed().get(digest)
        if found is not None:
            return found
        loose = self.path(digest)
        try:
            return loose, 0, loose.stat().st_size
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - permission trouble
            raise StorageError(f"cannot look up blob {digest.hex()[:16]}: {exc}") from None
        found = self._packed(refresh=True).get(digest)
        if found is None:
            raise NotFoundError(f"blob {digest.hex()[:16]} is missing from {self.root}")
        return found

    # --- the interface --------------------------------------------------------------------
    def put(self, data: bytes, *, sync: bool = True) -> bytes:
        digest = sha256(data)
        h = digest.hex()
        folder = self.root / h[:2]
        final = folder / h[2:]
        tmp = folder / f".{h[2:]}.{threading.get_ident()}.tmp"
        try:
            if h[:2] not in self._made:
                folder.mkdir(mode=0o700, exist_ok=True)
                with self._lock:
                    self._made.add(h[:2])
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                if self.fsync and sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise storage_error(exc, self.root, f"writing blob {h[:16]}") from None
        return digest

    def get(self, digest: bytes) -> bytes:
        path, offset, length = self.locate(digest)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest.hex()[:16]} is missing from {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {digest.hex()[:16]}: {exc}") from None
        if len(data) != length:
            raise NotFoundError(f"blob {digest.hex()[:16]} is cut short in {path.name}")
        return data

    def delete(self, digest: bytes) -> None:
        """Destroy the blob's bytes (zeros written over them, synced) and its name."""
        loose = self.path(digest)
        try:
            _zero(loose, 0, None)
            loose.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete blob {digest.hex()[:16]}: {exc}") from None
        with self._lock:
            found = self._packed().pop(digest, None)
            if found is None:
                return
            pack, offset, length = found
            try:
                self._live[pack] = self._live.get(pack, 1) - 1
                if self._active is not None and self._active[0] == pack:
                    # Appends follow its record lengths: zero the record, keep the lengths;
                    # once nothing in it lives, close it (which removes it).
                    _zero(pack, offset - _REC_HEAD, 32)
                    _zero(pack, offset, length)
                    if self._live[pack] <= 0:
                        self._retire()
                elif self._live[pack] <= 0 and not _appended_to(pack):
                    _zero(pack, 0, None)
                    pack.unlink(missing_ok=True)
                    del self._live[pack]
                    self._scanned.pop(pack, None)
                else:
                    _zero(pack, offset - _REC_HEAD, 32)  # the name: a rescan skips it
                    _zero(pack, offset, length)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot delete blob {digest.hex()[:16]}: {exc}") from None

    def exists(self, digest: bytes) -> bool:
        try:
            return (digest in self._packed() or self.path(digest).is_file()
                    or digest in self._packed(refresh=True))
        except OSError as exc:  # pragma: no cover - permission trouble
            raise StorageError(f"cannot look up blob {digest.hex()[:16]}: {exc}") from None

    def names(self) -> Iterator[bytes]:
        found = set(self._packed())
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for f in sorted(folder.iterdir()):
                    if not f.name.startswith("."):
                        found.add(bytes.fromhex(folder.name + f.name))
        return iter(sorted(found))


_REC_HEAD = 36  # sha256 (32) + length (4)
_ZERO = bytes(32)


def _zero(path: Path, offset: int, length: int | None) -> None:
    """Overwrite ``length`` bytes at ``offset`` (None: to the end) with zeros, and sync."""
    with open(path, "r+b") as f:
        if length is None:
            length = os.fstat(f.fileno()).st_size - offset
        f.seek(offset)
        f.write(bytes(length))
        f.flush()
        os.fsync(f.fileno())


def _hold(fd: int) -> None:
    """Mark an active pack as this store's (an exclusive ``flock``, released when the
    descriptor closes: at ``_retire``, or by the system for a killed process)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: no mark (as before it existed)
        pass


def _appended_to(pack: Path) -> bool:
    """Whether another process holds ``pack`` as its active pack (``_hold``). Such a pack
    gets new records after this process scanned it (``serve`` uploading while an
    ``erase`` runs next to it): zeroing it whole, or removing it, would destroy them, so a
    delete then zeroes only its own records. A pack not held now never will be again (only
    its creator appends, from creation until retirement)."""
    import fcntl

    try:
        fd = os.open(pack, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemoryBlobStore(BlobStore):
    """A dict-backed store for tests and benchmarks that exclude the disk."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> bytes:
        digest = sha256(data)
        with self._lock:
            self._blobs[digest] = bytes(data)
        return digest

    def get(self, digest: bytes) -> bytes:
        try:
            return self._blobs[digest]
        except KeyError:
            raise NotFoundError(f"blob {digest.hex()[:16]} is missing") from None

    def delete(self, digest: bytes) -> None:
        with self._lock:
            self._blobs.pop(digest, None)

    def exists(self, digest: bytes) -> bool:
        return digest in self._blobs

    def names(self) -> Iterator[bytes]:
        return iter(sorted(self._blobs))
