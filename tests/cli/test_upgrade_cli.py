"""``glucoledger upgrade`` as an operator runs it: a real process on a folder made before state
rule set 2 and access record format 2."""

from __future__ import annotations

from pathlib import Path

from glucoledger.node.service import Node
from glucoledger.state.accounts import access_records, rules

from .test_cli import run


def test_an_old_folder_upgrades_once_and_then_says_there_is_nothing_to_do(tmp_path: Path
                                                                           ) -> None:
    folder = tmp_path / "clinic"
    Node.init(folder, rules=1, access_records=1).close()
    wrong = run("upgrade", "--data", str(folder), "--rules", "6")
    assert wrong.returncode == 2 and "--rules is one of 1, 2, 3, 4, 5" in wrong.stderr, wrong.stderr
    done = run("upgrade", "--data", str(folder))
    assert done.returncode == 0, done.stderr
    assert "now on state rule set 5, access record format 2" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    with Node(folder, workers=1) as node:
        assert (rules(node.state), access_records(node.state)) == (5, 2)
        height = node.store.height()
    again = run("upgrade", "--data", str(folder))
    assert again.returncode == 0 and "nothing to upgrade" in again.stdout, again.stdout
    back = run("upgrade", "--data", str(folder), "--rules", "1")
    assert back.returncode == 2 and "versions only go up" in back.stderr, back.stderr
    with Node(folder, workers=1) as node:
        assert node.store.height() == height  # the refusals wrote nothing
    assert run("verify", "--data", str(folder)).returncode == 0


def test_a_consortium_member_is_sent_to_the_proposal(tmp_path: Path) -> None:
    folder = tmp_path / "member"
    Node.init(folder, rules=1).close()
    (folder / "member.txt").write_text("org-0\n")
    out = run("upgrade", "--data", str(folder))
    assert out.returncode == 2 and "consortium propose upgrade" in out.stderr, out.stderr
    mixed = run("consortium", "propose", "threshold", "--threshold", "1", "--rules", "2",
                "--out", str(tmp_path / "p.cbor"), "--data", str(folder))
    assert mixed.returncode == 2 and "go with `propose upgrade` only" in mixed.stderr
