"""The read guard's rules (node/readguard.py) on a hand-driven clock: the per-credential
budget, and which denials collapse (only those no time or window can turn into a permit,
only while the consent state they were decided on is unchanged, only for a while)."""

from __future__ import annotations

import pytest

from glucoledger.errors import RateLimitedError
from glucoledger.node.access import AccessDeniedError
from glucoledger.node.readguard import ReadGuard, RepeatedDenialError
from glucoledger.state.consent import Request, grant_key, grants_index_key
from glucoledger.state.store import State

PATIENT, READER, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
NOW = 2_000_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


class FakeNode:
    """A node reduced to what the guard reads: the ledger's state (a real ``State``)."""

    def __init__(self) -> None:
        self.state = State()
        self.state.put("acct/" + PATIENT.hex(), {"kind": "patient"})
        self.state.put(grants_index_key(PATIENT), [])

    def grant(self, gid: bytes, *, streams: tuple[str, ...] = ("cgm",), status: str = "active",
              valid_from: float = NOW - 10) -> None:
        self.state.put(grant_key(gid), {
            "id": gid, "patient": PATIENT, "grantee": READER, "streams": list(streams),
            "view": "raw", "window": {"last_days": 14}, "valid_from": int(valid_from * 1000),
            "valid_until": int((NOW + 86_400) * 1000), "purpose": "treatment",
            "alerts": False, "status": status})
        index = self.state.get(grants_index_key(PATIENT))
        if [READER, gid] not in index:
            self.state.put(grants_index_key(PATIENT), [*index, [READER, gid]])


def _deny(code: str) -> AccessDeniedError:
    return AccessDeniedError(f"access denied ({code}): no (audited as abcd)", code=code,
                             tx_hash=b"\xab" * 32)


REQ = Request(PATIENT, ("insulin",), "raw", None)


def test_the_budget_is_per_reader_and_patient_and_refills() -> None:
    clock = Clock()
    guard = ReadGuard(FakeNode(), rate=1.0, burst=3, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        guard.spend(READER, PATIENT)
    with pytest.raises(RateLimitedError) as info:
        guard.spend(READER, PATIENT)
    assert info.value.retry_after == 1 and "nothing recorded" in info.value.message
    guard.spend(OTHER, PATIENT)  # another credential has its own budget
    clock.t += 2
    guard.spend(READER, PATIENT)
    guard.spend(READER, PATIENT)
    with pytest.raises(RateLimitedError):
        guard.spend(READER, PATIENT)


def test_a_stable_denial_collapses_until_the_consent_changes_or_the_window_ends() -> None:
    clock, node = Clock(), FakeNode()
    guard = ReadGuard(node, collapse=900, clock=clock)  # type: ignore[arg-type]
    node.grant(b"\x10" * 32)  # cgm only: a treatments read is stream_not_granted
    guard.repeated(READER, REQ)  # nothing remembered yet: goes to the ledger
    guard.denied(READER, REQ, _deny("stream_not_granted"))
    for n in (1, 2):
        with pytest.raises(RepeatedDenialError) as info:
            guard.repeated(READER, REQ)
        assert info.value.code == "stream_not_granted" and info.value.repeats == n
        assert info.value.patient == PATIENT and info.value.tx_hash == b"\xab" * 32
        assert "audited as abababab" in info.value.message
    guard.repeated(READER, Request(PATIENT, ("insulin",), "summary", None))  # another scope
    guard.repeated(OTHER, REQ)  # another reader
    clock.t += 901
    guard.repeated(READER, REQ)  # the window is over: recorded again
    guard.denied(READER, REQ, _deny("stream_not_granted"))
    node.grant(b"\x11" * 32, streams=("insulin",))  # the patient grants it
    guard.repeated(READER, REQ)  # at once: not answered from memory


@pytest.mark.parametrize("code", ["not_yet_valid", "outside_window"])
def test_denials_that_time_or_the_window_can_change_never_collapse(code: str) -> None:
    node = FakeNode()
    guard = ReadGuard(node)  # type: ignore[arg-type]
    guard.denied(READER, REQ, _deny(code))
    guard.repeated(READER, REQ)


def test_no_collapse_while_a_grant_is_yet_to_start() -> None:
    clock, node = Clock(), FakeNode()
    guard = ReadGuard(node, clock=clock)  # type: ignore[arg-type]
    node.grant(b"\x10" * 32)  # cgm, active now: the reason is stream_not_granted...
    node.grant(b"\x12" * 32, streams=("insulin",), valid_from=NOW + 60)  # ...but in a minute
    guard.denied(READER, REQ, _deny("stream_not_granted"))
    guard.repeated(READER, REQ)  # not remembered: that grant will permit it by itself
