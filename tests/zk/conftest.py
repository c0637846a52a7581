"""The zero-knowledge toolchain for tests: the "test" profile (10 slots, a 2^11 ceremony),
made by `glucoledger zk-setup --profile test` (.ci/run runs it before the suite)."""

from __future__ import annotations

import pytest

from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims
from glucoledger.zk.toolchain import PROFILES, Toolchain


@pytest.fixture(scope="session")
def tc() -> Toolchain:
    chain = Toolchain(PROFILES["test"])
    if not chain.ready():
        pytest.skip("the zero-knowledge toolchain is not set up here: run "
                    "`glucoledger zk-setup --profile test` (needs Node.js and npm)")
    return chain


@pytest.fixture
def zk(world: World, ingest: IngestService, monkeypatch: pytest.MonkeyPatch) -> ZkClaims:
    """The node's claims service on the test profile, in UTC, without needing the toolchain
    (commitments, disclosures and refusals come before any proof); test_node_claims.py
    overrides it with the toolchain's."""
    monkeypatch.setenv("TZ", "UTC")
    return ZkClaims(world.node, ingest.vault, Toolchain(PROFILES["test"]))
