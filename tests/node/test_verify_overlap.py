"""``verify`` starts the workers' signature checks of the next block before it replays the
current one (issue 16: the two overlap), and its findings do not depend on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from glucoledger.bench.ledger import account_envelopes
from glucoledger.node.service import Node
from glucoledger.node.verify import verify_store
from glucoledger.state.replica import precheck


class _Recorded(Sequence[bool | None]):
    def __init__(self, block: int, values: list[bool | None], log: list[tuple[str, int]]):
        self._block, self._values, self._log = block, values, log

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        self._log.append(("read", self._block))
        return self._values[i]


def test_next_blocks_checks_start_before_this_block_is_replayed(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "node", workers=2)
    try:
        envs = account_envelopes(node.chain, 300 * 3)
        for k in range(3):  # blocks above the node's parallel threshold: lazy worker results
            assert all(r.ok for r in node.submit(envs[300 * k:300 * (k + 1)]))
        log: list[tuple[str, int]] = []
        calls = 0

        def recording(batch: list[bytes]) -> Sequence[bool | None]:
            nonlocal calls
            log.append(("start", calls))
            rec = _Recorded(calls, precheck(batch), log)
            calls += 1
            return rec

        report = verify_store(node.store, node.chain, verifiers=[node.verifier()],
                              prechecker=recording)
        assert report.transactions >= 300 * 3 and report.rejected == 0
        assert calls == 3
        first_read = {b: log.index(("read", b)) for b in range(3)}
        # block k+1's checks were started before block k's first result was read
        assert log.index(("start", 1)) < first_read[0]
        assert log.index(("start", 2)) < first_read[1]
        # and the node's own verify (lazy results from its worker processes) agrees
        again = node.verify()
        assert (again.transactions, again.log_root) == (report.transactions, report.log_root)
    finally:
        node.close()
