"""A demo site for ``glucoledger serve --demo``: people with passwords and 14 days of data.

Accounts: ``rosa`` (trusted party), ``alice`` (patient, cosigned by rosa), ``dr-lee`` and
``dr-kim`` (clinicians). Demo passwords are public (``DEMO_PASSWORDS``): never use a demo
folder for real data. Alice's readings arrive through a Nightscout uploader secret
(``DEMO_UPLOADER_SECRET``: gateway-attested batches); dr-lee follows alice with the
Nightscout token ``DEMO_READER_TOKEN`` (which reads only through a grant).

The demo ends with a live sensor: the simulator places warm-ups and signal-loss gaps
relative to the moment of seeding, so at some times of day its last hour would be a 3-hour
warm-up; ``seed_demo`` takes the first simulated patient (seeds 7, 8, ...) whose last 75
minutes hold a reading every 5 minutes up to now, so a visitor, a follower app or the
portal's "now" sees current readings whenever the demo starts.
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
    data = _live_at_the_end(days, start, now)
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


def _live_at_the_end(days: int, start: int, now: int) -> dict[str, Any]:
    """The first simulated patient (seed 7 on) whose CGM readings before ``now`` end with 75
    minutes of no gap longer than 10 minutes, the last at most 10 minutes old (module
    docstring); seed 7's data if none of 20 does (it never happened in a day of trials)."""
    first = None
    for seed in range(7, 27):
        data = simulate_patient(seed, days, start)
        first = first or data
        times = [r.time_ms for r in data["cgm"] if now - 75 * 60_000 <= r.time_ms < now]
        if times and now - times[-1] <= 600_000 and times[0] - (now - 75 * 60_000) <= 600_000 \
                and all(b - a <= 600_000 for a, b in zip(times, times[1:], strict=False)):
            return data
    assert first is not None
    return first
