"""``glucoledger node --workers N``: a member on a machine of its own checks the signatures of
a large read of the log (catching up, rejoining) on N processes below its own priority, and
derives the same chain as the members that checked everything in process."""

from __future__ import annotations

import psutil  # type: ignore[import-untyped]

from glucoledger.node.pool import WORKER_NICE

from .conftest import Consortium, patient_envelopes, wait_until


def test_a_member_catching_up_checks_on_its_workers(consortium: Consortium) -> None:
    c = consortium
    c.kill_node(2, hard=False)
    envelopes = patient_envelopes(600)
    for k in range(0, len(envelopes), 120):  # a backlog: reads of up to 1,000 entries
        c.submit(envelopes[k:k + 120], prefer=k // 120 % 2)
    c.start_node(2, extra=("--workers", "2"))
    top = wait_until(lambda: (s := c.converged()) and s["height"] >= c.status(0)["height"]
                     and s, 60, "member 2 caught up with the others")
    assert top["final_root"] == c.status(2)["final_root"]

    member = psutil.Process(int(c.state["nodes"][2]["pid"]))
    own = member.nice()
    checkers = [p for p in member.children(recursive=True)
                if p.nice() == min(own + WORKER_NICE, 19)]
    assert len(checkers) == 2, [(p.pid, p.nice(), p.cmdline()[:3]) for p in
                                member.children(recursive=True)]
    # The members that ran with the default (1) started none.
    for i in (0, 1):
        assert psutil.Process(int(c.state["nodes"][i]["pid"])).children(recursive=True) == []
