"""A reading proof verifies offline with only the node's key; any altered byte breaks it."""

from __future__ import annotations

import pytest

from glucoledger.crypto import generate
from glucoledger.errors import GlucoledgerError, NotFoundError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.glucose.simulate import simulate_patient
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.node.devices import bind_device, create_keyed_account
from glucoledger.node.ingest import IngestService
from glucoledger.node.proofs import dumps_proof, prove_reading, verify_proof
from glucoledger.node.world import World
from glucoledger.vault.batch import prepare_upload

T0 = 1_700_000_012_345


def _setup(world: World, ingest: IngestService) -> tuple[bytes, list[CgmReading]]:
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    recs = [r for r in simulate_patient(3, 1, T0)["cgm"] if isinstance(r, CgmReading)]
    batch = Batch("cgm", tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))
    ingest.ingest_batches([batch], patient=alice.id, uploader=dev.id, signer=dev.key,
                          batch_size=100)
    return alice.id, recs


def test_proof_verifies_offline_and_every_altered_byte_breaks_it(
        world: World, ingest: IngestService) -> None:
    patient, recs = _setup(world, ingest)
    target = recs[150]
    data = dumps_proof(prove_reading(world.node, ingest.vault, patient, "cgm", target.time_ms))
    vkey = world.node.verifier().vkey()
    # offline: nothing but the bytes and the vkey text
    verified = verify_proof(data, NoteVerifier.parse(vkey))
    assert verified.reading == target
    assert verified.patient == patient and verified.trust == "device-signed"
    assert verified.seq == 2  # batch_size 100: the second batch holds reading 150
    verifier = NoteVerifier.parse(vkey)
    for pos in range(len(data)):
        for flip in (0x01, 0x20):
            bad = bytearray(data)
            bad[pos] ^= flip
            with pytest.raises(GlucoledgerError):
                verify_proof(bytes(bad), verifier)
    with pytest.raises(GlucoledgerError):
        verify_proof(data[:-1], verifier)
    with pytest.raises(GlucoledgerError):
        verify_proof(data + b" ", verifier)
    other = NoteVerifier(world.node.config.name, generate().public)
    with pytest.raises(GlucoledgerError):
        verify_proof(data, other)


def test_proof_of_a_missing_reading_is_refused(world: World, ingest: IngestService) -> None:
    patient, recs = _setup(world, ingest)
    with pytest.raises(NotFoundError):
        prove_reading(world.node, ingest.vault, patient, "cgm", recs[0].time_ms + 1)


def test_gateway_attested_data_says_so_in_its_proof(world: World, ingest: IngestService) -> None:
    alice = world.add_patient("alice")
    gk = generate()
    gw = create_keyed_account(world.node, "gateway", [gk], sponsor=(alice.id, [alice.key]))
    bind_device(world.node, alice.id, [alice.key], gw)
    r = CgmReading(T0, 0, 140, "Flat")
    ingest.upload(prepare_upload(world.node.chain, alice.id, gw, 1,
                                 Batch("cgm", (r,), T0, T0, 1), gk))
    proof = dumps_proof(prove_reading(world.node, ingest.vault, alice.id, "cgm", T0))
    assert verify_proof(proof, world.node.verifier()).trust == "gateway-attested"
