"""``NightscoutService.post_one`` (API v3's create and update) checks the permission once,
in ``_enqueue``, before anything is logged or queued.

``post_one`` called ``_may_upload`` and then ``_enqueue``, whose first statement is the same
check. Between the two there is only ``nsaccept.parse_each`` of one document, which is pure
(interop/nsaccept.py: no I/O, raises nothing for a one-document list: each document's fault
is an outcome), so the first call changed nothing a caller can see: a reader token is refused
with the same error, and nothing is logged or stored either way. This test pins what that
reasoning needs: with a reader's binding, ``post_one`` of a document that would be refused
(and logged for the patient) raises PermissionDeniedError and leaves her refusal log and
her data as they were. It fails if the check in ``_enqueue`` comes after the refusal log
(checked: the check moved after ``self.refusals.add`` fails it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.bench.follow import FOLLOWER_TOKEN, UPLOADER_SECRET
from glucoledger.errors import PermissionDeniedError
from glucoledger.node.nightscout import NightscoutService
from glucoledger.node.service import Node

from .test_ns_newest import open_site

NOW = int(time.time() * 1000)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Node, NightscoutService]]:
    with open_site(tmp_path / "node", NOW) as s:
        yield s


def test_a_readers_post_one_is_refused_before_anything_is_logged_or_stored(
        site: tuple[Node, NightscoutService]) -> None:
    node, ns = site
    up = ns.authenticate(hashlib.sha1(UPLOADER_SECRET.encode()).hexdigest(), None)
    fol = ns.authenticate(None, FOLLOWER_TOKEN)
    assert fol.role == "read" and fol.patient == up.patient
    refusals = ns.refusals.of(up.patient)
    batches = ns.ingest.vault.count()
    bad = {"eventType": "Note", "date": NOW - 60_000, "app": "x", "$where": "1"}
    good = {"eventType": "Note", "notes": "a reader's", "date": NOW - 60_000, "app": "x"}
    for doc in (bad, good):
        with pytest.raises(PermissionDeniedError, match="not upload"):
            ns.post_one(fol, "treatments", doc, NOW)
    assert ns.refusals.of(up.patient) == refusals
    assert ns.ingest.vault.count() == batches
    # The uploader's own post_one of the bad one is refused and logged, as it should be.
    answer, existed = ns.post_one(up, "treatments", bad, NOW).result(timeout=60)
    assert answer["glucoledger"]["stored"] is False and existed is False
    assert len(ns.refusals.of(up.patient)) == len(refusals) + 1
