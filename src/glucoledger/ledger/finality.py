"""Cosigned checkpoints: the finality rule and divergence reports. Pure.

Every node cosigns every block's checkpoint with its node key: a C2SP cosignature/v1 line
(c2sp.org/tlog-cosignature, type 0x04, timestamped with the block time) on a signed note
(c2sp.org/signed-note) whose body is the c2sp.org/tlog-checkpoint text of
``ledger.checkpoint``. Plain type-0x01 lines of member keys are accepted too (stores written
before cosignatures). A node publishes its one-signature note per height; the
cosigned checkpoint is the same note text followed by the signature lines of several nodes
(the signed-note format allows any number of signature lines, and verifiers ignore names they
do not know).

Rule: the checkpoint at height h is **final** when at least ``threshold`` of the member node
keys **in force at h** signed the same note text. The member set in force at h comes from a
``MemberSchedule``: governance changes take effect at a height they state (``state.governance``),
so a member removed at h' still counts for every height below h' and not from h' on, and a
member added at h' never counts below h'. A member whose valid signature is on a different text
for the same height has **diverged**: the report names it with the height and both roots.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from ..errors import GlucoledgerError
from .checkpoint import Checkpoint, NoteVerifier, SignedNote, parse_note

__all__ = ["Divergence", "FinalCheckpoint", "MemberSchedule", "cosign", "decide",
           "verify_final", "verify_final_at"]


@dataclass(frozen=True, slots=True)
class MemberSchedule:
    """Checkpoint signer sets by the height from which each is in force.

    ``entries``: (first height, signers, threshold), sorted by first height, the first at 0.
    Invariant: 1 <= threshold <= len(signers) in every entry.
    """

    entries: tuple[tuple[int, tuple[NoteVerifier, ...], int], ...]

    def __post_init__(self) -> None:
        if not self.entries or self.entries[0][0] != 0:
            raise ValueError("a member schedule starts at height 0")
        if any(a[0] >= b[0] for a, b in zip(self.entries, self.entries[1:], strict=False)):
            raise ValueError("member schedule heights must increase")
        if any(not 1 <= t <= len(m) for _, m, t in self.entries):
            raise ValueError("every threshold is 1..number of signers")

    @classmethod
    def fixed(cls, members: Sequence[NoteVerifier], threshold: int) -> MemberSchedule:
        return cls(((0, tuple(members), threshold),))

    def at(self, height: int) -> tuple[tuple[NoteVerifier, ...], int]:
        """The signers and threshold in force at ``height``."""
        found = self.entries[0]
        for entry in self.entries:
            if entry[0] > height:
                break
            found = entry
        return found[1], found[2]


@dataclass(frozen=True, slots=True)
class FinalCheckpoint:
    checkpoint: Checkpoint
    note: bytes  # the note text with at least ``threshold`` signature lines
    signers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Divergence:
    node: str
    height: int
    our_root: bytes
    their_root: bytes
    detail: str = ""

    def describe(self) -> str:
        return (f"node {self.node} diverged at height {self.height}: our root "
                f"{self.our_root.hex()}, theirs {self.their_root.hex()}"
                + (f" ({self.detail})" if self.detail else ""))


def cosign(text: bytes, notes: Sequence[SignedNote]) -> bytes:
    """One note with the signature lines of every note over ``text`` (sorted by name).

    Pass notes that each hold only lines already verified (``decide`` does): a line is taken
    by its name, so an unverified line named after another member would replace its own."""
    lines: dict[str, tuple[str, bytes, bytes]] = {}
    for n in notes:
        if n.text == text:
            for s in n.signatures:
                lines[s[0]] = s
    return SignedNote(text, tuple(lines[k] for k in sorted(lines))).encode()


def _verified(raw: bytes, verifier: NoteVerifier) -> SignedNote | None:
    """The note with only ``verifier``'s line that verifies (None when there is none).

    Every other line is dropped: a member's note vouches for its own signature only, never
    for lines it carries in other members' names."""
    try:
        note = parse_note(raw)
    except GlucoledgerError:
        return None
    for line in note.signatures:
        if line[0] != verifier.name:
            continue
        try:
            if verifier.check(note.text, line[1], line[2]):
                return SignedNote(note.text, (line,))
        except GlucoledgerError:
            continue
    return None


