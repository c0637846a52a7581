"""A node with data, built through the real service layer, for the durability trials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node import deid
from glucoledger.node.ingest import IngestReceipt, IngestService, open_vault
from glucoledger.node.service import Node
from glucoledger.node.world import World
from glucoledger.vault.batch import prepare_upload
from glucoledger.vault.store import Vault

T0 = 1_700_000_012_345
#: A research participant's details, for the sealed research side files.
PROFILE = deid.Profile("Alice Doe", "1980-02-29", "female", "MA", "02139", "T1D")


def cgm_batch(seq: int, n: int = 48) -> Batch:
    t0 = T0 + seq * n * 300_000
    items = tuple(CgmReading(t0 + i * 300_000, 0, 60 + (i * 7 + seq) % 300) for i in range(n))
    return Batch("cgm", items, items[0].time_ms, items[-1].time_ms, n)


@contextmanager
def ingesting(folder: Path, *, create: bool = False
              ) -> Iterator[tuple[Node, World, Vault, IngestService]]:
    """The node of ``folder`` (``create``: a new one with a simulated maker) with its world,
    vault and ingest service, all closed afterwards in reverse order."""
    node = Node.init(folder, workers=1) if create else Node(folder, workers=1)
    try:
        world = World.create(node) if create else World.load(node)
        vault = open_vault(node)
        try:
            ingest = IngestService(node, vault, workers=1)
            try:
                yield node, world, vault, ingest
            finally:
                ingest.close()
        finally:
            vault.close()
    finally:
        node.close()


def make_node(folder: Path, uploads: int = 6) -> list[IngestReceipt]:
    """A node in ``folder`` with one patient, one device and ``uploads`` committed batches
    (one block each); closed afterwards."""
    with ingesting(folder, create=True) as (node, world, _vault, ingest):
        alice = world.add_patient("alice")
        dev = world.add_device("SN-1", patient=alice)
        return [ingest.upload(prepare_upload(node.chain, alice.id, dev.id, seq,
                                             cgm_batch(seq), dev.key))
                for seq in range(1, uploads + 1)]


def erase_cgm(folder: Path) -> None:
    """``glucoledger erase --patient alice --stream cgm --yes`` on ``folder``, in its own
    process (another process than the test's node); it must succeed."""
    from ..cli.test_cli import run

    r = run("erase", "--patient", "alice", "--stream", "cgm", "--yes", "--data", str(folder))
    assert r.returncode == 0, r.stderr


def add_uploads(folder: Path, seqs: range) -> list[IngestReceipt]:
    with ingesting(folder) as (node, world, _vault, ingest):
        alice, dev = world.patient("alice"), world.device("SN-1")
        return [ingest.upload(prepare_upload(node.chain, alice.id, dev.id, seq,
                                             cgm_batch(seq), dev.key)) for seq in seqs]


def node_with_uploader(folder: Path, secret: str) -> None:
    """A new node in ``folder`` with alice (a patient, rosa her trusted party) and a
    Nightscout uploader secret bound to her."""
    from glucoledger.api.context import ServerContext
    from glucoledger.node.accounts import create_account

    with Node.init(folder, workers=1) as node:
        create_account(node, "rosa", "trusted")
        create_account(node, "alice", "patient", trusted="rosa")
        c = ServerContext.create(node)
        try:
            c.svc.nightscout.add_uploader("alice", secret)
        finally:
            c.close()
