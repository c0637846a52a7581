"""Which processes are working on a data folder: one lock file per live ingest service.

A crash between writing an upload's vault row and appending its ``data.commit`` leaves a
"pending" row that nothing will order. The uploader's retry of the same sequence settles it,
but an uploader that never comes back (a phone replaced, a simulated device) leaves the row,
its tags and its blob for good. ``IngestService.recover`` may drop such a row only when no
live process can still be ordering it, and only a lock the kernel releases at the owner's
death can say that, kill -9 included.

Each ``Presence`` creates ``ingest/<pid>-<random>.lock`` and holds ``flock(LOCK_EX)`` on it
for its life. It locks the file under a temporary name first and renames it into place, so
a file with the final name is always locked while its owner lives. ``others_alive`` tries
every other file's lock without blocking: taken, the owner is gone (the file is removed);
refused, the owner is alive. A folder whose lock files cannot be made or read says "alive"
(keep everything): the answer is only ever used to drop data, so every doubt keeps it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
from pathlib import Path

DIRNAME = "ingest"
SUFFIX = ".lock"


class Presence:
    """This process's mark on a data folder, held until the object is closed or the process
    dies."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / DIRNAME
        self.path: Path | None = None
        self._fd: int | None = None
        self._closing = threading.Lock()  # one close: a second os.close could hit a reused fd
        name = f"{os.getpid()}-{secrets.token_hex(8)}"
        tmp = self.dir / f"{name}.tmp"
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # a read-only folder: no mark, and others_alive answers True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.dir / f"{name}{SUFFIX}"
            os.rename(tmp, path)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            return
        self._fd, self.path = fd, path

    def others_alive(self) -> bool:
        """Whether another process (or another Presence of this one) may be working on the
        folder. False only when this Presence holds its mark and every other mark's lock
        could be taken."""
        if self._fd is None:
            return True
        try:
            names = os.listdir(self.dir)
        except OSError:
            return True
        for name in names:
            if not name.endswith(SUFFIX) or self.path is None or name == self.path.name:
                continue
            path = self.dir / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # removed meanwhile: its owner closed it, or another check did
            except OSError:
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True  # held: its owner is alive
            else:
                path.unlink(missing_ok=True)  # a dead owner's mark
            finally:
                os.close(fd)
        return False

    def close(self) -> None:
        with self._closing:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        os.close(fd)

    def __del__(self) -> None:  # a service dropped without close still releases its mark
        try:
            self.close()
        except Exception:  # at interpreter exit os and pathlib may be half torn down
            pass  # (the kernel releases the lock with the process anyway)
