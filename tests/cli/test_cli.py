"""The command as a user runs it: a real process, real folders, exit codes and messages."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "400",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "glucoledger", *args], capture_output=True,
                          text=True, env=full_env, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("cli") / "demo"
    r = run("demo", "--data", str(d))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "refused" in r.stdout
    return d, r.stdout


@pytest.fixture(scope="module")
def demo_dir(demo_run: tuple[Path, str]) -> Path:
    return demo_run[0]


def test_the_demo_reads_as_a_story(demo_run: tuple[Path, str]) -> None:
    """Names, not ids; whole messages, not cut; counts in English; words, not flags."""
    d, out = demo_run
    import json
    import re

    people = json.loads(run("account", "list", "--json", "--data", str(d)).stdout)
    assert {"alice", "rosa", "dr-lee", "nurse-kim", "dr-er", "sim-1"} <= {
        p["name"] for p in people}
    for p in people:
        assert p["id"][:12] not in out, f"{p['name']}'s id shown instead of her name"
    ids = {p["id"] for p in people}
    devices = json.loads(run("device", "list", "--json", "--data", str(d)).stdout)
    assert {x["serial"] for x in devices} >= {"ALICE-CGM", "ALICE-PEN", "SIM-0001"}
    for x in devices:
        assert x["id"] not in out, f"device {x['serial']} shown by id"
    # 64 hex digits may be a hash (a root, a blob's SHA-256), never a named party's id.
    assert not ids & set(re.findall(r"\b[0-9a-f]{64}\b", out))
    # Whole messages (a cut one once read "ask the patien"), and no ellipsis of a cut.
    assert "has granted you nothing: ask the patient for a grant" in out
    assert "the patient revoked this grant; ask her for a new one" in out
    assert "…" not in out
    for wrong in ("1 batches", "1 sealed batches", "EMERGENCY", "1 records", "permit", "deny:"):
        assert wrong not in out, wrong


#: Lines the demo keeps whole on purpose, to be copied: the node's key, the signed note's
#: signature line, the command to run next.
_WHOLE = ("node key (verifier): ", "\u2014 ", "Next: glucoledger ")


def _words(text: str) -> set[str]:
    """Words of prose and table cells: letters only, 3 or more, not a run of hex digits."""
    import re

    out = set()
    for chunk in re.split(r"[\s\u2500-\u257f]+", text):
        word = chunk.strip(".,:;()[]'\"")
        if re.fullmatch(r"[A-Za-z]{3,}", word) and not re.fullmatch(r"[a-f]+", word):
            out.add(word)
    return out


def test_the_demo_fits_an_80_column_terminal_without_cutting_a_word(
        demo_run: tuple[Path, str], tmp_path: Path) -> None:
    """At 80 columns the story wraps between words and its tables fit; every word of the
    narrow run is a word of the wide one (a cut word, "patien", would not be), or a word of
    the project's own text (the runs are minutes apart, and the simulated data, and so the
    alerts named, "urgent low", may differ between them)."""
    r = run("demo", "--data", str(tmp_path / "narrow"), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    long = [line for line in r.stdout.splitlines()
            if len(line) > 80 and not line.startswith(_WHOLE)]
    assert long == [], long
    source = Path(__file__).resolve().parents[2] / "src" / "glucoledger"
    ours = {w for f in source.rglob("*.py") for w in re.split(r"[^A-Za-z]+", f.read_text())}
    cut = _words(r.stdout) - _words(demo_run[1]) - ours
    assert cut == set(), f"words cut at 80 columns: {sorted(cut)}"


def test_demo_then_verify(demo_dir: Path) -> None:
    r = run("verify", "--data", str(demo_dir))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    r = run("verify", "--data", str(demo_dir), "--from-checkpoint",
            str(demo_dir / "checkpoint.txt"))
    assert r.returncode == 0 and "consistent with your checkpoint" in r.stdout, r.stderr


def test_data_dir_from_environment(demo_dir: Path) -> None:
    r = run("blocks", env={"GLUCOLEDGER_DATA": str(demo_dir)})
    assert r.returncode == 0 and "height" in r.stdout, r.stderr


def test_checkpoint_verifies_with_printed_vkey(demo_dir: Path, tmp_path: Path) -> None:
    vkey = run("checkpoint", "--data", str(demo_dir), "--vkey").stdout.strip()
    note = run("checkpoint", "--data", str(demo_dir)).stdout
    from glucoledger.ledger.checkpoint import NoteVerifier, parse_note

    parse_note(note.encode()).verify([NoteVerifier.parse(vkey)])


def test_tampered_store_fails_verify_naming_the_spot(demo_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(demo_dir, d)
    db = sqlite3.connect(d / "chain.db")
    (env,) = db.execute("SELECT envelope FROM txs WHERE idx = 3").fetchone()
    bad = bytearray(env)
    bad[len(bad) // 2] ^= 1
    db.execute("UPDATE txs SET envelope = ? WHERE idx = 3", (bytes(bad),))
    db.commit()
    db.close()
    r = run("verify", "--data", str(d))
    assert r.returncode == 3
    assert "first bad spot" in r.stderr and "transaction index" in r.stderr
    assert "3" in r.stderr and "tamper" in r.stderr


def test_verify_names_every_damaged_transaction(demo_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(demo_dir, d)
    db = sqlite3.connect(d / "chain.db")
    rows = db.execute("SELECT height, MIN(idx) FROM txs GROUP BY height ORDER BY height"
                      ).fetchall()
    assert len(rows) >= 2, rows
    damaged = [rows[0], rows[-1]]  # in the first block and in the last
    for _, idx in damaged:
        (env,) = db.execute("SELECT envelope FROM txs WHERE idx = ?", (idx,)).fetchone()
        bad = bytearray(env)
        bad[len(bad) // 2] ^= 1
        db.execute("UPDATE txs SET envelope = ? WHERE idx = ?", (bytes(bad), idx))
    db.commit()
    db.close()
    r = run("verify", "--data", str(d))
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert "first bad spot" in r.stderr and "every bad spot (2)" in r.stderr, r.stderr
    listed = r.stderr.split("every bad spot (2)")[1]
    import re

    for height, idx in damaged:  # one table row each: block, transaction, what
        assert re.search(rf"\b{height}\s*│\s*{idx}\s*│\s*transaction envelope", listed), \
            r.stderr
    assert "could not be checked" in r.stderr


def test_errors_are_actionable(tmp_path: Path) -> None:
    r = run("verify", "--data", str(tmp_path / "nothing"))
    assert r.returncode == 1
    assert "glucoledger init" in r.stderr  # says what to do
    assert "Traceback" not in r.stderr
    r = run("account", "create", "x y", "--data", str(tmp_path / "nothing"))
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_keygen_refuses_short_password(tmp_path: Path) -> None:
    r = run("keygen", "--out", str(tmp_path / "k"), "--password-env", "PW", env={"PW": "short"})
    assert r.returncode == 2 and "at least 8" in r.stderr
    r = run("keygen", "--out", str(tmp_path / "k"), "--password-env", "PW",
            env={"PW": "long enough pw"})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_verify_checks_the_vault_too(demo_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(demo_dir, d)
    from glucoledger.vault.blobstore import FsBlobStore

    store = FsBlobStore(d / "blobs")
    blob, offset, length = store.locate(sorted(store.names())[3])
    data = bytearray(blob.read_bytes())
    data[offset + length // 2] ^= 0x10
    blob.write_bytes(bytes(data))
    r = run("verify", "--data", str(d))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "blob of batch" in r.stderr and "restore" in r.stderr


def test_data_commands_know_address_book_patients(demo_dir: Path) -> None:
    r = run("batches", "--data", str(demo_dir), "--patient", "alice")
    assert r.returncode == 0 and "device-signed" in r.stdout.replace("\n", ""), r.stderr
    r = run("batches", "--data", str(demo_dir), "--patient", "dr-lee")
    assert r.returncode == 2 and "not a patient" in r.stderr


def test_emergency_command_asks_and_approves_through_the_node_functions(demo_dir: Path,
                                                                         tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(demo_dir, d)
    r = run("emergency", "--clinician", "nurse-kim", "--patient", "alice", "--trusted",
            "carer-sam", "--hours", "2", "--reason", "found confused", "--data", str(d))
    assert r.returncode == 4 and "not a trusted party" in r.stderr, r.stdout + r.stderr
    r = run("emergency", "--clinician", "nurse-kim", "--patient", "alice", "--trusted", "rosa",
            "--hours", "2", "--reason", "found confused", "--data", str(d))
    assert r.returncode == 0 and "open for 2 hours" in r.stdout, r.stderr
    r = run("audit", "--patient", "alice", "--data", str(d))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "│" in line and "emergency" in line]
    assert "nurse-kim" in rows[0] and "EMERGENCY emergency" not in r.stdout, r.stdout


def test_a_pipe_another_user_made_at_the_out_path_gets_nothing(demo_dir: Path,
                                                              tmp_path: Path) -> None:
    """Another user makes a pipe where a patient's report is to go (``mkfifo
    /tmp/alice.html`` in a shared folder) and reads it: writing a pipe in place (for
    ``--out /dev/stdout``) handed them the whole report. Refused, nothing written, the pipe
    left as it was; the user's own pipe still works."""
    import stat
    import threading

    if os.geteuid() != 0:
        pytest.skip("a pipe of another user needs root to make (chown)")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    theirs = shared / "alice.html"
    os.mkfifo(theirs)
    os.chown(theirs, 65534, 65534)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(theirs.read_bytes()), daemon=True)
    reader.start()
    r = run("report", "--patient", "alice", "--treatments", "--out", str(theirs),
            "--data", str(demo_dir))
    # the reader's open returns once a writer opened: this test's, if the command did not
    import errno
    try:
        os.close(os.open(theirs, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:  # no reader left: the command's write had released it
        assert exc.errno == errno.ENXIO
    reader.join(30)
    assert got == [b""], f"the other user read {len(got[0]) if got else 0} bytes"
    assert r.returncode != 0 and "another user (uid 65534)" in r.stderr + r.stdout, r.stderr
    assert "nothing was written" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    assert stat.S_ISFIFO(os.lstat(theirs).st_mode) and os.lstat(theirs).st_uid == 65534
    assert sorted(p.name for p in shared.iterdir()) == ["alice.html"]
    # another user's link to a device of root's (/dev/kmsg would put the report in the
    # kernel log; /dev/full stands in for it): not followed, said so
    link = shared / "k.html"
    link.symlink_to("/dev/full")
    os.lchown(link, 65534, 65534)
    r = run("report", "--patient", "alice", "--out", str(link), "--data", str(demo_dir))
    assert r.returncode != 0 and "a link of another user (uid 65534)" in r.stderr + r.stdout, \
        r.stderr + r.stdout
    assert os.readlink(link) == "/dev/full"
    link.unlink()
    # the user's own pipe (``--out`` into ``| gzip`` or a process substitution): written
    mine = shared / "mine.html"
    os.mkfifo(mine)
    got.clear()
    reader = threading.Thread(target=lambda: got.append(mine.read_bytes()), daemon=True)
    reader.start()
    r = run("report", "--patient", "alice", "--treatments", "--out", str(mine),
            "--data", str(demo_dir))
    reader.join(60)
    assert r.returncode == 0, r.stderr
    assert got and got[0].startswith(b"<!DOCTYPE html>")


def test_a_temporary_name_planted_at_the_out_path_is_never_written(demo_dir: Path,
                                                                   tmp_path: Path) -> None:
    """The temporary file ``--out`` is written through was ``.<name>.<pid>.tmp``, opened
    with O_CREAT|O_TRUNC: whoever could write the folder planted that name (pids are
    sequential: a few hundred names cover the next commands) as a link to a file of the
    user's, which the report then overwrote (as a file of their own, it made the report
    theirs: mode 666, their uid). The link is planted here by the command's own process,
    with its pid, just before the command runs (nothing in the product)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    out = shared / "r.html"
    plant = (f"import os, runpy, sys; os.symlink({str(precious)!r}, "
             f"{str(shared)!r} + f'/.r.html.{{os.getpid()}}.tmp'); "
             "sys.argv = ['glucoledger', *sys.argv[1:]]; "
             "runpy.run_module('glucoledger', run_name='__main__', alter_sys=True)")
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "400"}
    r = subprocess.run([sys.executable, "-c", plant, "report", "--patient", "alice",
                        "--treatments", "--out", str(out), "--data", str(demo_dir)],
                       capture_output=True, text=True, env=full_env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert precious.read_text() == "the user's own file\n"
    assert not out.is_symlink() and out.read_text().startswith("<!DOCTYPE html>")


def test_report_views_and_units(demo_dir: Path, tmp_path: Path) -> None:
    # dr-lee holds a summary grant: the report has the aggregate parts only.
    out = tmp_path / "lee.html"
    r = run("report", "--patient", "alice", "--as", "dr-lee", "--view", "summary",
            "--units", "mmol/L", "--out", str(out), "--png", "--data", str(demo_dir))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert 'class="daily"' not in page and "Glycemia Risk Index" in page and "mmol/L" in page
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    # alice herself: the full report with daily profiles, insulin and carbs.
    mine = tmp_path / "alice.html"
    r = run("report", "--patient", "alice", "--treatments", "--out", str(mine),
            "--data", str(demo_dir))
    assert r.returncode == 0, r.stderr
    assert '<figure class="day"' in mine.read_text() and 'class="bolus"' in mine.read_text()
    # A raw report under a summary grant is denied, audited, and says why; no traceback.
    r = run("report", "--patient", "alice", "--as", "dr-lee", "--out", str(tmp_path / "x.html"),
            "--data", str(demo_dir))
    assert r.returncode == 4 and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "x.html").exists()
    r = run("report", "--patient", "alice", "--view", "everything", "--data", str(demo_dir))
    assert r.returncode == 2 and "choose raw or summary" in r.stderr + r.stdout


def test_nightscout_reader_at_the_console_only_invites(tmp_path: Path) -> None:
    """Issue 10: nobody's key signs what its holder did not ask for. The console records the
    patient's invitation and prints no token; the reader then mints her own."""
    d = tmp_path / "n"
    for args in (("init",), ("account", "create", "rosa", "--kind", "trusted"),
                 ("account", "create", "alice", "--kind", "patient", "--trusted", "rosa"),
                 ("account", "create", "dr-kim", "--kind", "clinician")):
        assert run(*args, "--data", str(d)).returncode == 0
    r = run("nightscout-reader", "dr-kim", "alice", "--data", str(d))
    assert r.returncode == 0 and "invited dr-kim" in r.stdout and "token (shown" not in r.stdout
    r = run("nightscout-reader", "alice", "alice", "--data", str(d))
    assert r.returncode == 2 and "invite a clinician" in r.stdout + r.stderr

    from glucoledger.node.accounts import identity
    from glucoledger.node.readers import ReaderInvites
    from glucoledger.node.services import NodeServices

    with NodeServices.open(d) as svc:
        invites = ReaderInvites(svc.node, svc.nightscout)
        kim = identity(svc.node, "dr-kim")
        assert invites.pending(kim) == ["alice"]
        assert invites.mint(kim, "alice")  # her own token, once
        assert invites.pending(kim) == []
