"""The research side files sealed under the master key: nothing a participant told the node
at opt-in, and not the pseudonym secret, can be read from a copy of the folder without the
master key; files from before sealing are migrated and their plain copies removed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from glucoledger.crypto.seal import new_key
from glucoledger.errors import NotFoundError, StorageError
from glucoledger.node import deid
from glucoledger.node.research_store import (
    KEY_FILE,
    LEGACY_PROFILES,
    PROFILES_FILE,
    ResearchStore,
)

PROFILES = [deid.Profile("Ada Lovelace", "1985-03-02", "female", "NY", "10027", "T1D"),
            deid.Profile("Carl Ortiz", "1960-01-20", "male", "TX", "73301", "T2D")]
IDS = [bytes([i + 1]) * 32 for i in range(len(PROFILES))]


def _plain_values(p: deid.Profile) -> list[bytes]:
    # five bytes or more: random ciphertext holds none of them by chance (< 1e-9)
    return [v.encode() for v in (p.name, p.birth_date, p.zip, "Lovelace")]


def test_profiles_and_secret_on_disk_hold_no_plaintext(tmp_path: Path) -> None:
    master = new_key()
    store = ResearchStore(tmp_path, master)
    for pid, prof in zip(IDS, PROFILES, strict=True):
        store.set_profile(pid, prof)
    secret = store.secret()
    assert store.secret() == secret  # created once, then read back
    for name in (PROFILES_FILE, KEY_FILE):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        raw = path.read_bytes()
        assert secret not in raw and secret.hex().encode() not in raw
        for prof in PROFILES:
            for value in _plain_values(prof):
                assert value not in raw and value.lower() not in raw.lower(), (name, value)
        for pid in IDS:
            assert pid.hex().encode() not in raw  # not even who opted in
        for word in (b"birth_date", b"diabetes_type", b"female"):
            assert word not in raw, (name, word)
    assert not (tmp_path / LEGACY_PROFILES).exists()
    # the same folder under the same master key reads them back
    again = ResearchStore(tmp_path, master)
    assert [again.profile(i) for i in IDS] == PROFILES
    assert again.secret() == secret
    # and under another master key: a clear refusal, never a fresh secret or empty profiles
    before = {n: (tmp_path / n).read_bytes() for n in (PROFILES_FILE, KEY_FILE)}
    other = ResearchStore(tmp_path, new_key())
    with pytest.raises(StorageError, match="does not open under this node's master key"):
        other.profile(IDS[0])
    with pytest.raises(StorageError, match="does not open under this node's master key"):
        other.set_profile(IDS[0], PROFILES[1])
    with pytest.raises(StorageError, match="every pseudonym depends on it"):
        other.secret()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before  # refusals wrote nothing
    assert again.secret() == secret


def test_a_changed_byte_is_refused_not_read(tmp_path: Path) -> None:
    master = new_key()
    store = ResearchStore(tmp_path, master)
    store.set_profile(IDS[0], PROFILES[0])
    path = tmp_path / PROFILES_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="restore it from a backup"):
        store.profile(IDS[0])
    with pytest.raises(StorageError, match="restore it from a backup"):
        store.set_profile(IDS[1], PROFILES[1])
    assert path.read_bytes() == bytes(raw)  # a refused write changed nothing
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(StorageError, match="not a sealed research secret"):
        store.secret()


def test_unsealed_files_from_before_are_sealed_then_removed(tmp_path: Path) -> None:
    master = new_key()
    legacy_secret = os.urandom(32)
    (tmp_path / KEY_FILE).write_bytes(legacy_secret)
    legacy = tmp_path / LEGACY_PROFILES
    legacy.write_text(json.dumps({IDS[0].hex(): PROFILES[0].to_value()}))
    store = ResearchStore(tmp_path, master)
    # the same secret (pseudonyms and date shifts of earlier releases stay the same)
    assert store.secret() == legacy_secret
    assert legacy_secret not in (tmp_path / KEY_FILE).read_bytes()
    assert store.profile(IDS[0]) == PROFILES[0]
    assert not legacy.exists()
    raw = (tmp_path / PROFILES_FILE).read_bytes()
    assert b"Lovelace" not in raw and b"10027" not in raw
    # the migration happened once: a new profile joins the sealed file
    store.set_profile(IDS[1], PROFILES[1])
    assert [ResearchStore(tmp_path, master).profile(i) for i in IDS] == PROFILES
    with pytest.raises(NotFoundError, match="gave no research profile"):
        store.profile(b"\x09" * 32)
    assert store.forget(IDS[0]) and not store.forget(IDS[0])
    assert not store.has_profile(IDS[0]) and store.has_profile(IDS[1])


def test_a_damaged_legacy_file_is_refused_and_kept(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_PROFILES
    legacy.write_text("{not json")
    store = ResearchStore(tmp_path, new_key())
    with pytest.raises(StorageError, match="not valid JSON"):
        store.profile(IDS[0])
    assert legacy.read_text() == "{not json" and not (tmp_path / PROFILES_FILE).exists()


def test_a_pseudonym_is_judged_by_its_form_not_its_digits() -> None:
    ids = {"zip": ["10027"], "birth date": ["1985-03-02"], "account id": ["ab" * 32]}
    by_chance = "0" * 10 + "10027" + "0" * 17  # a keyed hash may hold a ZIP's digits
    assert deid.scan_identifiers([{"pid": by_chance}], ids) == []
    assert deid.scan_identifiers([{"pid": "ab" * 16}], ids) == ["row 0 field pid: account id"]
    assert deid.scan_identifiers([{"pid": "Ada Lovelace"}], ids) == [
        "row 0 field pid: not a pseudonym"]
    assert deid.scan_identifiers([{"trend": "10027"}], ids) != []  # elsewhere, still found


def test_her_details_are_deleted_once_she_is_in_no_study(tmp_path: Path) -> None:
    from tests.node.test_research import build_lab

    lab, vault = build_lab(tmp_path)
    try:
        a, b = lab.study(), lab.study(protocol="GL-EXER-2")
        p0 = lab.patients[0]
        ga, gb = lab.join(0, a), lab.join(0, b)
        lab.research.withdraw(p0.id, lab.keys(p0), ga)
        assert lab.research.store.has_profile(p0.id)  # still in study b
        lab.research.withdraw(p0.id, lab.keys(p0), gb)
        assert not lab.research.store.has_profile(p0.id)
        assert lab.research.store.has_profile(lab.patients[1].id)  # others' stay
        # joining again without details is refused and changes nothing; with them it works
        from glucoledger.errors import NotFoundError

        before = lab.node.state.snapshot()
        with pytest.raises(NotFoundError, match="give your details"):
            lab.research.join(p0.id, lab.keys(p0), a, ["cgm"], [], 10**13, None)
        assert lab.node.state.snapshot() == before
        lab.research.join(p0.id, lab.keys(p0), a, ["cgm"], [], 10**13, PROFILES[0])
        assert lab.research.store.profile(p0.id) == PROFILES[0]
        # a refused consent (a stream the study does not ask) keeps the details as they were
        from glucoledger.errors import RejectedError

        with pytest.raises(RejectedError):
            lab.research.join(p0.id, lab.keys(p0), a, ["carbs"], [], 10**13, PROFILES[1])
        assert lab.research.store.profile(p0.id) == PROFILES[0]
    finally:
        vault.close()
        lab.node.close()


def _opt_in_many(folder: str, master: bytes, start: int) -> None:
    store = ResearchStore(Path(folder), master)
    for n in range(start, start + 8):
        store.set_profile(n.to_bytes(32, "big"), PROFILES[n % 2])


def test_concurrent_processes_lose_no_opt_in(tmp_path: Path) -> None:
    """Read-modify-write under the lock file: four processes writing at once keep all 32."""
    import multiprocessing

    master = new_key()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_opt_in_many, args=(str(tmp_path), master, 8 * k))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ResearchStore(tmp_path, master)
    assert all(store.has_profile(n.to_bytes(32, "big")) for n in range(32))
