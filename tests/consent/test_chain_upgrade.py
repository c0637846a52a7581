"""A chain founded before state rule set 2 and access record format 2 moves to them by
``gov.upgrade`` (``glucoledger upgrade``): reads decided before the upgrade stay as they
were decided, reads after it meet the new rules, raw reads release the same records in
either format, and the folder still verifies from block 0.

Why it matters: the consortium audit's fixes (rule set 2: a summary-only grant releases
whole UTC days, a commit spans at most 366 days, ...) and the fixed-size access records
(format 2) applied only to chains founded after them; a running chain had no way to get
them short of being refounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.errors import OutOfRangeError
from glucoledger.ledger.tx import SignedTx
from glucoledger.node.access import AccessDeniedError, RawRelease, SignedSummary
from glucoledger.node.proposals import upgrade, upgrade_body, versions
from glucoledger.node.service import verify_folder
from glucoledger.state.access import access_key, released_count
from glucoledger.state.accounts import access_records, rules

from .conftest import DAY, NOW, Care, build_care

MIN = 60_000


@pytest.fixture
def old(tmp_path: Path) -> Iterator[Care]:
    c = build_care(tmp_path, days=4, rules=1, access_records=1)
    yield c
    c.vault.close()
    c.node.close()


def _record(care: Care, stx: SignedTx) -> dict[str, object]:
    return dict(care.node.state.get(access_key(stx.tx_hash)))


def test_an_old_chain_meets_the_new_rules_from_its_upgrade_on(old: Care) -> None:
    care = old
    care.grant(care.endo, view="summary", window={"last_days": 14})
    care.grant(care.nurse, view="raw", window={"last_days": 14})
    minute = {"from": NOW - 2 * DAY + MIN, "to": NOW - 2 * DAY + 2 * MIN}
    # Rule set 1: the ledger permits a summary of one minute (the finding rule set 2
    # closes; the node itself gives no number for a day under 70 % covered, on any chain).
    early = care.request(care.endo, view="summary", window=minute)
    with pytest.raises(OutOfRangeError):
        care.access.read(early.raw)
    assert _record(care, early)["decision"]["decision"] == "permit"  # type: ignore[index]
    raw_before = care.request(care.nurse)
    before = care.access.read(raw_before.raw)
    assert isinstance(before, RawRelease) and before.records
    assert "batches" in _record(care, raw_before)  # format 1 lists them

    body = upgrade_body(care.node)
    assert body == {"rules": 5, "access_records": 2}
    _, receipt = upgrade(care.node, care.node.wallet.load("org"), body)
    assert receipt.ok
    state = care.node.state
    assert (rules(state), access_records(state)) == (5, 2)
    assert versions(care.node) == "state rule set 5, access record format 2"
    assert upgrade_body(care.node) == {}

    later = care.request(care.endo, view="summary", window=minute)
    with pytest.raises(AccessDeniedError) as refused:
        care.access.read(later.raw)
    assert refused.value.code == "not_whole_days"
    assert _record(care, later)["decision"]["reason"] == "not_whole_days"  # type: ignore[index]
    whole = {"from": NOW - 2 * DAY, "to": NOW - DAY}
    assert isinstance(care.access.read(care.request(care.endo, view="summary",
                                                    window=whole).raw), SignedSummary)
    raw_after = care.request(care.nurse)
    after = care.access.read(raw_after.raw)
    assert isinstance(after, RawRelease) and after.records == before.records
    record = _record(care, raw_after)
    assert "batches" not in record and "digest" in record  # format 2 commits to them
    assert released_count(record) == released_count(_record(care, raw_before))
    # what was decided before the upgrade stays decided, and the folder re-derives
    assert _record(care, early)["decision"]["decision"] == "permit"  # type: ignore[index]
    height = care.node.store.height()
    care.vault.close()
    care.node.close()
    report = verify_folder(care.node.data_dir, workers=1)  # raises IntegrityError if not
    assert report.blocks == height and report.transactions > 10


def test_an_upgrade_names_only_versions_this_code_knows_and_never_goes_back(old: Care) -> None:
    from glucoledger.errors import InputError

    node = old.node
    with pytest.raises(InputError, match="is one of 1, 2, 3, 4, 5"):
        upgrade_body(node, rules=6)
    assert upgrade_body(node, access_records=2) == {"access_records": 2}  # only what is asked
    upgrade(node, node.wallet.load("org"), {"access_records": 2})
    with pytest.raises(InputError, match="access record format 2 already: versions only go up"):
        upgrade_body(node, access_records=2)
    assert upgrade_body(node) == {"rules": 5}
