"""Day commitments at ingestion (node/zkdaily.py): as CGM data arrives, each complete local
day of the patient's gets its ``zk.day``, recorded by a worker thread off the upload path;
an incomplete day does not; a late reading stays out of its day's commitment and ``verify``
still finds both commitments opening to the same readings. Real node, vault and ledger; and
a real ``serve`` process taking Nightscout uploads."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, date
from pathlib import Path

import httpx
import pytest

from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node.service import Node
from glucoledger.node.services import NodeServices
from glucoledger.node.vaultcheck import verify_vault, verify_vault_folder
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims, window_bounds
from glucoledger.node.zkdaily import GRACE_MS, ZkDayCommitter
from glucoledger.state.zkdays import zk_day_key
from glucoledger.zk.toolchain import PROFILES, Toolchain

from ..servers import ServeProcess

DAY = 86_400_000
HOUR = 3_600_000
D0 = 1_764_547_200_000  # 2025-12-01T00:00Z


def _batch(t0: int, n: int, step: int = 300_000) -> Batch:
    recs = [CgmReading(t0 + i * step, 0, 100 + i % 50, "Flat") for i in range(n)]
    return Batch("cgm", tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))


def _until(check: object, what: str, timeout: float = 60) -> None:
    """Wait for the worker (not a timing assertion: only a bound on a hang)."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not done within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def services(world: World, monkeypatch: pytest.MonkeyPatch) -> NodeServices:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("GLUCOLEDGER_ZK_PROFILE", "test")
    svc = NodeServices.of(world.node, fsync=False)
    yield svc  # type: ignore[misc]
    svc.close()


def test_complete_days_are_committed_as_data_arrives(
        world: World, services: NodeServices) -> None:
    alice = world.add_patient("alice")
    dev = world.add_device("SN-A", patient=alice)
    zk = ZkClaims(world.node, services.vault, Toolchain(PROFILES["test"]))
    committer = services.commit_zk_days(delay=0.05)
    assert services.ingest.listeners == [committer.arrived]
    ingest = services.ingest

    # Day 1 whole, day 2 until 02:00 of day 3: day 1 is complete (data reaches more than 3 h
    # past its end), day 2 is not yet (its end + 3 h is 03:00 of day 3).
    ingest.ingest_batches([_batch(D0, 288 * 2 + 24)], patient=alice.id, uploader=dev.id,
                          signer=dev.key, batch_size=96)
    _until(lambda: zk.record(alice.id, D0) is not None, "day 1's commitment")
    assert zk.record(alice.id, D0 + DAY) is None
    before = world.node.state.get(zk_day_key(alice.id, D0))

    # More data, to 04:00 of day 3: day 2 becomes complete; day 1 is not committed again.
    ingest.ingest_batches([_batch(D0 + 2 * DAY + 2 * HOUR, 25)], patient=alice.id,
                          uploader=dev.id, signer=dev.key)
    _until(lambda: zk.record(alice.id, D0 + DAY) is not None, "day 2's commitment")
    assert world.node.state.get(zk_day_key(alice.id, D0)) == before
    assert zk.record(alice.id, D0 + 2 * DAY) is None

    # A late backfill for day 1 (00:01, a slot its commitment had filled from 00:00):
    # stored and committed by its own data.commit, outside day 1's zk.day; both
    # commitments still open to the same readings.
    ingest.ingest_batches([_batch(D0 + 7 * 60_000, 1)], patient=alice.id,
                          uploader=dev.id, signer=dev.key)
    committer.close()  # one last pass: nothing new is complete
    assert world.node.state.get(zk_day_key(alice.id, D0)) == before
    report = verify_vault(world.node.store, services.vault)
    assert report.zk_days == 2 and report.zk_unchecked == ()


