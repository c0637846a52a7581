"""Zero-knowledge claims over a patient's CGM days (issue 19): commit, prove, verify offline.

- ``commit_windows``: for each whole local day of the patient's (her zone: node/localdays.py),
  the node records one ``zk.day`` transaction (state/zkdays.py): a salted Poseidon commitment
  over the slots of that day, filled from the readings of the ``data.commit`` batches already
  on the ledger (the same device-signed readings their Merkle roots cover). The salt is
  derived from the patient's key-encryption key in the vault (HMAC-SHA-256, context
  "glucoledger zk day salt", reduced into the field): erasing her key (GDPR art. 17) leaves
  the commitment unopenable, like her batches.
- ``disclose``: the patient's signed disclosure (``zk.disclose``, state/zkdays.py): which
  claim, which period (her last N whole local days, fixed when she signs), to whom. It is on
  the ledger and in her audit trail before her node proves anything for her. To whom is
  sealed for her node (node/zkrecipient.py): the consortium replicates the disclosure, only
  her node reads the recipient, and erasing her key erases it.
- ``withdraw``: the patient withdraws a disclosure (``zk.withdraw``): her node proves nothing
  more under it (``disclosure_withdrawn``). The claim files already made stay proofs about
  past days: a withdrawal cannot reach copies she gave away, and the verifier's answer does
  not change (it names what was proved, not today's consent).
- ``prove_claim``: the claim file, only under a disclosure of hers (``disclosure``) whose
  words and period it proves; without one it is refused (``PermissionDeniedError``,
  ``no_disclosure``) before anything is committed or proved. It names the claim's words,
  the patient, the circuit profile and setup, and carries, per day, the ``zk.day`` envelope
  with the proof that it was accepted in its block (node/proofs.py ``ordered_proof``) and
  included in the claim's checkpoint, and the chained proofs (zk/chain.py).
- ``verify_claim``: offline, with the node's note key and the verifier's own copy of the
  verification keys. Every public input comes from the verified ledger entries and from the
  claim's words; the patient's ``zk.disclose`` of exactly these words and days must be in
  the file, accepted and in the log at the checkpoint (so she authorized the proof); the
  result names the claim, the period and the checkpoint, nothing else.

Raises InputError (claim words, days), PermissionDeniedError (no disclosure), NotFoundError
(no data for a day), RejectedError (``claim_false``, ``unprovable``, ``commitment_mismatch``),
VerificationError and MalformedError (verify), BackendError (toolchain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from ..crypto import PrivateKey
from ..errors import (
    ConsistencyError,
    GlucoledgerError,
    InputError,
    MalformedError,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    VerificationError,
)
from ..glucose.readings import CgmReading
from ..ledger import merkle
from ..ledger.checkpoint import Checkpoint, NoteVerifier, parse_note
from ..ledger.tx import SignedTx
from ..state.accounts_model import account_id, single_key_policy
from ..state.zkdays import zk_day_key, zk_disclosure_key
from ..vault.store import Vault
from ..zk.chain import Window, prove_chain, verify_chain, witness
from ..zk.claims import parse
from ..zk.toolchain import PROFILES, Keys, Profile, Toolchain
from ..zk.windows import SLOT_MS, commit_slots, day_slots
from .erasure import destroy_erased_keys
from .localdays import last_days, patient_zone
from .proofs import _b64, _unb64, dumps_proof, load_document, ordered_proof, verify_ordered
from .service import Node, Receipt
from .zkcheck import day_salt
from .zkrecipient import open_recipient, seal_recipient

__all__ = ["CLAIM_KEYS", "CLAIM_TYPE", "MAX_CLAIM", "Disclosure", "VerifiedClaim", "ZkClaims",
           "dumps_claim", "verify_claim", "window_bounds"]

#: v2: the coverage of percentage and GMI claims; v3: of mean claims too, proved by one
#: claim proof per bound (zk/claims.py ``inequalities``)
CLAIM_TYPE: Final = "glucoledger/zk-claim/v3"
_OLDER_CLAIMS: Final = (b'"glucoledger/zk-claim/v1"', b'"glucoledger/zk-claim/v2"')

CLAIM_KEYS: Final = {"type", "claim", "patient", "profile", "keys", "windows", "proofs",
                "disclosure", "checkpoint"}
MAX_CLAIM: Final = 8 << 20
MAX_DAYS: Final = 90
_DAY_MIN, _DAY_MAX = 23 * 3_600_000, 25 * 3_600_000


def window_bounds(day: date, zone: Any, profile: Profile) -> tuple[int, int]:
    """The window of local ``day`` in ``zone``: from its midnight to the next, cut to the
    profile's slots (epoch ms)."""
    start = int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)
    end = int(datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).timestamp()
              * 1000)
    return start, min(end, start + profile.slots * SLOT_MS)


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A patient's ``zk.disclose`` as the state recorded it."""

    id: bytes
    patient: bytes
    claim: str
    start: int
    end: int
    days: int
    #: To whom, in her words ("" for nobody named); None where it cannot be read: on a node
    #: without her vault key (another member's), or once her key was erased.
    to: str | None
    height: int
    time_ms: int
    index: int
    withdrawn_height: int | None = None

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_height is not None


