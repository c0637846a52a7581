"""Crash-safe creation of a node folder: build in a temporary sibling, then rename.

``build_atomically(folder, build)`` runs ``build(tmp)`` in ``.<name>.init-<pid>-<random>``
next to ``folder``, fsyncs every file and folder it made, and renames it to ``folder``
(POSIX rename(2) is atomic within one file system; an existing *empty* folder is replaced),
then fsyncs the parent. So after a crash (kill -9, power cut) ``folder`` either does not
exist, and the same command can simply be run again, or is a complete node. Temporary
folders left by a crashed build of the same target are removed by the next build once their
process is gone.

Refuses (InputError, nothing changed) a folder that already holds a node, or one that holds
other files: a node is never mixed into an unrelated folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from ..files import fsync_dir, process_alive, storage_error

__all__ = ["build_atomically"]


def _sweep(folder: Path) -> None:
    """Remove temporary builds of ``folder`` whose process has died."""
    prefix = f".{folder.name}.init-"
    try:
        siblings = list(folder.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        if p.name.startswith(prefix) and p.is_dir():
            pid = p.name[len(prefix):].split("-", 1)[0]
            if pid.isdecimal() and not process_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _sync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def build_atomically(folder: Path, build: Callable[[Path], None]) -> None:
    """Make ``folder`` by ``build(tmp)`` and one rename. Raises InputError if ``folder``
    is not new (or empty), StorageError on an OS failure; the temporary folder is removed
    on any failure."""
    folder = Path(folder)
    if (folder / "node.json").exists():
        raise InputError(f"{folder} already holds a node; use another --data folder")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder} exists and is not an empty folder: a node is made only in "
                         "a new or empty folder; choose another --data folder")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _sweep(folder)
        tmp = folder.parent / f".{folder.name}.init-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700)
    except OSError as exc:
        raise storage_error(exc, folder.parent, "creating the node folder") from None
    try:
        build(tmp)
        _sync_tree(tmp)
        if folder.exists():
            folder.rmdir()  # empty (checked above); rename(2) would replace it too
        os.rename(tmp, folder)
        fsync_dir(folder.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise storage_error(exc, folder, "creating the node folder") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
