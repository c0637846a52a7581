"""Side files of a node folder, written one way: atomically and durably.

Every JSON or text side file (node.json, the name registry, status files, genesis copies)
is written by :func:`atomic_write`: the bytes go to a temporary file in the same folder, are
fsynced, renamed over the target, and the folder is fsynced, so after a crash the file holds
either the old bytes or the new ones, never a prefix (POSIX rename(2) is atomic within one
file system). Reads go through :func:`read_json`, which turns every OS and JSON failure into
the error tree with a message that names the file and says what to do.

Invariant: no caller opens a side file for writing in place. A side file that more than one
process changes (a command run next to ``serve`` on one folder) is read, changed and
written back under :func:`locked`, so neither loses the other's change.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import MalformedError, NotFoundError, StorageError

__all__ = ["atomic_write", "atomic_write_json", "fsync_dir", "locked", "process_alive",
           "read_json", "storage_error"]

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_MU = threading.Lock()


def storage_error(exc: OSError, path: Path | str, doing: str) -> StorageError:
    """A :class:`StorageError` for an OS failure, worded for the person who must act on it."""
    where = str(path)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return StorageError(f"disk full on {where} while {doing}: free space and retry")
    if exc.errno == errno.EFBIG:
        return StorageError(f"file size limit reached on {where} while {doing}: raise the "
                            "limit (ulimit -f) or free space and retry")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {where} while {doing}: the folder is read-only or "
                            "not yours; fix its permissions or use another --data folder")
    if exc.errno == errno.ENOTDIR or exc.errno == errno.EISDIR:
        return StorageError(f"{where} is not what was expected (a file where a folder should "
                            f"be, or the reverse) while {doing}: point --data at a node folder")
    reason = exc.strerror or type(exc).__name__
    return StorageError(f"could not access {where} while {doing}: {reason}")


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: the old bytes or the new, never a mix, even after a
    crash. Raises :class:`StorageError` (disk full, read-only folder, ...) and then leaves
    the old file untouched and no temporary file behind.

    A ``path`` that is a device or a pipe (``--out /dev/null``, ``/dev/stdout``) is written
    in place, never replaced: run as root, the rename replaced /dev/null itself with a
    regular file, and every later reader of /dev/null got its lines. Only a character device
    or a pipe of this user's, of root's, or this process's own output: a pipe another user
    made where the file was to go (``mkfifo /tmp/alice.html``) would get the data (a
    patient's report) in place, so it is refused with nothing written (``_in_place``). This
    process's own standard output or error is written in place whatever it is: ``--out
    /dev/stdout > report.html`` renamed a new file over the link /dev/stdout itself (as root,
    every later ``/dev/stdout`` on the machine was that file) and the report never reached
    report.html."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None  # missing (the usual case), or unreadable: the rename path says
    if st is not None and not stat.S_ISDIR(st.st_mode) and (
            not stat.S_ISREG(st.st_mode) or _own_output(st)):
        _in_place(path, st, data)
        return
    # A new file of its own, never one found there: a name no one can guess (another user
    # made the pid-named one in a shared folder, writable by them, and the rename then
    # gave them the report), created exclusively, never through a symbolic link.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:  # nothing of ours to remove
        raise storage_error(exc, path, "writing it") from None
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise storage_error(exc, path, "writing it") from None
    fsync_dir(path.parent)
    _sweep(path)


def _sweep(path: Path) -> None:
    """Remove what an earlier write of ``path`` killed mid-way left: its temporary files
    (``.<name>.<pid>.<random>.tmp``) of this user's whose process is gone. Another user's,
    a live process's (a concurrent write) and anything not a plain file are left alone."""
    prefix, me = f".{path.name}.", os.getuid()
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)
                 and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):-len(".tmp")].split(".")[0]
        if not pid.isdecimal() or process_alive(int(pid)):
            continue
        stale = path.parent / name
        try:
            st = os.lstat(stale)
            if stat.S_ISREG(st.st_mode) and st.st_uid == me:
                stale.unlink()
        except OSError:
            continue


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's too): what a crashed process left,
    a temporary file or folder named by its pid, may be removed only once it is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (EPERM): alive
    return True


