"""The zero-knowledge toolchain for tests: the "test" profile (10 slots, a 2^11 ceremony),
made by `glucoledger zk-setup --profile test` (.ci/run runs it before the suite)."""

from __future__ import annotations

import pytest

from glucoledger.zk.toolchain import PROFILES, Toolchain


@pytest.fixture(scope="session")
def tc() -> Toolchain:
    chain = Toolchain(PROFILES["test"])
    if not chain.ready():
        pytest.skip("the zero-knowledge toolchain is not set up here: run "
                    "`glucoledger zk-setup --profile test` (needs Node.js and npm)")
    return chain
