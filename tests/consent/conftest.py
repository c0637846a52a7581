"""A care network on one real node: a patient with two keys and a trusted party, two devices,
14 simulated days in the vault, clinicians, a caregiver and another patient.

The node's clock is a test seam (``Clock``): block times come from it, so validity and
expiry are tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glucoledger.crypto import PrivateKey
from glucoledger.glucose.readings import Batch
from glucoledger.glucose.simulate import simulate_patient
from glucoledger.ledger.tx import SignedTx
from glucoledger.node import accounts
from glucoledger.node.access import AccessService
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.service import Node, Receipt
from glucoledger.node.world import World
from glucoledger.state.consent import Request
from glucoledger.vault.store import Vault

DAY = 86_400_000
HOUR = 3_600_000
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


@dataclass
class Person:
    name: str
    id: bytes
    keys: list[PrivateKey]


@dataclass
class Care:
    node: Node
    clock: Clock
    vault: Vault
    ingest: IngestService
    access: AccessService
    world: World
    alice: Person
    bob: Person
    rosa: Person  # alice's trusted party
    endo: Person
    nurse: Person
    carer: Person
    readings: dict[str, list[Any]]

    def person(self, name: str) -> Person:
        ident = accounts.identity(self.node, name)
        return Person(name, ident.id, accounts.keys_of(self.node, ident))

    def submit(self, who: Person, type_: str, body: dict[str, Any],
               keys: list[PrivateKey] | None = None) -> Receipt:
        stx = self.node.build(type_, body, who.id, keys or who.keys[:1])
        return self.node.submit([stx.raw])[0]

    def grant(self, grantee: Person, *, streams: tuple[str, ...] = ("cgm",), view: str = "raw",
              window: dict[str, int] | None = None, valid_from: int | None = None,
              valid_until: int | None = None, purpose: str = "treatment",
              alerts: bool = False, patient: Person | None = None) -> bytes:
        p = patient or self.alice
        body = {"grantee": grantee.id, "streams": list(streams), "view": view,
                "window": window or {"last_days": 30},
                "valid_from": self.clock.ms - DAY if valid_from is None else valid_from,
                "valid_until": self.clock.ms + 90 * DAY if valid_until is None else valid_until,
                "purpose": purpose, "alerts": alerts}
        stx = self.node.build("consent.grant", body, p.id, p.keys[:1])
        r = self.node.submit([stx.raw])[0]
        assert r.ok, r.result
        return stx.tx_hash

    def request(self, who: Person, *, patient: Person | None = None,
                streams: tuple[str, ...] = ("cgm",), view: str = "raw",
                window: dict[str, int] | None = None, wrap_to: bytes | None = None) -> SignedTx:
        req = Request((patient or self.alice).id, streams, view, window, wrap_to)
        return self.access.request(who.id, who.keys, req)


def build_care(tmp: Path, *, days: int = 14, **versions: int) -> Care:
    """``versions``: ``rules``, ``access_records`` (older ones: a chain founded before
    them; default: what ``Node.init`` founds new chains on)."""
    clock = Clock(NOW)
    node = Node.init(tmp / "node", workers=1, clock=clock, **versions)
    world = World.create(node)
    accounts.create_account(node, "rosa", "trusted")
    accounts.create_account(node, "alice", "patient", trusted="rosa")
    accounts.create_account(node, "bob", "patient", trusted="rosa")
    accounts.create_account(node, "dr-endo", "clinician")
    accounts.create_account(node, "nurse", "clinician")
    accounts.create_account(node, "carer", "trusted")
    vault = open_vault(node, fsync=False)
    ingest = IngestService(node, vault)
    care = Care(node, clock, vault, ingest, AccessService(node, vault), world,
                *(Person("", b"", []) for _ in range(6)), readings={})
    for attr, name in (("alice", "alice"), ("bob", "bob"), ("rosa", "rosa"),
                       ("endo", "dr-endo"), ("nurse", "nurse"), ("carer", "carer")):
        setattr(care, attr, care.person(name))
    sim = simulate_patient(7, days, NOW - days * DAY)
    care.readings = sim
    dev_cgm = world.add_device("CGM-1")
    dev_pen = world.add_device("PEN-1", model="PEN")
    from glucoledger.node.devices import bind_device

    for dev in (dev_cgm, dev_pen):
        bind_device(node, care.alice.id, care.alice.keys[:1], dev.id)
    for stream, dev in (("cgm", dev_cgm), ("insulin", dev_pen), ("carbs", dev_pen)):
        recs = sim[stream]
        batch = Batch(stream, tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))
        ingest.ingest_batches([batch], patient=care.alice.id, uploader=dev.id, signer=dev.key)
    return care


@pytest.fixture
def care(tmp_path: Path) -> Iterator[Care]:
    c = build_care(tmp_path)
    yield c
    c.vault.close()
    c.node.close()
