"""Who may call a node's node-to-node endpoints: the members in force at its height.

A node's control endpoint (``node.control``) accepts a request only when it is signed
(RFC 9421) by the node key of a member **in force at the node's current height**, as the
ledger records the member set (``state.governance.member_schedule``: the genesis set, then
``chain/members/<h>`` written by ``gov.member_add``/``gov.member_remove``/
``gov.rotate_key``, each in force from the height it states). Holding a key that once was a
member's is not enough.

``peers_at(schedule, height)`` splits every node key the ledger ever named into:

- ``current``: key id -> ``NoteVerifier`` of the members in force at ``height``;
- ``former``: key id -> ``Former`` for keys that were in force at some earlier height and
  are not at ``height``: the member was removed (its name is no longer in the set) or its
  key was replaced (``gov.rotate_key``), from the first height at which the key was no
  longer in force.

The control endpoint answers a *verified* signature by a former key with 403 and
``Former.message()`` ("org-2 was removed from the consortium at height 7"), so the
operator of a removed member learns why; an unsigned request, a bad signature or a key the
ledger never named stays 401 and learns nothing about the member set. Keys scheduled for a
later height are not in force yet and count as unknown.

Pure: no clock, no I/O. Invariants: ``current`` and ``former`` are disjoint; a key in
``former`` was in ``current`` at some height below ``height``; ``since <= height``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto import PublicKey
from ..ledger.checkpoint import NoteVerifier
from ..ledger.finality import MemberSchedule

__all__ = ["Former", "Peers", "peers_at"]


@dataclass(frozen=True, slots=True)
class Former:
    """A node key no longer in force: whose it was, from which height, and why."""

    name: str
    since: int  # the first height at which the key was no longer in force
    removed: bool  # True: the member left; False: the member's key was replaced
    key: PublicKey  # checks the signature before the refusal says why

    def message(self) -> str:
        if self.removed:
            return (f"{self.name} was removed from the consortium at height {self.since}; "
                    "the members no longer accept its node key or its etcd user")
        return (f"this node key of {self.name} was replaced at height {self.since} "
                "(gov.rotate_key); sign with the member's current node key (`glucoledger "
                "consortium node-key` made it; it is in the member folder's wallet)")


@dataclass(frozen=True, slots=True)
class Peers:
    current: dict[bytes, NoteVerifier]
    former: dict[bytes, Former]
    height: int = -1  # the height these were judged at (-1: before the genesis block)

    @property
    def names(self) -> list[str]:
        """The current members' names, in the order the ledger lists them."""
        return [v.name for v in self.current.values()]


NOBODY = Peers({}, {})


def peers_at(schedule: MemberSchedule | None, height: int) -> Peers:
    """The members in force at ``height`` and the keys that left before it (``NOBODY``
    before the genesis block is derived: the node cannot tell members from strangers)."""
    if schedule is None:
        return NOBODY
    now, _ = schedule.at(height)
    current = {v.key.key_id: v for v in now}
    names = {v.name for v in now}
    last_seen: dict[bytes, tuple[NoteVerifier, int]] = {}  # key id -> (signer, last entry)
    entries = [e for e in schedule.entries if e[0] <= height]
    for i, (_, members, _) in enumerate(entries):
        for v in members:
            last_seen[v.key.key_id] = (v, i)
    former = {}
    for key_id, (v, i) in last_seen.items():
        if key_id in current:
            continue
        since = entries[i + 1][0]  # absent from the entry after its last one (i < last)
        former[key_id] = Former(v.name, since, v.name not in names, v.key)
    return Peers(current, former, height)
