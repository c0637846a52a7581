"""A small file system made by the test: a tmpfs of a given size (as root), unmounted after.

Disk-full trials need ``ENOSPC`` from the real kernel, not a mocked ``write``. As root a
tmpfs mount with ``size=`` gives exactly that; without root the trials fall back to
``RLIMIT_FSIZE`` (``EFBIG``, "file too large"), which the tests that need a real full disk
skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["ballast", "can_mount", "small_fs"]


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextmanager
def small_fs(folder: Path, size_kib: int) -> Iterator[Path]:
    """Mount a ``size_kib`` KiB tmpfs on ``folder`` (created); unmount it afterwards."""
    if not can_mount():
        pytest.skip("disk-full trials need root to mount a small tmpfs")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700",
                           "tmpfs", str(folder)], check=False, capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def ballast(path: Path, free_kib: int) -> int:
    """Fill the file system holding ``path`` until about ``free_kib`` KiB are left, with one
    file at ``path``; return its size. Deleting it is "freeing space"."""
    st = os.statvfs(path.parent)
    room = st.f_bavail * st.f_frsize - free_kib * 1024
    with path.open("wb") as f:
        if room > 0:
            f.write(b"\0" * room)
    return max(room, 0)
