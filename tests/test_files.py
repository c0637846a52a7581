"""The one atomic-write helper: old bytes or new, never a mix; errors in the tree."""

from __future__ import annotations

import errno
import os
import resource
import signal
from pathlib import Path

import pytest

from glucoledger.errors import MalformedError, NotFoundError, StorageError
from glucoledger.files import atomic_write, atomic_write_json, read_json, storage_error


def test_round_trip_and_no_temporary_left(tmp_path: Path) -> None:
    p = tmp_path / "node.json"
    atomic_write_json(p, {"b": 1, "a": [1, 2]})
    assert read_json(p, what="the node's settings") == {"a": [1, 2], "b": 1}
    atomic_write_json(p, {"c": 3})
    assert read_json(p, what="x") == {"c": 3}
    assert sorted(os.listdir(tmp_path)) == ["node.json"]


def test_mode_is_applied(tmp_path: Path) -> None:
    p = tmp_path / "secret"
    atomic_write(p, b"k", mode=0o600)
    assert p.stat().st_mode & 0o777 == 0o600


def test_missing_and_damaged_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="run init"):
        read_json(tmp_path / "nope.json", what="the node's settings", missing="run init")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x00\xff{")
    with pytest.raises(MalformedError, match="damaged"):
        read_json(bad, what="the registry")
    with pytest.raises(StorageError, match="not what was expected|could not access"):
        read_json(tmp_path / "bad.json" / "x", what="the registry")


def test_a_failed_write_keeps_the_old_bytes(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the write fail part-way (EFBIG), as a full disk would."""
    p = tmp_path / "doc.json"
    atomic_write(p, b"old")
    pid = os.fork()
    if pid == 0:  # the child writes over the limit; exit code tells the parent what it saw
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
        try:
            atomic_write(p, b"x" * 100_000)
        except StorageError as exc:
            os._exit(0 if "size limit" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["doc.json"]


@pytest.mark.parametrize(("err", "words"), [
    (errno.ENOSPC, "disk full on"),
    (errno.EFBIG, "size limit"),
    (errno.EROFS, "read-only"),
    (errno.EACCES, "read-only or not yours"),
    (errno.EIO, "could not access"),
])
def test_os_errors_become_words_a_person_can_act_on(err: int, words: str) -> None:
    exc = storage_error(OSError(err, os.strerror(err)), "/d/vault.db", "storing block 15")
    assert words in str(exc) and "/d/vault.db" in str(exc)