def test_a_day_committed_while_an_upload_is_settling_holds_what_verify_recomputes(
        world: World, services: NodeServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found under load (four uploaders backfilling through ``serve``): a day's commitment
    computed while an upload of that day was ordered but not yet settled in the vault left
    its readings out, and ``verify`` (which counts every batch ordered before the zk.day)
    reported the day as tampered. The upload is held between the ledger and the vault's
    settle here, so the commitment is asked for in exactly that moment."""
    alice = world.add_patient("alice")
    dev = world.add_device("SN-A", patient=alice)
    zk = ZkClaims(world.node, services.vault, Toolchain(PROFILES["test"]))
    ingest = services.ingest
    start, end = window_bounds(date(2025, 12, 1), UTC, zk.profile)  # the test profile's
    slots = (end - start) // 300_000  # window: the day's first 10 five-minute slots
    ingest.ingest_batches([_batch(D0, slots // 2)], patient=alice.id, uploader=dev.id,
                          signer=dev.key)  # the first half of the window, settled
    ordered, go = threading.Event(), threading.Event()
    settle = services.vault.settle

    def held_settle(committed: list[tuple[bytes, int]], dropped: list[bytes]) -> None:
        ordered.set()  # the data.commit is in a block now
        assert go.wait(60)
        settle(committed, dropped)

    monkeypatch.setattr(services.vault, "settle", held_settle)
    upload = threading.Thread(target=lambda: ingest.ingest_batches(
        [_batch(D0 + slots // 2 * 300_000, slots)], patient=alice.id, uploader=dev.id,
        signer=dev.key))
    upload.start()
    assert ordered.wait(60), "the upload was never ordered"
    day = threading.Thread(target=lambda: zk.record_windows([(alice.id, start, end)]))
    day.start()
    day.join(0.5)  # not a timing assertion: the commitment waits for the settle, or not
    go.set()
    upload.join(60)
    day.join(60)
    rec = zk.record(alice.id, D0)
    assert rec is not None
    report = verify_vault(world.node.store, services.vault)  # raises on a mismatch
    assert report.zk_days == 1
    # ... and the day holds the readings of both uploads
    assert all(zk.slots(alice.id, start, end, before=rec["index"]))


def test_an_upload_ordered_while_a_day_is_computed_comes_after_its_commitment(
        world: World, services: NodeServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the same race: an upload of the day ordered between the reading of
    the day's rows and the ``zk.day`` was counted by ``verify`` and missing from the
    commitment. The commitment is held after it read the rows; the upload waits for it."""
    alice = world.add_patient("alice")
    dev = world.add_device("SN-A", patient=alice)
    zk = ZkClaims(world.node, services.vault, Toolchain(PROFILES["test"]))
    ingest = services.ingest
    start, end = window_bounds(date(2025, 12, 1), UTC, zk.profile)
    slots = (end - start) // 300_000
    ingest.ingest_batches([_batch(D0, slots // 2)], patient=alice.id, uploader=dev.id,
                          signer=dev.key)
    computing, go = threading.Event(), threading.Event()
    salt = zk.salt

    def held_salt(patient: bytes, at: int) -> int:
        computing.set()  # the rows are read: the body is being made
        assert go.wait(60)
        return salt(patient, at)

    monkeypatch.setattr(zk, "salt", held_salt)
    day = threading.Thread(target=lambda: zk.record_windows([(alice.id, start, end)]))
    day.start()
    assert computing.wait(60)
    upload = threading.Thread(target=lambda: ingest.ingest_batches(
        [_batch(D0 + slots // 2 * 300_000, slots)], patient=alice.id, uploader=dev.id,
        signer=dev.key))
    upload.start()
    upload.join(0.5)  # not a timing assertion: the upload waits for the commitment, or not
    go.set()
    day.join(60)
    upload.join(60)
    assert zk.record(alice.id, start) is not None
    assert len(services.vault.batches(alice.id, "cgm")) == 2
    assert verify_vault(world.node.store, services.vault).zk_days == 1  # raises on a mismatch


def test_which_days_are_complete(world: World, services: NodeServices) -> None:
    alice = world.add_patient("alice")
    c = ZkDayCommitter(world.node, services.vault, PROFILES["test"], thread=False,
                       clock=lambda: D0 + 10 * DAY)
    assert c.complete_days(alice.id, D0 + HOUR, D0 + DAY + GRACE_MS - 1) == []
    assert [s for s, _ in c.complete_days(alice.id, D0 + HOUR, D0 + DAY + GRACE_MS)] == [D0]
    assert [s for s, _ in c.complete_days(alice.id, D0, D0 + 3 * DAY + GRACE_MS)] == [
        D0, D0 + DAY, D0 + 2 * DAY]
    # data stamped in the future (clock skew) completes nothing past the node's clock
    assert [s for s, _ in c.complete_days(alice.id, D0 + 8 * DAY, D0 + 30 * DAY)] == [
        D0 + 8 * DAY]  # the clock is at 00:00 of day 11: day 10 ended, but only just
    # no data in a complete day: nothing to commit, nothing sent
    c.arrived([(alice.id, "cgm", D0, D0 + 2 * DAY + GRACE_MS), (alice.id, "insulin", 0, 1)])
    assert c.run_pending() == 0


def test_serve_commits_days_of_nightscout_uploads(tmp_path: Path) -> None:
    """The real server (--demo), a Nightscout uploader posting old days of entries."""
    from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

    folder = tmp_path / "site"
    srv = ServeProcess(folder)
    now = int(time.time() * 1000)
    first = now - now % DAY - 30 * DAY  # a UTC day before the demo's 14 days of data
    entries = [{"type": "sgv", "sgv": 110 + i % 40, "direction": "Flat",
                "date": first + i * 300_000, "device": "xDrip-test"}
               for i in range(288 + 60)]  # the whole first day and 5 h of the next
    try:
        r = httpx.post(srv.url + "/api/v1/entries", json=entries, timeout=60, headers={
            "api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()})
        assert r.status_code == 200, r.text[:300]
    finally:
        out = srv.stop()
    assert "Traceback" not in out
    node = Node(folder)
    try:
        zkdays = {k: node.state.get(k) for k in node.state.keys("zkday/")}
    finally:
        node.close()
    starts = sorted(int(k.rsplit("/", 1)[1]) for k in zkdays)
    assert len(starts) == 1, starts  # the first day only: the next is not complete
    report = verify_vault_folder(folder)
    assert report.zk_days == 1