class ZkClaims:
    """The node's side of zero-knowledge claims, for one circuit profile."""

    def __init__(self, node: Node, vault: Vault, tc: Toolchain | None = None) -> None:
        self.node = node
        self.vault = vault
        self.tc = tc or Toolchain(PROFILES["day"])
        self.account = account_id("node", single_key_policy(node.node_key.public))

    @property
    def profile(self) -> Profile:
        return self.tc.profile

    def salt(self, patient: bytes, start: int) -> int:
        return day_salt(self.vault.kek(patient, "cgm"), start)

    def slots(self, patient: bytes, start: int, end: int, before: int | None = None
              ) -> list[int]:
        """The window's slots from the cgm batches ordered before log index ``before`` (a
        recorded day: what its commitment holds), or (None) ordered so far: the committed
        rows, and a pending row whose ``data.commit`` the ledger accepted (its settle was
        cut short by a crash or a failed write). Under the vault's ordering lock (see
        ``record_windows``) that is exactly what a ``zk.day`` ordered next must hold."""
        rows = [r for r in self.vault.batches(patient, "cgm")
                if r.end > start and r.start < end
                and (before is None or (r.tx_index is not None and r.tx_index < before))]
        if before is None:
            pending = [r for r in self.vault.batches(patient, "cgm", status="pending")
                       if r.end > start and r.start < end]
            found = self.node.store.find_results([r.tx_hash for r in pending]) if pending else {}
            rows += [r for r in pending
                     if any(t.decoded_result().ok for t in found.get(r.tx_hash, []))]
        readings: list[tuple[int, float]] = []
        for row in rows:
            _, batch = self.vault.open(row)
            readings += [(r.time_ms, r.mgdl) for r in batch.items
                         if isinstance(r, CgmReading)]
        return day_slots(readings, start, end, self.profile.slots)

    def record(self, patient: bytes, start: int) -> dict[str, Any] | None:
        value = self.node.state.get(zk_day_key(patient, start))
        return None if value is None else dict(value)

    def day_body(self, patient: bytes, start: int, end: int) -> dict[str, Any]:
        """The ``zk.day`` body of the window from the batches ordered so far. Raises
        NotFoundError for a window with no reading. Ordered only by ``record_windows``,
        which computes it under the ordering lock."""
        slots = self.slots(patient, start, end)
        if not any(slots):
            raise NotFoundError(f"no CGM reading between {_iso(start)} and {_iso(end)}: a "
                                "claim covers days with data")
        commit = commit_slots(slots, self.salt(patient, start), self.profile.per)
        return {"patient": patient, "start": start, "end": end, "slots": self.profile.slots,
                "per": self.profile.per, "commit": commit.to_bytes(32, "big")}

    def record_windows(self, windows: Sequence[tuple[bytes, int, int]], *,
                       failed: Callable[[bytes, GlucoledgerError], None] | None = None
                       ) -> list[Receipt]:
        """Commit each (patient, start, end) window that has readings and no commitment
        yet, in one submission (one block); the receipts of those submitted. A window that
        cannot be read (a damaged batch, an erased key) raises, or with ``failed`` is
        reported to it (patient, error) and the others go on.

        Computed and ordered under the vault's ordering lock, which every ingest group holds
        from writing its rows until they are settled: no upload is ordered between the
        reading of the rows and the ``zk.day``, and none ordered before it is still
        unsettled, so the commitment holds exactly the batches ordered before it, as
        ``verify`` recomputes it (without the lock, uploads ordered meanwhile made ``verify``
        report a false tamper). Under the node account's lock too, so no other commitment
        (a proof's, ``zk-commit``) comes between the check and the order."""
        node = self.node
        with self.vault.ordering(), node.account_lock(self.account):
            # what another process on the folder ordered; a day's salt is never made from a
            # stream key an erasure ordered before it targets
            destroy_erased_keys(node, self.vault)
            todo = []
            for patient, start, end in windows:
                if self.record(patient, start) is not None:
                    continue
                try:
                    todo.append(self.day_body(patient, start, end))
                except NotFoundError:
                    continue  # no reading that day: nothing to commit
                except GlucoledgerError as exc:
                    if failed is None:
                        raise
                    failed(patient, exc)
            if not todo:
                return []
            first = node.next_nonce(self.account)
            envs = [node.build("zk.day", b, self.account, [node.node_key], first + i).raw
                    for i, b in enumerate(todo)]
            return node.submit(envs)

    def commit_window(self, patient: bytes, start: int, end: int) -> dict[str, Any]:
        """Record the window's commitment if it has none yet; return the state record.
        Raises NotFoundError for a window with no reading, RejectedError if the ledger
        refused it."""
        receipts = (self.record_windows([(patient, start, end)])
                    if self.record(patient, start) is None else [])
        for r in receipts:
            if not r.ok and r.result.code != "window_committed":
                raise RejectedError(r.result.message, code=r.result.code)
        rec = self.record(patient, start)
        if rec is None:  # nothing was submitted: the day has no reading
            raise NotFoundError(f"no CGM reading between {_iso(start)} and {_iso(end)}: a "
                                "claim covers days with data")
        return rec

    def period(self, patient: bytes, days: int, now_ms: int) -> list[tuple[int, int]]:
        """The windows of the last ``days`` whole local days in the patient's zone."""
        if not 1 <= days <= MAX_DAYS:
            raise InputError(f"a claim covers 1 to {MAX_DAYS} days")
        span = last_days(self.node.data_dir, patient, days, now_ms)
        first = datetime.fromtimestamp(span.start_ms / 1000, UTC).astimezone(span.zone).date()
        return [window_bounds(first + timedelta(days=i), span.zone, self.profile)
                for i in range(days)]

    def commit_days(self, patient: bytes, days: int, now_ms: int) -> list[dict[str, Any]]:
        """Commit the last ``days`` whole local days that have readings and no commitment
        yet (run after midnight, e.g. nightly): the days a later claim will cover are then
        committed before anyone asks. Returns the records of the days with data."""
        out = []
        for s, e in self.period(patient, days, now_ms):
            try:
                out.append(self.commit_window(patient, s, e))
            except NotFoundError:
                continue  # a day without readings has nothing to commit
        return out

    def disclose(self, patient: bytes, keys: Sequence[PrivateKey], words: str, days: int,
                 now_ms: int, to: str = "") -> Disclosure:
        """Sign and order the patient's disclosure of ``words`` over her last ``days`` whole
        local days (fixed now), to ``to``. Raises InputError, RejectedError."""
        claim = parse(words)
        windows = self.period(patient, days, now_ms)
        start, end = windows[0][0], windows[-1][1]
        body = {"claim": claim.words, "start": start, "end": end, "days": days,
                "to": seal_recipient(self.vault, patient, to.strip(), claim.words, start, end,
                                     days)}
        stx, _ = self.node.send("zk.disclose", body, patient, keys)
        return self.disclosure(patient, stx.tx_hash)

    def disclosure(self, patient: bytes, ident: bytes | str) -> Disclosure:
        """The patient's disclosure ``ident`` (its transaction hash, or 8+ hex digits of
        it). Raises PermissionDeniedError ``no_disclosure`` when she signed none such."""
        if isinstance(ident, bytes):
            rec = self.node.state.get(zk_disclosure_key(ident))
            found = [] if rec is None else [(ident, rec)]
        else:
            text = ident.strip().lower()
            found = []
            if len(text) >= 8 and all(c in "0123456789abcdef" for c in text):
                found = [(bytes.fromhex(k.split("/")[1]), self.node.state.get(k))
                         for k in self.node.state.keys("zkdisclose/" + text[:64])]
        # Hers only, before counting: how many other patients' disclosures share a prefix
        # is not hers to learn.
        found = [(i, r) for i, r in found if r is not None and r["patient"] == patient]
        if len(found) > 1:
            shown = ident.hex() if isinstance(ident, bytes) else ident.strip().lower()
            raise InputError(f"{shown} starts {len(found)} of your disclosures: give more "
                             "digits")
        if not found:
            raise PermissionDeniedError(
                "no disclosure of this patient with that id: she signs one first (`glucoledger"
                " prove-claim` without --disclosure, or “Share a proof” in the portal), then "
                "her node proves under it", code="no_disclosure")
        i, r = found[0]
        withdrawn = r.get("withdrawn")
        return Disclosure(i, patient, r["claim"], r["start"], r["end"], r["days"],
                          open_recipient(self.vault, patient, r),
                          r["height"], r["time"], r["index"],
                          None if withdrawn is None else int(withdrawn["height"]))

    def withdraw(self, patient: bytes, keys: Sequence[PrivateKey], ident: bytes | str
                 ) -> Disclosure:
        """Sign and order the patient's withdrawal of her disclosure ``ident`` (its hash, or
        8 to 64 hex digits of it); the disclosure as it now stands. Raises InputError (an
        id that is not hex digits), PermissionDeniedError ``no_disclosure``, RejectedError
        ``already_withdrawn``."""
        if isinstance(ident, str):
            ident = ident.strip().lower()
            if not 8 <= len(ident) <= 64 or any(c not in "0123456789abcdef" for c in ident):
                raise InputError("a disclosure id is 8 to 64 hex digits, as the audit trail "
                                 "shows it")
        d = self.disclosure(patient, ident)
        if d.withdrawn:
            raise RejectedError(f"this disclosure was withdrawn already, at height "
                                f"{d.withdrawn_height}", code="already_withdrawn")
        self.node.send("zk.withdraw", {"disclosure": d.id}, patient, keys)
        return self.disclosure(patient, d.id)

    def disclosures(self, patient: bytes) -> list[Disclosure]:
        """Every disclosure the patient signed, oldest first."""
        out = []
        for key in list(self.node.state.keys("zkdisclose/")):
            rec = self.node.state.get(key)
            if rec is not None and rec["patient"] == patient:
                out.append(self.disclosure(patient, bytes.fromhex(key.split("/")[1])))
        return sorted(out, key=lambda d: d.height)

    def disclosed_windows(self, d: Disclosure) -> list[tuple[int, int]]:
        """The windows of the disclosure's period, in the patient's zone today. Raises
        PermissionDeniedError when they no longer match it (her zone changed)."""
        zone = patient_zone(self.node.data_dir, d.patient)[1]
        first = datetime.fromtimestamp(d.start / 1000, UTC).astimezone(zone).date()
        windows = [window_bounds(first + timedelta(days=i), zone, self.profile)
                   for i in range(d.days)]
        if windows[0][0] != d.start or windows[-1][1] != d.end:
            raise PermissionDeniedError(
                "the disclosure's period no longer matches the patient's local days (her time "
                "zone changed since she signed it): she signs a new one", code="no_disclosure")
        return windows

    def prove_claim(self, patient: bytes, disclosure: bytes | str) -> dict[str, Any]:
        """Prove the claim the patient disclosed (``disclosure``: its id) over its period,
        committing any uncommitted day of it first. Raises PermissionDeniedError
        ``no_disclosure`` (nothing is committed or proved), RejectedError, BackendError."""
        d = self.disclosure(patient, disclosure)
        if d.withdrawn:
            raise PermissionDeniedError(
                f"the patient withdrew this disclosure at height {d.withdrawn_height}: her "
                "node proves nothing more under it. She signs a new one to share a proof "
                "again", code="disclosure_withdrawn")
        claim = parse(d.claim)
        windows = self.disclosed_windows(d)
        records = [self.commit_window(patient, s, e) for s, e in windows]
        witnesses = []
        for (s, e), rec in zip(windows, records, strict=True):
            w = Window(s, e, int.from_bytes(rec["commit"], "big"))
            witnesses.append(witness(w, self.slots(patient, s, e, before=rec["index"]),
                                     self.salt(patient, s), self.profile.per))
        proofs = prove_chain(self.tc, claim, witnesses)
        note = self.node.checkpoint()
        cp = Checkpoint.parse_body(parse_note(note).text)
        def entry(index: int) -> dict[str, Any]:
            return {"commit": _b64(self.node.store.tx_at(index).envelope),
                    **ordered_proof(self.node, index),
                    "at_checkpoint": [_b64(h) for h in self.node.inclusion_proof(index,
                                                                                  cp.size)]}

        p = self.profile
        return {"type": CLAIM_TYPE, "claim": claim.words, "patient": patient.hex(),
                "profile": {"name": p.name, "slots": p.slots, "per": p.per},
                "keys": self.tc.keys().digest,
                "windows": [entry(rec["index"]) for rec in records], "proofs": proofs,
                "disclosure": entry(d.index), "checkpoint": note.decode("utf-8")}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="minutes")


