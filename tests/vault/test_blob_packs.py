"""FsBlobStore packs: a group's blobs in one file, content-addressed, each destroyable alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glucoledger.crypto import sha256
from glucoledger.errors import NotFoundError
from glucoledger.vault.blobstore import FsBlobStore


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_group_is_one_file_and_each_blob_reads_back(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "b")
    blobs = [os.urandom(n) for n in (1, 100, 5000, 0, 77)]
    names = store.put_many(blobs)
    assert names == [sha256(b) for b in blobs]
    assert len(_files(tmp_path / "b")) == 1
    for name, blob in zip(names, blobs, strict=True):
        assert store.get(name) == blob and store.exists(name)
    # A fresh store over the same folder (a restart, another process) finds them too.
    again = FsBlobStore(tmp_path / "b")
    assert sorted(again.names()) == sorted(set(names))
    assert all(again.get(n) == b for n, b in zip(names, blobs, strict=True))
    assert store.put_many(blobs) == names and len(_files(tmp_path / "b")) == 1  # no-op


def test_delete_destroys_one_blob_and_the_pack_when_empty(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "b")
    blobs = [os.urandom(64) for _ in range(3)]
    names = store.put_many(blobs)
    [pack] = _files(tmp_path / "b")
    store.delete(names[1])
    data = pack.read_bytes()
    assert blobs[1] not in data and names[1] not in data  # the bytes, not just the name
    assert blobs[0] in data and blobs[2] in data
    with pytest.raises(NotFoundError):
        store.get(names[1])
    fresh = FsBlobStore(tmp_path / "b")
    assert not fresh.exists(names[1]) and fresh.get(names[2]) == blobs[2]
    store.delete(names[0])
    store.delete(names[2])
    assert _files(tmp_path / "b") == []  # the last one gone, the pack goes too
    store.delete(names[2])  # absent is fine


def test_groups_append_to_one_pack_and_a_restart_starts_another(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "b")
    first = store.put_many([b"one", b"two"])
    second = store.put_many([b"three"])
    assert len(_files(tmp_path / "b")) == 1
    store.close()
    again = FsBlobStore(tmp_path / "b")
    third = again.put_many([b"four"])
    assert len(_files(tmp_path / "b")) == 2  # never appends to a pack it did not create
    for n, b in zip([*first, *second, *third], [b"one", b"two", b"three", b"four"],
                    strict=True):
        assert again.get(n) == b and FsBlobStore(tmp_path / "b").get(n) == b


def test_a_reader_sees_what_a_writer_appends_later(tmp_path: Path) -> None:
    writer = FsBlobStore(tmp_path / "b")
    writer.put_many([b"early"])
    reader = FsBlobStore(tmp_path / "b")
    assert reader.exists(sha256(b"early"))
    late = writer.put_many([b"late"])[0]
    assert reader.get(late) == b"late"  # the grown pack is scanned again from where it stopped


def test_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "b")
    blobs = [os.urandom(100), os.urandom(100)]
    names = store.put_many(blobs)
    [pack] = _files(tmp_path / "b")
    pack.write_bytes(pack.read_bytes()[:-10])  # a crash in the middle of the last record
    fresh = FsBlobStore(tmp_path / "b")
    assert fresh.get(names[0]) == blobs[0]
    assert not fresh.exists(names[1])


def test_loose_and_packed_blobs_live_side_by_side(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "b")
    loose = store.put(b"loose")
    packed = store.put_many([b"packed"])[0]
    assert store.locate(loose)[0] == store.path(loose)
    assert store.locate(packed)[0].suffix == ".pack"
    assert sorted(store.names()) == sorted([loose, packed])
    store.delete(loose)
    assert not store.path(loose).exists() and store.get(packed) == b"packed"


def test_a_loose_blob_packed_again_is_destroyed_in_both_places(tmp_path: Path) -> None:
    """put_many does not stat for a loose copy: the same bytes may then live twice, and
    delete destroys both (no copy of an erased batch survives)."""
    store = FsBlobStore(tmp_path / "b")
    digest = store.put(b"twice")
    assert store.put_many([b"twice"]) == [digest]
    assert store.locate(digest)[0].suffix == ".pack" and store.path(digest).is_file()
    assert store.get(digest) == b"twice" and list(store.names()).count(digest) == 1
    store.delete(digest)
    assert not store.exists(digest) and not store.path(digest).exists()
    with pytest.raises(NotFoundError):
        store.get(digest)
    other = FsBlobStore(tmp_path / "b")  # nor does a fresh scan of the packs find it
    assert not other.exists(digest)
    assert all(b"twice" not in p.read_bytes() for p in _files(tmp_path / "b"))
