"""The one atomic-write helper: old bytes or new, never a mix; errors in the tree."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
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


#: Writers of files that are not a node folder's side files: the local development
#: cluster's scaffolding (node/devcluster.py, ordering/cluster.py: etcd's own folders), the
#: consortium member's status file (written to a temporary name and renamed: its readers
#: poll it), and files a user names on the command line (cli/: an export, a checkpoint, a
#: report: the user's file, not the node's).
_NOT_SIDE_FILES = {"node/devcluster.py", "ordering/cluster.py", "node/consortium.py",
                   "files.py"}
#: Renames that write nothing, or write data rather than a side file: the blob store's
#: content-addressed loose blobs (fsynced per its own batching, vault/blobstore.py), and the
#: name registry setting an old folder's file aside once merged.
_RENAMES = {("vault/blobstore.py", "os.replace(tmp, final)"),
            ("node/registry.py", "os.replace(old_path, old_path.with_name(")}


def test_side_files_are_written_only_through_the_helper() -> None:
    """``files.atomic_write`` is the one way the node writes a side file: no ``write_text``,
    ``write_bytes``, ``json.dump`` or hand-made temporary-file rename under node/, vault/,
    crypto/ or the package root (issue 12: node.json was once left empty by a kill)."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "glucoledger"
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|json\.dump\(|os\.replace\(")
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel.startswith(("cli/", "api/", "bench/")) or rel in _NOT_SIDE_FILES:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not any(rel == f and snippet in line
                                                 for f, snippet in _RENAMES):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == [], "write side files with files.atomic_write:\n" + "\n".join(found)


def test_a_device_or_pipe_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    """``--out /dev/null`` as root: the rename replaced the device with a regular file,
    and everything that read /dev/null afterwards read these bytes. A FIFO stands in for
    the device here (making a device node needs root); it must stay a FIFO."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic_write(fifo, b"report\n")
    reader.join(30)
    assert got == [b"report\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.fifo"]  # no temporary left


def test_the_own_standard_output_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    """``--out /dev/stdout > report.html``: /dev/stdout is a link to this process's output,
    here a regular file, and the rename put a new file in place of the link (as root, the
    machine's /dev/stdout) while report.html stayed empty. A link of our own to
    /proc/self/fd/1 stands in for /dev/stdout, so a failure replaces nothing of the
    machine's. Appended: what the shell's ``>>`` kept stays."""
    link = tmp_path / "stdout"
    os.symlink("/proc/self/fd/1", link)
    report = tmp_path / "report.html"
    report.write_bytes(b"kept\n")
    code = ("import sys; from pathlib import Path; from glucoledger.files import atomic_write; "
            "atomic_write(Path(sys.argv[1]), b'report\\n')")
    with open(report, "ab") as out:
        done = subprocess.run([sys.executable, "-c", code, str(link)], stdout=out,
                              stderr=subprocess.PIPE, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert report.read_bytes() == b"kept\nreport\n"
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "stdout"]


def test_a_write_removes_what_killed_writes_of_the_same_file_left(tmp_path: Path) -> None:
    """A write killed between making its temporary file and the rename leaves
    ``.<name>.<pid>.<random>.tmp`` behind; the next write of that file removes those of
    processes that are gone, and nothing else."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    target = tmp_path / "names.json"
    stale = tmp_path / f".names.json.{gone.pid}.0123456789abcdef.tmp"
    live = tmp_path / f".names.json.{os.getpid()}.fedcba9876543210.tmp"  # a write under way
    other = tmp_path / f".status.json.{gone.pid}.0123456789abcdef.tmp"  # another file's
    for p in (stale, live, other):
        p.write_bytes(b"half")
    atomic_write(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert not stale.exists() and live.exists() and other.exists()
