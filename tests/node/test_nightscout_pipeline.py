"""The Nightscout upload pipeline: groups of POSTs, deduplication held by the vault's tags."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.api.context import ServerContext
from glucoledger.node.accounts import create_account, identity, keys_of
from glucoledger.node.nightscout import Binding, NightscoutService
from glucoledger.node.service import Node

NOW = int(time.time() * 1000)


class Site:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.node: Node | None = Node.init(folder)
        self.open()

    def open(self) -> None:
        if self.node is None:
            self.node = Node(self.folder)
        self.ctx = ServerContext.create(self.node)

    def close(self) -> None:
        self.ctx.close()
        assert self.node is not None
        self.node.close()
        self.node = None

    @property
    def ns(self) -> NightscoutService:
        return self.ctx.svc.nightscout  # type: ignore[no-any-return]

    def vault_rows(self) -> int:
        return int(self.ctx.svc.vault.count())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path / "node")
    assert s.node is not None
    create_account(s.node, "t", "trusted")
    for name in ("ann", "bob"):
        create_account(s.node, name, "patient", trusted="t")
        s.ns.add_uploader(name, f"{name}-uploader-secret")
    yield s
    if s.node is not None:
        s.close()


def _binding(site: Site, name: str) -> Binding:
    digest = hashlib.sha1(f"{name}-uploader-secret".encode()).hexdigest()
    return site.ns.authenticate(digest, None)


def _sgv(t: int, value: int = 120) -> dict[str, object]:
    return {"type": "sgv", "sgv": value, "date": t, "device": "xDrip-G6"}


def test_concurrent_posts_of_the_same_document_store_it_once(site: Site) -> None:
    ann = _binding(site, "ann")
    t = NOW - 3_600_000
    futures = [site.ns.post(ann, "entries", [_sgv(t)], NOW) for _ in range(6)]
    answers = [f.result(30) for f in futures]
    assert len({a[0]["_id"] for a in answers}) == 1  # one identity, echoed to every POST
    assert site.vault_rows() == 1


def test_many_patients_posting_at_once_all_land(site: Site) -> None:
    bindings = [_binding(site, "ann"), _binding(site, "bob")]
    errors: list[BaseException] = []

    def phone(k: int) -> None:
        try:
            for i in range(10):
                t = NOW - 7_200_000 + i * 300_000 + k
                site.ns.upload(bindings[k % 2], "entries", [_sgv(t, 100 + i)], NOW)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=phone, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert site.vault_rows() == 80


def test_a_refused_document_leaves_no_tag_so_a_fixed_retry_is_stored(site: Site) -> None:
    ann = _binding(site, "ann")
    t = NOW - 600_000
    bad = dict(_sgv(t + 1), date=1000)  # 1970: an unset clock; cannot be stored
    echo = site.ns.upload(ann, "entries", [_sgv(t), bad], NOW)
    assert len(echo) == 2 and "glucoledger" not in echo[0]
    assert echo[1]["glucoledger"]["stored"] is False
    assert "2000..2100" in echo[1]["glucoledger"]["reason"]
    assert site.vault_rows() == 1
    echo = site.ns.upload(ann, "entries", [_sgv(t), _sgv(t + 60_000)], NOW)
    assert len(echo) == 2 and site.vault_rows() == 2


def _bad(t: int, i: int) -> dict[str, object]:
    """Three documents no server could keep: no number, an unset clock, a year ahead."""
    return [{"type": "sgv", "sgv": "high-ish", "date": t},
            {"type": "sgv", "sgv": 120, "date": 5},
            {"type": "sgv", "sgv": 120, "date": NOW + 365 * 86_400_000}][i]


def test_a_batch_of_100_with_3_bad_stores_97_answers_100_and_a_retry_adds_nothing(
        site: Site) -> None:
    ann = _binding(site, "ann")
    t0 = NOW - 100 * 300_000
    body = [_sgv(t0 + i * 300_000, 100 + i) for i in range(100)]
    for n, i in enumerate((10, 50, 90)):
        body[i] = _bad(body[i]["date"], n)  # type: ignore[arg-type]
    echo = site.ns.upload(ann, "entries", body, NOW)
    assert len(echo) == 100
    refused = [i for i, e in enumerate(echo) if "glucoledger" in e]
    assert refused == [10, 50, 90]
    assert all(echo[i]["sgv"] == body[i]["sgv"] for i in range(100) if i not in refused)
    assert site.node is not None
    patient = identity(site.node, "ann")
    reader = site.ns.read(ann, "entries", _query(site, 1000))
    assert len(reader) == 97
    rows = site.vault_rows()
    again = site.ns.upload(ann, "entries", body, NOW)
    assert [e["_id"] for e in again] == [e["_id"] for e in echo]
    assert site.vault_rows() == rows
    assert len(site.ns.read(ann, "entries", _query(site, 1000))) == 97
    log = site.ns.refusals.of(patient.id)
    assert [r.index for r in log] == [10, 50, 90, 10, 50, 90]
    assert "not a number" in log[0].reason and "ahead" in log[2].reason


def _query(site: Site, count: int):  # type: ignore[no-untyped-def]
    from glucoledger.interop.nsquery import parse_query

    return parse_query("entries", [("count", str(count))])


def test_seen_documents_stay_seen_across_a_restart(site: Site) -> None:
    ann = _binding(site, "ann")
    t = NOW - 900_000
    first = site.ns.upload(ann, "entries", [_sgv(t)], NOW)
    site.close()
    site.open()
    again = site.ns.upload(_binding(site, "ann"), "entries", [_sgv(t)], NOW)
    assert again[0]["_id"] == first[0]["_id"] and site.vault_rows() == 1


def test_erasure_takes_the_tags_with_the_batches(site: Site) -> None:
    ann = _binding(site, "ann")
    t = NOW - 1_200_000
    site.ns.upload(ann, "entries", [_sgv(t)], NOW)
    assert site.node is not None
    patient = identity(site.node, "ann")
    site.ctx.erase(patient.id, keys_of(site.node, patient, [0]), ["cgm"])
    assert site.vault_rows() == 0
    assert site.ctx.svc.vault.tagged(
        [site.ns._key(patient.id, "entries", f"sgv|{t}")]) == set()


def test_a_retry_after_a_failed_commit_stores_the_documents(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ordered log refuses one append (as a full disk does: StorageError, 503, nothing
    acknowledged); the failed attempt's vault row stays pending with the documents' tags.
    The uploader's retry must store them, not answer them as repeats (found by the disk-full
    trial under ``serve``: an acknowledged retry that was never committed)."""
    from glucoledger.errors import StorageError

    ann = _binding(site, "ann")
    assert site.node is not None
    orderer = site.node.orderer
    real = orderer.append
    calls = {"n": 0}

    def fail_once(entries):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise StorageError("disk full while appending to the ordered log (injected)")
        return real(entries)

    t = NOW - 5_400_000
    docs = [_sgv(t + k * 300_000, 100 + k) for k in range(3)]
    monkeypatch.setattr(orderer, "append", fail_once)
    with pytest.raises(StorageError):
        site.ns.upload(ann, "entries", docs, NOW)
    answer = site.ns.upload(ann, "entries", docs, NOW)
    assert len(answer) == 3 and calls["n"] >= 2
    vault = site.ctx.svc.vault
    rows = vault.batches()
    assert [r.status for r in rows] == ["committed"], rows  # the failed attempt is dropped
    patient = identity(site.node, "ann")
    tags = [site.ns._key(patient.id, "entries", f"sgv|{d['date']}") for d in docs]
    assert {r.ct for r in vault.tag_owners(tags).values()} == {rows[0].ct}
    got = site.ns.read(ann, "entries", _query(site, 10))
    assert sorted(int(d["date"]) for d in got) == [int(d["date"]) for d in docs]  # type: ignore[call-overload]
    assert site.ns.upload(ann, "entries", docs, NOW) == answer and len(vault.batches()) == 1
