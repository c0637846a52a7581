"""Shared by the zero-knowledge node tests: a patient with one CGM and some days of readings
ingested through the real ingest service, and the node's claims service without the
toolchain (commitments, disclosures and refusals need none)."""

from __future__ import annotations

from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World

DAY = 86_400_000
D0 = 1_764_547_200_000  # 2025-12-01T00:00Z
NOW = D0 + 3 * DAY + 6 * 3_600_000  # 06:00 on the 4th: the last 3 whole days are the 1st-3rd


def ingest_days(world: World, ingest: IngestService, name: str, serial: str,
                days: list[list[int]], *, d0: int = D0, offset_ms: int = 0) -> bytes:
    """A new patient ``name`` with device ``serial``; day d's values at d0 + d days, five
    minutes apart from ``offset_ms``; her account id."""
    who = world.add_patient(name)
    dev = world.add_device(serial, patient=who)
    recs = [CgmReading(d0 + d * DAY + i * 300_000 + offset_ms, 0, v, "Flat")
            for d, values in enumerate(days) for i, v in enumerate(values)]
    batch = Batch("cgm", tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))
    ingest.ingest_batches([batch], patient=who.id, uploader=dev.id, signer=dev.key,
                          batch_size=12)
    return who.id
