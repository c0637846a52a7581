"""Content-addressed blob storage: the ciphertexts of the vault.

A blob's name is the SHA-256 of its bytes (hex). ``BlobStore`` is the whole interface; an
S3-compatible store implements it with ``PutObject``/``GetObject``/``DeleteObject``/
``HeadObject`` under the key ``blobs/ab/cdef...``. Every public method turns a failure of the
backend into ``StorageError`` (a missing blob is ``NotFoundError``), so callers handle one
error tree whatever the backend.

``FsBlobStore`` keeps ``<root>/ab/cdef...`` (two-level fan-out), written to a temporary file
and renamed into place, so a blob is either absent or complete; with ``fsync=True`` (default)
the file is flushed to disk before the rename. ``put_many`` (a group commit) creates each
new file in place and makes the group durable with one sync before anyone refers to it. Blobs are immutable: putting an existing blob is
a no-op. ``get`` does not check the hash: readers (``Vault.open``, ``verify``) check it and name
the batch when it differs.
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..crypto import sha256
from ..errors import NotFoundError, StorageError

__all__ = ["BlobStore", "FsBlobStore", "MemoryBlobStore"]


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


class FsBlobStore(BlobStore):
    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._made: set[str] = set()
        self._lock = threading.Lock()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the blob folder {self.root}: {exc}") from None

    def path(self, digest: bytes) -> Path:
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError("blob names are 32-byte SHA-256 digests")
        h = digest.hex()
        return self.root / h[:2] / h[2:]

    def put_many(self, blobs: list[bytes]) -> list[bytes]:
        """Write every blob, then make them durable with one ``sync`` (group commit).

        Each new blob is created directly under its name (no temporary file and rename): the
        blobs of a group are referenced only after this returns, by then synced, so a crash
        can leave a partial file only where nothing points to it yet (a content address
        nobody committed). A name that already exists is rewritten the safe way.
        """
        out = []
        for data in blobs:
            digest = sha256(data)
            h = digest.hex()
            folder = self.root / h[:2]
            try:
                if h[:2] not in self._made:
                    folder.mkdir(mode=0o700, exist_ok=True)
                    with self._lock:
                        self._made.add(h[:2])
                fd = os.open(folder / h[2:], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self.put(data, sync=False)
            except OSError as exc:
                raise StorageError(f"cannot write blob {h[:16]} under {self.root}: {exc}"
                                   ) from None
            else:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError as exc:
                    os.close(fd)
                    (folder / h[2:]).unlink(missing_ok=True)
                    raise StorageError(f"cannot write blob {h[:16]} under {self.root}: {exc}"
                                       ) from None
                os.close(fd)
            out.append(digest)
        if self.fsync and out:
            os.sync()
        return out

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
            raise StorageError(f"cannot write blob {h[:16]} under {self.root}: {exc}") from None
        return digest

    def get(self, digest: bytes) -> bytes:
        path = self.path(digest)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest.hex()[:16]} is missing from {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {digest.hex()[:16]}: {exc}") from None

    def delete(self, digest: bytes) -> None:
        try:
            self.path(digest).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete blob {digest.hex()[:16]}: {exc}") from None

    def exists(self, digest: bytes) -> bool:
        try:
            return self.path(digest).is_file()
        except OSError as exc:  # pragma: no cover - permission trouble
            raise StorageError(f"cannot look up blob {digest.hex()[:16]}: {exc}") from None

    def names(self) -> Iterator[bytes]:
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for f in sorted(folder.iterdir()):
                    if not f.name.startswith("."):
                        yield bytes.fromhex(folder.name + f.name)


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