@dataclass(frozen=True, slots=True)
class VerifiedClaim:
    """What a verifier learns: the claim, the period, the checkpoint. Nothing else."""

    claim: str
    days: int
    start_ms: int
    end_ms: int
    checkpoint_size: int
    signer: str

    def describe(self) -> str:
        return (f"{self.claim} over {self.days} day(s), {_iso(self.start_ms)} to "
                f"{_iso(self.end_ms)} (UTC), at checkpoint {self.checkpoint_size} signed by "
                f"{self.signer}")


def verify_claim(data: bytes, verifier: NoteVerifier, keys: Keys, *,
                 checkpoint: bytes | None = None) -> VerifiedClaim:
    """Check a claim file offline. ``checkpoint``: the signed note the verifier holds; the
    claim must be made at it. Raises MalformedError, VerificationError (SignatureError,
    ConsistencyError)."""
    try:
        doc = load_document(data, limit=MAX_CLAIM, keys=CLAIM_KEYS, doc_type=CLAIM_TYPE,
                            what="claim file")
    except MalformedError:
        if len(data) <= MAX_CLAIM and any(old in data for old in _OLDER_CLAIMS):
            raise MalformedError(
                "this claim file is of an older format, made before every claim had to prove "
                "the sensor was worn (readings in 70 % of the five-minute slots): ask the "
                "patient's node for a new proof") from None
        raise
    claim = parse(doc["claim"]) if isinstance(doc["claim"], str) else None
    if claim is None or claim.words != doc["claim"]:
        raise MalformedError("the claim's words are not in canonical form")
    p = keys.profile
    if doc["profile"] != {"name": p.name, "slots": p.slots, "per": p.per}:
        raise VerificationError(f"the claim was proved with the {doc['profile']!r} circuit "
                                f"profile; these keys are for {p.name!r}")
    if doc["keys"] != keys.digest:
        raise VerificationError("the claim was proved under another setup than these "
                                "verification keys (ask which ceremony made it)")
    if not isinstance(doc["patient"], str) or len(doc["patient"]) != 64 or any(
            c not in "0123456789abcdefABCDEF" for c in doc["patient"]):
        raise MalformedError("patient is 64 hex digits")
    patient = bytes.fromhex(doc["patient"])
    if not isinstance(doc["checkpoint"], str):
        raise MalformedError("checkpoint is the signed note text")
    note_bytes = doc["checkpoint"].encode("utf-8")
    if checkpoint is not None and checkpoint.strip() != note_bytes.strip():
        raise VerificationError("the claim was made at another checkpoint than the one "
                                "given: ask for a proof at yours, or pass the claim's")
    note = parse_note(note_bytes)
    signer = note.verify([verifier])[0]
    cp = Checkpoint.parse_body(note.text)
    entries = doc["windows"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DAYS:
        raise MalformedError(f"windows is a list of 1 to {MAX_DAYS} days")
    windows: list[Window] = []
    for i, entry in enumerate(entries):
        b = _at_checkpoint(entry, verifier, cp, "zk.day", "a window entry").tx.body
        if b["patient"] != patient:
            raise VerificationError(f"day {i + 1}'s commitment is another patient's")
        if (b["slots"], b["per"]) != (p.slots, p.per):
            raise VerificationError(f"day {i + 1}'s commitment has another slot layout")
        if windows and not _DAY_MIN <= b["start"] - windows[-1].start <= _DAY_MAX:
            raise ConsistencyError(f"day {i + 1} does not follow day {i}: a claim covers "
                                   "consecutive days")
        windows.append(Window(b["start"], b["end"], int.from_bytes(b["commit"], "big")))
    _check_disclosure(doc["disclosure"], verifier, cp, patient, claim.words, windows)
    verify_chain(doc["proofs"], keys, claim, windows)
    return VerifiedClaim(claim.words, len(windows), windows[0].start, windows[-1].end,
                         cp.size, signer)


def _at_checkpoint(entry: object, verifier: NoteVerifier, cp: Checkpoint, tx_type: str,
                   what: str) -> SignedTx:
    """The ``tx_type`` envelope of ``entry``, accepted in its block (``verify_ordered``) and
    in the log at the claim's checkpoint ``cp``. Raises MalformedError, SignatureError or
    ConsistencyError."""
    if not isinstance(entry, dict):
        raise MalformedError(f"{what} is an object")
    stx: SignedTx = verify_ordered(entry, verifier, "commit", tx_type)[0]
    if not isinstance(entry.get("at_checkpoint"), list):
        raise MalformedError("at_checkpoint is a list")
    merkle.verify_inclusion(merkle.leaf_hash(_unb64(entry["commit"], "commit")),
                            entry["log_index"], cp.size,
                            [_unb64(h, "at_checkpoint hash") for h in entry["at_checkpoint"]],
                            cp.root)
    return stx


def _check_disclosure(entry: object, verifier: NoteVerifier, cp: Checkpoint, patient: bytes,
                      words: str, windows: list[Window]) -> None:
    """The patient's ``zk.disclose`` of these words over exactly these days was accepted (so
    signed by her keys: the state machine authorized it) and is in the log at the claim's
    checkpoint. Raises MalformedError or VerificationError."""
    stx = _at_checkpoint(entry, verifier, cp, "zk.disclose", "disclosure")
    b = stx.tx.body
    if stx.tx.account != patient:
        raise VerificationError("the disclosure was signed by another account than the "
                                "claim's patient: she did not authorize this proof")
    if (b["claim"], b["start"], b["end"], b["days"]) != (
            words, windows[0].start, windows[-1].end, len(windows)):
        raise VerificationError("the patient's disclosure is for another claim or other "
                                "days than this proof: she did not authorize it")


def dumps_claim(doc: dict[str, Any]) -> bytes:
    """The claim file's canonical bytes (sorted keys, no spaces, one newline)."""
    return dumps_proof(doc)

