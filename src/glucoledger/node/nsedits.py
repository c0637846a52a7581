"""Which Nightscout documents of each patient changed, in order, as the stored blocks show it.

A socket feed (node/nightscout.py ``NightscoutService.follow``) that read a patient's window
needs to know at its next push whether a document it may hold changed since (an edit, a
deletion, a move in time: ``doc.version``, state/versions.py), and which, so it reads again
only where those documents are. ``EditLog`` is fed every stored block
(``Node.block_observers``), so it sees a change made by any process of this node or by another
member of a consortium. It keeps per patient the number of changes (changed ``docver`` and
``docalias`` keys) and the tags of the last ones.

Bounded: the tags of the last ``per_patient`` changes of each of the ``patients`` patients most
recently changed (about 10 MB at the defaults, tracemalloc); a feed whose changes are no
longer all kept gets None and reads its whole window. The counts are kept for every patient
(one int each).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict, deque
from typing import Final

from ..state.replica import Block
from ..state.versions import KEY_PREFIXES

__all__ = ["EditLog"]

PATIENTS: Final = 1024
PER_PATIENT: Final = 64


class EditLog:
    def __init__(self, *, patients: int = PATIENTS, per_patient: int = PER_PATIENT) -> None:
        self._patients = patients
        self._per_patient = per_patient
        self._mu = threading.Lock()
        self._count: dict[bytes, int] = defaultdict(int)
        self._tags: OrderedDict[bytes, deque[tuple[int, bytes]]] = OrderedDict()

    def saw(self, block: Block) -> None:
        """Note the document changes of a stored block. Never raises (it runs in the node's
        syncing thread): a key that does not parse is not a change this log knows of."""
        changed = []
        for key in block.changes:
            if key.startswith(KEY_PREFIXES):
                parts = key.split("/")
                if len(parts) == 3:
                    try:
                        changed.append((bytes.fromhex(parts[1]), bytes.fromhex(parts[2])))
                    except ValueError:
                        continue
        if not changed:
            return
        with self._mu:
            for patient, tag in changed:
                self._count[patient] += 1
                kept = self._tags.pop(patient, None)
                if kept is None:
                    kept = deque(maxlen=self._per_patient)
                    if len(self._tags) >= self._patients:
                        self._tags.popitem(last=False)  # the least recently changed
                self._tags[patient] = kept
                kept.append((self._count[patient], tag))

    def count(self, patient: bytes) -> int:
        """How many changes of the patient's documents the stored blocks made."""
        with self._mu:
            return self._count.get(patient, 0)

    def since(self, patient: bytes, seen: int) -> tuple[int, list[bytes] | None]:
        """The count now, and the tags of the documents changed after the ``seen``-th change
        (oldest first; a tag twice if changed twice), or None when they are not all kept."""
        with self._mu:
            now = self._count.get(patient, 0)
            kept = list(self._tags.get(patient, ()))
        if now == seen:
            return now, []
        if now < seen or not kept or kept[0][0] > seen + 1:
            return now, None
        return now, [tag for n, tag in kept if n > seen]
