"""The follow loop's round decision with a watch (node/consortium.py ``step``).

The watch itself runs against real etcd in tests/ordering/test_etcd_watch.py and the whole
loop in test_watch_follow.py; here a stand-in watch makes each branch of the decision
happen on demand: read after a change (the log after a log change, the notes after a note),
read nothing without one, read again after a round that failed, poll as before while the
watch is down.
"""

from __future__ import annotations

from types import SimpleNamespace

from glucoledger.errors import OrderingError
from glucoledger.node.consortium import ConsortiumNode, Status


class StandInWatch:
    def __init__(self) -> None:
        self.generation = self.log_generation = self.side_generation = 1
        self.healthy = True
        self.waits: list[tuple[int, float]] = []

    def wait_change(self, seen: int, timeout: float) -> int:
        self.waits.append((seen, timeout))
        return self.generation  # nothing arrives while "waiting"


def _node(watch: StandInWatch) -> tuple[ConsortiumNode, list[str]]:
    calls: list[str] = []
    c = ConsortiumNode.__new__(ConsortiumNode)
    c.status = Status("org-0")
    c._watch = watch  # type: ignore[assignment]
    c._watched = c._watched_log = c._watched_side = -1
    c._seen = 0
    c.node = SimpleNamespace(caught_up=True)  # type: ignore[assignment]

    def poll(size: int, timeout: float) -> int:
        calls.append(f"poll {timeout}")
        return size

    c.orderer = SimpleNamespace(wait=poll)  # type: ignore[assignment]
    c._derive = lambda: calls.append("derive")  # type: ignore[method-assign]
    c._publish_notes = lambda: calls.append("publish")  # type: ignore[method-assign]
    c._collect = lambda: calls.append("collect")  # type: ignore[method-assign]
    c.maybe_anchor = lambda: calls.append("anchor")  # type: ignore[method-assign]
    c._write_status = lambda: calls.append("status")  # type: ignore[method-assign]
    return c, calls


def test_a_change_is_read_and_no_change_reads_nothing() -> None:
    w = StandInWatch()
    c, calls = _node(w)
    c.step(wait=0.2)
    assert calls == ["derive", "publish", "collect", "anchor", "status"]
    calls.clear()
    c.step(wait=0.2)  # nothing changed: waited on the watch, then an idle round
    assert calls == ["anchor", "status"] and w.waits == [(1, 2.0)]
    calls.clear()
    w.generation = w.log_generation = w.side_generation = 2  # changes of both kinds
    c.step(wait=0.2)
    assert "derive" in calls and "collect" in calls


def test_a_note_reads_the_notes_and_an_append_the_log() -> None:
    w = StandInWatch()
    c, calls = _node(w)
    c.step()
    calls.clear()
    w.generation, w.side_generation = 2, 2  # another member's note
    c.step()
    assert calls == ["publish", "collect", "anchor", "status"]
    calls.clear()
    w.generation, w.log_generation = 3, 2  # an append: derive; its own note wakes the next
    c.step()
    assert calls == ["derive", "publish", "anchor", "status"]
    calls.clear()
    w.generation, w.side_generation = 4, 3
    c.node.caught_up = False  # entries still wait: the log is read whatever woke the round
    c.step()
    assert calls == ["derive", "publish", "collect", "anchor", "status"]


def test_entries_waiting_are_read_without_waiting() -> None:
    w = StandInWatch()
    c, calls = _node(w)
    c.step()
    calls.clear()
    c.node.caught_up = False
    c.step()
    assert "derive" in calls and w.waits == []


def test_a_round_that_failed_is_read_again_without_a_new_change() -> None:
    w = StandInWatch()
    c, calls = _node(w)

    def fail() -> None:
        calls.append("derive")
        raise OrderingError("etcd did not answer")

    c._derive = fail  # type: ignore[method-assign]
    c.step()
    assert c.status.error == "etcd did not answer"
    calls.clear()
    c._derive = lambda: calls.append("derive")  # type: ignore[method-assign]
    c.step()  # no change since, yet the failed reads are retried
    assert "derive" in calls and "collect" in calls


def test_with_the_watch_down_the_loop_polls_as_before() -> None:
    w = StandInWatch()
    w.healthy = False
    c, calls = _node(w)
    c.status.height = c.status.final_height = 3
    c.step(wait=0.2)
    assert calls[0] == "poll 0.2" and "derive" in calls and w.waits == []


def test_without_a_watch_nothing_changes() -> None:
    c, calls = _node(StandInWatch())
    c._watch = None
    c.status.height = c.status.final_height = 3
    c.step(wait=0.2)
    assert calls[0] == "poll 0.2"
