"""Concurrent custodial transactions of one account all succeed (issue 5, task 3).

Every custodial path (grants, amendments, alert rules, reads, erasure, emergencies) builds a
transaction with the account's next nonce and submits it. Two requests of the same patient at
once must not both take nonce N (one would be refused as a replay): the node serializes build
and submit per account. These tests run real threads against a real node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from glucoledger.node import consent_actions as ca
from glucoledger.node.alerts import set_rules
from glucoledger.state.consent import grants_of

from .conftest import DAY, Care


def _run_all(jobs: list[Callable[[], Any]]) -> list[BaseException]:
    """Start every job at the same moment; return the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a job hung"
    return errors


def test_concurrent_grants_alerts_and_reads_of_one_patient_all_succeed(care: Care) -> None:
    now = care.clock.ms
    nonce_before = care.node.next_nonce(care.alice.id)
    keys = care.alice.keys[:1]

    def grant(grantee: bytes) -> Callable[[], Any]:
        return lambda: ca.grant(care.node, care.alice.id, keys, grantee, streams=["cgm"],
                                view="summary", window={"last_days": 14}, valid_from=now,
                                valid_until=now + 30 * DAY)

    jobs: list[Callable[[], Any]] = []
    for _ in range(3):
        jobs += [grant(care.endo.id), grant(care.nurse.id), grant(care.carer.id)]
    jobs += [lambda: set_rules(care.node, care.alice.id, keys, None) for _ in range(3)]
    errors = _run_all(jobs)
    assert errors == [], [f"{type(e).__name__}: {e}" for e in errors]
    assert len(grants_of(care.node.state, care.alice.id)) == 9
    assert care.node.next_nonce(care.alice.id) == nonce_before + 12