def _as_checkpoint(text: bytes, height: int) -> Checkpoint | str:
    """The checkpoint ``text`` states for ``height``, or why it is none."""
    try:
        cp = Checkpoint.parse_body(text)
    except GlucoledgerError as exc:
        return f"it signed a note that is not a checkpoint ({exc.message})"
    if cp.height != height:
        return f"it signed the checkpoint of height {cp.height} as its note for {height}"
    return cp


def decide(
    published: Mapping[int, Mapping[str, bytes]],
    schedule: MemberSchedule,
    ours: Mapping[int, bytes],
    verified: MutableMapping[tuple[str, bytes, bytes], SignedNote | None] | None = None,
) -> tuple[FinalCheckpoint | None, list[Divergence]]:
    """The highest final checkpoint among ``published`` notes, and the divergences seen.

    ``published[h][name]``: the note member ``name`` published for height h (under its own
    etcd key ``sig/<name>/<h>``: the name is the key's, never the note's). Of each note only
    ``name``'s signature line that verifies under its key in force at h counts; every other
    line is dropped, and a note without one is ignored (anyone can write garbage; only a
    member's own signature counts). The final note is built from verified lines only. A
    member whose verified note is not a checkpoint of that height is reported (a divergence
    with the reason), and the other notes are judged as if it had published nothing.
    ``ours[h]``: this node's note text for height h (to compare roots). Each height is judged
    by ``schedule.at(height)``; the caller passes only heights its schedule is known for.
    ``verified``: a cache of earlier outcomes, keyed by (name, raw note, key), that the
    caller keeps across rounds so each published note is verified once (the caller must drop
    it when the member keys change).
    """
    final: FinalCheckpoint | None = None
    diverged: dict[str, Divergence] = {}
    for height in sorted(published):
        members, threshold = schedule.at(height)
        by_name = {v.name: v for v in members}
        mine = ours.get(height)
        our_cp = Checkpoint.parse_body(mine) if mine is not None else None
        groups: dict[bytes, list[tuple[str, SignedNote]]] = {}
        for name, raw in published[height].items():
            verifier = by_name.get(name)
            if verifier is None:
                continue
            if verified is None:
                note = _verified(raw, verifier)
            elif (name, raw, verifier.key.raw) in verified:
                note = verified[(name, raw, verifier.key.raw)]
            else:
                note = verified[(name, raw, verifier.key.raw)] = _verified(raw, verifier)
            if note is not None:
                groups.setdefault(note.text, []).append((name, note))
        for text, notes in groups.items():
            cp = _as_checkpoint(text, height)
            if isinstance(cp, str):
                for name, _ in notes:
                    diverged.setdefault(name, Divergence(
                        name, height, our_cp.root if our_cp else b"", b"", cp))
                continue
            if len(notes) >= threshold:
                final = FinalCheckpoint(cp, cosign(text, [n for _, n in notes]),
                                        tuple(sorted(name for name, _ in notes)))
            if our_cp is not None and text != mine:
                for name, _ in notes:
                    diverged.setdefault(name, Divergence(
                        name, height, our_cp.root, cp.root,
                        "different checkpoint" if cp.root == our_cp.root
                        else "different log root"))
    return final, list(diverged.values())


def verify_final(note: bytes, members: Sequence[NoteVerifier], threshold: int) -> Checkpoint:
    """Verify a cosigned checkpoint: ``threshold`` distinct member keys signed it.

    Raises MalformedError or SignatureError; returns the checkpoint.
    """
    parsed = parse_note(note)
    parsed.verify(members, need=threshold)
    return Checkpoint.parse_body(parsed.text)


def verify_final_at(note: bytes, schedule: MemberSchedule) -> Checkpoint:
    """Verify a cosigned checkpoint against the member set in force at its height.

    Raises MalformedError or SignatureError; returns the checkpoint.
    """
    parsed = parse_note(note)
    cp = Checkpoint.parse_body(parsed.text)
    members, threshold = schedule.at(cp.height)
    parsed.verify(members, need=threshold)
    return cp
