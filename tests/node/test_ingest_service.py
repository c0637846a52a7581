"""Ingest: refusals leave nothing behind; retries are idempotent; concurrency is exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from glucoledger.crypto import generate
from glucoledger.errors import (
    GlucoledgerError,
    OutOfRangeError,
    RejectedError,
    SignatureError,
)
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.ledger.tx import SignedTx
from glucoledger.node.devices import revoke_device
from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World
from glucoledger.state.devices import device_key
from glucoledger.vault.batch import Upload, prepare_upload
from tests.builds import STATE_COMPILED

T0 = 1_700_000_012_345


def _batch(n: int = 3, t0: int = T0) -> Batch:
    items = tuple(CgmReading(t0 + i * 300_000, 0, 100 + i) for i in range(n))
    return Batch("cgm", items, items[0].time_ms, items[-1].time_ms, n)


def _wide() -> Batch:
    """Two readings 367 days apart: a batch longer than a data.commit may span."""
    items = (CgmReading(T0 - 367 * 86_400_000, 0, 100), CgmReading(T0, 0, 101))
    return Batch("cgm", items, items[0].time_ms, items[1].time_ms, 2)


def _footprint(world: World, ingest: IngestService) -> tuple[Any, ...]:
    blobs = sorted(p.name for p in Path(world.node.data_dir, "blobs").rglob("*") if p.is_file())
    rows = ingest.vault._q("SELECT COUNT(*) FROM batches")[0][0]
    commits = sum(1 for t in _txs(world) if _is_commit_ok(t))
    return blobs, rows, commits, world.node.state.snapshot()


def _txs(world: World) -> list[Any]:
    return [t for h in range(world.node.store.height()) for t in world.node.store.txs_of_block(h)]


def _is_commit_ok(t: Any) -> bool:
    return b"data.commit" in t.envelope and t.decoded_result().ok


def _refused(world: World, ingest: IngestService, up: Upload, error: type, code: str) -> None:
    before = _footprint(world, ingest)
    with pytest.raises(error) as info:
        ingest.upload(up)
    assert info.value.code == code, info.value.message
    assert _footprint(world, ingest) == before


def test_every_refusal_changes_nothing(world: World, ingest: IngestService) -> None:
    alice, bob = world.add_patient("alice"), world.add_patient("bob")
    dev = world.add_device("SN-1", patient=alice)
    loose = world.add_device("SN-2")
    chain = world.node.chain
    ok = prepare_upload(chain, alice.id, dev.id, 5, _batch(), dev.key)
    assert ingest.upload(ok).seq == 5
    cases = [
        (prepare_upload(chain, alice.id, bytes(32), 6, _batch(), generate()), RejectedError,
         "unknown_device"),
        (prepare_upload(chain, alice.id, loose.id, 1, _batch(), loose.key), RejectedError,
         "unbound_device"),
        (prepare_upload(chain, bob.id, dev.id, 6, _batch(), dev.key), RejectedError,
         "wrong_patient"),
        (prepare_upload(chain, alice.id, dev.id, 6, _batch(), generate()), SignatureError,
         "bad_signature"),
        (prepare_upload(chain, alice.id, dev.id, 5, _batch(4), dev.key), RejectedError,
         "replayed_seq"),
        (prepare_upload(chain, alice.id, dev.id, 4, _batch(), dev.key), RejectedError,
         "reordered_seq"),
        (prepare_upload(chain, alice.id, dev.id, 6, _batch(t0=int(time.time() * 1000)
                                                            + 3_600_000), dev.key),
         OutOfRangeError, "out_of_range"),
        # audit F13: the ledger's span rule (state/data.py check_span), refused before sealing
        (prepare_upload(chain, alice.id, dev.id, 6, _wide(), dev.key), RejectedError,
         "span_too_long"),
    ]
    tampered = prepare_upload(chain, alice.id, dev.id, 6, _batch(), dev.key)
    other = _batch(3, T0 + 1)
    cases.append((Upload(chain, alice.id, dev.id, 6, other, tampered.salt_key, tampered.key,
                         tampered.sig), SignatureError, "bad_signature"))
    for up, error, code in cases:
        _refused(world, ingest, up, error, code)
    revoke_device(world.node, alice.id, [alice.key], dev.id)
    _refused(world, ingest, prepare_upload(chain, alice.id, dev.id, 6, _batch(), dev.key),
             RejectedError, "revoked_device")
    assert world.node.state.get(device_key(dev.id))["seq"] == 5


def test_refused_by_the_ledger_after_sealing_leaves_nothing(world: World,
                                                             ingest: IngestService,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """If the state changes between the early check and ordering, the blob is removed."""
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    revoke_device(world.node, alice.id, [alice.key], dev.id)
    monkeypatch.setattr(ingest, "_check", lambda up: "device-signed")
    before = _footprint(world, ingest)
    with pytest.raises(RejectedError) as info:
        ingest.upload(prepare_upload(world.node.chain, alice.id, dev.id, 1, _batch(), dev.key))
    assert info.value.code == "revoked_device"
    blobs, rows, commits, state = _footprint(world, ingest)
    assert (blobs, rows, commits) == before[:3]
    assert state == before[3]


def test_retry_is_idempotent(world: World, ingest: IngestService) -> None:
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    up = prepare_upload(world.node.chain, alice.id, dev.id, 1, _batch(), dev.key)
    first = ingest.upload(up)
    again = ingest.upload(Upload.from_value(up.to_value()))  # the same bytes, re-sent
    assert again.duplicate and not first.duplicate
    assert (again.ct, again.tx_index) == (first.ct, first.tx_index)
    assert sum(1 for t in _txs(world) if _is_commit_ok(t)) == 1


def test_concurrent_devices_and_a_retrying_device_land_exactly_once(
        world: World, ingest: IngestService) -> None:
    alice = world.add_patient("alice")
    devices = [world.add_device(f"SN-{i}", patient=alice) for i in range(4)]
    per_device = 15
    uploads = {d.id: [prepare_upload(world.node.chain, alice.id, d.id, s, _batch(2, T0 + s * 10),
                                     d.key) for s in range(1, per_device + 1)] for d in devices}
    errors: list[BaseException] = []

    def run(dev_id: bytes, copies: int) -> None:
        try:
            for up in uploads[dev_id]:
                for _ in range(copies):  # the retrying device sends every batch again
                    ingest.upload(up)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    retry = devices[0].id
    threads = [threading.Thread(target=run, args=(d.id, 1)) for d in devices]
    # the retrying device also races itself: a second thread re-sending the same batches
    threads.append(threading.Thread(target=run, args=(retry, 2)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a second thread of the same device can see its own later batch accepted first: then
    # the re-send of an already-accepted batch is a duplicate (idempotent), never a refusal.
    assert not errors, errors
    commits = Counter()
    for t in _txs(world):
        if _is_commit_ok(t):
            body = SignedTx.decode(t.envelope).tx.body
            commits[(body["uploader"], body["seq"])] += 1
    assert len(commits) == len(devices) * per_device
    assert set(commits.values()) == {1}
    assert ingest.vault.count() == len(devices) * per_device
    for d in devices:
        assert world.node.state.get(device_key(d.id))["seq"] == per_device


def test_upload_many_reports_each(world: World, ingest: IngestService) -> None:
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    ups = [prepare_upload(world.node.chain, alice.id, dev.id, s, _batch(), dev.key)
           for s in (1, 2, 2, 3)]
    out = ingest.upload_many(ups)
    assert [getattr(r, "seq", None) for r in out[:2]] == [1, 2]
    assert isinstance(out[2], GlucoledgerError) or out[2].duplicate  # type: ignore[union-attr]
    assert out[3].seq == 3  # type: ignore[union-attr]


def test_uploads_as_bytes_on_worker_processes(world: World, ingest: IngestService) -> None:
    """``upload_wire``: checks on workers for a large group; each upload answered in order;
    a bad signature or malformed bytes is refused and leaves nothing; the device signatures
    the workers verified are not verified a second time by the state machine."""
    from glucoledger import codec
    from glucoledger.crypto import keys
    from glucoledger.errors import MalformedError
    from glucoledger.ledger.trust import TrustCache
    from glucoledger.state.data import UPLOAD_CONTEXT

    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    chain = world.node.chain
    ups = [prepare_upload(chain, alice.id, dev.id, s, _batch(1, T0 + s * 300_000), dev.key)
           for s in range(1, 301)]
    wires = [codec.encode(u.to_value()) for u in ups]
    forged = dict(ups[0].to_value(), seq=301, sig=bytes(64))
    wires += [codec.encode(forged), b"\xa0not an upload", wires[5]]
    world.node.trust.clear()  # the devices signed in this process: the node must not know it
    before = _footprint(world, ingest)
    service = IngestService(world.node, ingest.vault, workers=2)
    try:
        checked: list[bytes] = []  # upload signatures this process verified for real
        asked: list[bytes] = []  # upload signatures the node asked its memo about
        real = keys.PublicKey.verify_raw
        real_memo = TrustCache.verify

        def counting(self: keys.PublicKey, data: bytes, signature: bytes) -> None:
            if data.startswith(keys.signing_input(UPLOAD_CONTEXT, b"")):
                checked.append(signature)
            real(self, data, signature)

        def asking(self: TrustCache, key: keys.PublicKey, context: str, message: bytes,
                   signature: bytes) -> None:
            if context == UPLOAD_CONTEXT:
                asked.append(signature)
            real_memo(self, key, context, message, signature)

        keys.PublicKey.verify_raw = counting  # type: ignore[method-assign]
        TrustCache.verify = asking  # type: ignore[method-assign]
        try:
            out = service.upload_wire(wires)
        finally:
            keys.PublicKey.verify_raw = real  # type: ignore[method-assign]
            TrustCache.verify = real_memo  # type: ignore[method-assign]
    finally:
        service.close()
    assert [getattr(r, "seq", None) for r in out[:300]] == list(range(1, 301))
    assert isinstance(out[300], SignatureError)
    assert isinstance(out[301], MalformedError)
    assert out[302].duplicate  # type: ignore[union-attr]
    if not STATE_COMPILED:  # a compiled machine calls the memo from C, past the patch
        assert len(asked) >= 300, "the state machine did not check the device signatures"
    assert not checked, "the machine re-verified a signature a worker checked"
    assert world.node.state.get(device_key(dev.id))["seq"] == 300
    # The refused ones left nothing: one row and one blob per accepted upload.
    after = _footprint(world, ingest)
    assert after[1] == before[1] + 300
    assert len(list(ingest.vault.blobs.names())) == 300


def test_a_batch_longer_than_a_commit_spans_is_refused_before_it_is_ordered(
        world: World, ingest: IngestService) -> None:
    """Audit F13: ingest applies the ledger's span rule itself (``check_span``), so the
    upload is refused before sealing or ordering: no refused data.commit in the log."""
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    before = len(_txs(world))
    with pytest.raises(RejectedError) as info:
        ingest.upload(prepare_upload(world.node.chain, alice.id, dev.id, 1, _wide(), dev.key))
    assert info.value.code == "span_too_long" and "split" in info.value.message
    assert len(_txs(world)) == before