def _own_output(st: os.stat_result) -> bool:
    """Whether ``st`` is this process's standard output or error (``/dev/stdout`` of a
    command run as another user than the pipe's maker: ``sudo -u bob ... | less``)."""
    for fd in (1, 2):
        try:
            o = os.fstat(fd)
        except OSError:
            continue
        if (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def _in_place(path: Path, st: os.stat_result, data: bytes) -> None:
    """Write ``data`` into the device or pipe at ``path`` (``atomic_write``), or refuse
    with nothing written: a pipe or device of another user (it would read the data), one
    reached through another user's link, or anything but a character device or a pipe (a
    disk, a socket). Opened without creating or truncating anything, then checked again
    through the descriptor, so a path swapped meanwhile is refused too."""
    mine = {os.geteuid(), 0}

    def refuse(what: str) -> StorageError:
        return StorageError(f"{path} is {what}: nothing was written to it; write to a "
                            "file of your own (a new name) or to standard output")

    def check(s: os.stat_result) -> None:
        kind = "a pipe" if stat.S_ISFIFO(s.st_mode) else "a device"
        if stat.S_ISREG(s.st_mode) and _own_output(s):
            return  # this process's own output, redirected to a file
        if not (stat.S_ISCHR(s.st_mode) or stat.S_ISFIFO(s.st_mode)):
            raise refuse("neither a file, a pipe nor a terminal")
        if s.st_uid not in mine and not _own_output(s):
            raise refuse(f"{kind} of another user (uid {s.st_uid}), who would read what "
                         "is written")

    check(st)
    try:
        link = os.lstat(path)
    except OSError as exc:
        raise storage_error(exc, path, "writing it") from None
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in mine and not _own_output(st):
        # another user's link to a device of root's (/dev/kmsg: the kernel log, which
        # others may read; a console): as theirs as their own pipe
        raise refuse(f"a link of another user (uid {link.st_uid}) to {os.path.realpath(path)}")
    try:
        # appended to a file (``>>`` keeps what was there; after ``>`` it is empty anyway)
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY
                     | (os.O_APPEND if stat.S_ISREG(st.st_mode) else 0))
    except OSError as exc:
        raise storage_error(exc, path, "writing it") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise refuse("no longer what it was a moment ago (replaced meanwhile)")
        check(now)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as exc:
        raise storage_error(exc, path, "writing it") from None
    finally:
        os.close(fd)


def atomic_write_json(path: Path, doc: Any, *, mode: int = 0o644) -> None:
    """:func:`atomic_write` of ``doc`` as indented, key-sorted JSON with a final newline."""
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    atomic_write(path, text.encode(), mode=mode)


@contextlib.contextmanager
def locked(path: Path, doing: str) -> Iterator[None]:
    """Hold the lock file ``path`` (created mode 0600) for one read-modify-write of a side
    file at a time: the threads of this process (one lock per path) and other processes on
    the folder (``flock``, released when the file is closed, a killed holder included).
    Not re-entrant: the body must not take the same lock again. Raises StorageError."""
    import fcntl

    key = os.path.abspath(path)
    with _THREAD_LOCKS_MU:
        in_process = _THREAD_LOCKS.setdefault(key, threading.Lock())
    with in_process:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise storage_error(exc, path, doing) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def read_json(path: Path, *, what: str, missing: str | None = None) -> Any:
    """The JSON value in ``path``. ``what`` names the file for people ("the node's settings");
    ``missing`` says what to do when it does not exist (a :class:`NotFoundError`); damaged or
    unreadable files raise :class:`MalformedError` or :class:`StorageError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} ({path}) does not exist"
                            + (f": {missing}" if missing else "")) from None
    except OSError as exc:
        raise storage_error(exc, path, f"reading {what}") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MalformedError(f"{what} ({path}) is damaged: it is not valid JSON; restore it "
                             "from a backup") from None
