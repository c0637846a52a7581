"""A demo site for ``glucoledger serve --demo``: people with passwords and 14 days of data.

Accounts: ``rosa`` (trusted party), ``alice`` (patient, cosigned by rosa), ``dr-lee`` and
``dr-kim`` (clinicians). Demo passwords are public (``DEMO_PASSWORDS``): never use a demo
folder for real data. Alice's readings arrive through a Nightscout uploader secret
(``DEMO_UPLOADER_SECRET``: gateway-attested batches); dr-lee follows alice with the
Nightscout token ``DEMO_READER_TOKEN`` (which reads only through a grant).
"""

from __future__ import annotations

import time
from typing import Any

from ..glucose.readings import Batch
from ..glucose.simulate import simulate_patient
from .accounts import create_account, identity, keys_of
from .ingest import split_batch
from .nightscout import NightscoutService
from .people import Passwords
from .service import Node

__all__ = ["DEMO_PASSWORDS", "DEMO_READER_TOKEN", "DEMO_UPLOADER_SECRET", "seed_demo"]

DEMO_PASSWORDS = {"alice": "alice-demo-password", "dr-lee": "dr-lee-demo-password",
                  "dr-kim": "dr-kim-demo-password", "rosa": "rosa-demo-password"}
DEMO_UPLOADER_SECRET = "alice-uploader-secret"
DEMO_READER_TOKEN = "drlee-follow-0123456789"


def seed_demo(node: Node, ns: NightscoutService, *, days: int = 14,
              now_ms: int | None = None) -> dict[str, Any]:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    create_account(node, "rosa", "trusted")
    create_account(node, "alice", "patient", trusted="rosa")
    create_account(node, "dr-lee", "clinician")
    create_account(node, "dr-kim", "clinician")
    pw = Passwords(node)
    for name, password in DEMO_PASSWORDS.items():
        pw.set(name, password)
    gw = ns.add_uploader("alice", DEMO_UPLOADER_SECRET)
    ns.add_reader("dr-lee", "alice", DEMO_READER_TOKEN)
    alice = identity(node, "alice")
    start = now - days * 86_400_000
    start -= start % 300_000
    data = simulate_patient(7, days, start)
    batches = []
    for stream, records in data.items():
        recs = tuple(r for r in records if r.time_ms < now)
        if recs:
            batches += split_batch(Batch(stream, recs, recs[0].time_ms, recs[-1].time_ms,
                                         len(recs)), 288)
    ns.ingest.ingest_batches(batches, patient=alice.id, uploader=gw.id,
                             signer=keys_of(node, gw)[0])
    ns._next_seq.pop(gw.id, None)
    return {"passwords": DEMO_PASSWORDS, "uploader_secret": DEMO_UPLOADER_SECRET,
            "reader_token": DEMO_READER_TOKEN}
