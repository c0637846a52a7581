"""Devices, gateways and data.commit: every refusal has its reason code and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from glucoledger.crypto import generate
from glucoledger.errors import RejectedError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.devices import (
    bind_device,
    create_keyed_account,
    register_device,
    revoke_device,
    unbind_device,
)
from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World
from glucoledger.state.data import TRUST_LEVELS
from glucoledger.state.devices import device_key
from glucoledger.vault.batch import prepare_upload

T0 = 1_700_000_012_345


def _batch(n: int = 3, t0: int = T0) -> Batch:
    items = tuple(CgmReading(t0 + i * 300_000, 0, 100 + i) for i in range(n))
    return Batch("cgm", items, items[0].time_ms, items[-1].time_ms, n)


def _refused(world: World, code: str, fn: Any, *args: Any) -> None:
    before = world.node.state.snapshot()
    with pytest.raises(RejectedError) as info:
        fn(*args)
    assert info.value.code == code, info.value.message
    assert world.node.state.snapshot() == before


def test_register_bind_and_refusals(world: World) -> None:
    alice, bob = world.add_patient("alice"), world.add_patient("bob")
    dev = world.add_device("SN-1", alg="p256")
    rec = world.node.state.get(device_key(dev.id))
    assert rec["kind"] == "device" and rec["patient"] is None and rec["key"]["alg"] == "p256"
    node, mk = world.node, world.maker_keys[:1]
    # registering: only makers, once per serial, one device per key
    _refused(world, "not_maker", register_device, node, alice.id, [alice.key], "X", "M",
             generate().public)
    _refused(world, "exists", register_device, node, world.maker, mk, "SN-1", "M",
             generate().public)
    _refused(world, "key_in_use", register_device, node, world.maker, mk, "SN-2", "M",
             dev.key.public)
    # binding
    _refused(world, "unknown_device", bind_device, node, alice.id, [alice.key], bytes(32))
    _refused(world, "not_patient", bind_device, node, world.maker, mk, dev.id)
    bind_device(node, alice.id, [alice.key], dev.id)
    _refused(world, "already_bound", bind_device, node, alice.id, [alice.key], dev.id)
    _refused(world, "bound_elsewhere", bind_device, node, bob.id, [bob.key], dev.id)
    _refused(world, "not_bound", unbind_device, node, bob.id, [bob.key], dev.id)
    _refused(world, "not_allowed", revoke_device, node, bob.id, [bob.key], dev.id)
    unbind_device(node, alice.id, [alice.key], dev.id)
    bind_device(node, bob.id, [bob.key], dev.id)
    revoke_device(node, world.maker, mk, dev.id)
    _refused(world, "revoked_device", revoke_device, node, bob.id, [bob.key], dev.id)
    unbind_device(node, bob.id, [bob.key], dev.id)
    _refused(world, "revoked_device", bind_device, node, alice.id, [alice.key], dev.id)


def _commit(world: World, ingest: IngestService, up: Any, *, account: bytes | None = None,
            keys: Any = None, **override: Any) -> str:
    """Submit a data.commit for ``up`` straight to the ledger (no ingest pre-check)."""
    rec = world.node.state.get(device_key(up.uploader)) or {"kind": "device"}
    start, end = up.hours
    body = {"patient": up.patient, "stream": up.stream, "start": start, "end": end,
            "count": up.batch.count, "root": up.root, "ct": bytes(32), "uploader": up.uploader,
            "seq": up.seq, "trust": TRUST_LEVELS[rec["kind"]], "key": up.key.to_value(),
            "sig": up.sig, "custody": "node"}
    body.update(override)
    stx = sign(Transaction(world.node.chain, "data.commit", body, account or ingest.account,
                           up.seq), keys or [world.node.node_key])
    before = world.node.state.snapshot()
    result = world.node.submit([stx.raw])[0].result
    if not result.ok:
        assert world.node.state.snapshot() == before
    return result.code


def test_data_commit_refusals_in_the_state_machine(world: World, ingest: IngestService) -> None:
    alice, bob = world.add_patient("alice"), world.add_patient("bob")
    dev = world.add_device("SN-1", patient=alice)
    loose = world.add_device("SN-2")
    chain = world.node.chain

    def up(seq: int, device: Any = dev, patient: bytes = alice.id, signer: Any = None) -> Any:
        return prepare_upload(chain, patient, device.id, seq, _batch(), signer or device.key)

    assert _commit(world, ingest, up(1, device=loose)) == "unbound_device"
    ghost = generate()
    assert _commit(world, ingest, prepare_upload(chain, alice.id, bytes(32), 1, _batch(), ghost)
                   ) == "unknown_device"
    assert _commit(world, ingest, up(1, patient=bob.id)) == "wrong_patient"
    assert _commit(world, ingest, up(1, signer=generate())) == "wrong_key"
    forged = up(1)
    assert _commit(world, ingest, forged, sig=bytes(64)) == "bad_upload_signature"
    assert _commit(world, ingest, forged, count=4) == "bad_upload_signature"
    assert _commit(world, ingest, forged, trust="gateway-attested") == "wrong_trust"
    assert _commit(world, ingest, forged, account=alice.id, keys=[alice.key]) == "not_node"
    assert _commit(world, ingest, up(3)) == "ok"
    assert world.node.state.get(device_key(dev.id))["seq"] == 3
    assert _commit(world, ingest, up(3)) == "replayed_seq"
    assert _commit(world, ingest, up(2)) == "reordered_seq"
    revoke_device(world.node, alice.id, [alice.key], dev.id)
    assert _commit(world, ingest, up(4)) == "revoked_device"
    assert world.node.state.get(device_key(dev.id))["seq"] == 3


def test_gateway_binds_and_uploads_as_gateway_attested(world: World,
                                                        ingest: IngestService) -> None:
    alice, bob = world.add_patient("alice"), world.add_patient("bob")
    gk = generate()
    gw = create_keyed_account(world.node, "gateway", [gk], sponsor=(alice.id, [alice.key]))
    _refused(world, "not_allowed", bind_device, world.node, bob.id, [bob.key], gw)
    bind_device(world.node, alice.id, [alice.key], gw)
    up = prepare_upload(world.node.chain, alice.id, gw, 1, _batch(), gk)
    assert _commit(world, ingest, up, trust="device-signed") == "wrong_trust"
    receipt = ingest.upload(up)
    assert receipt.trust == "gateway-attested"
    assert world.node.state.get(device_key(gw))["kind"] == "gateway"
