"""The ``zk.day`` contract: a salted Poseidon commitment to one window of a patient's CGM data.

Body::

    {patient, start, end, slots, per, commit}

- ``start``/``end``: the window, epoch ms: a local day of the patient's (the edge computes it
  in her zone; node/zkclaims.py), at most 25 hours and ``slots`` five-minute slots.
- ``slots``/``per``: the circuit profile (slots per window, slots per field element).
- ``commit``: the Poseidon commitment (zk/windows.py ``commit_slots``), 32 bytes big-endian,
  a BN254 scalar-field element, over the readings of the ``data.commit`` batches ordered
  before this transaction (the same device-signed readings their Merkle roots cover).

One commitment per patient and window start, ever (``window_committed``): a verifier that
finds an accepted ``zk.day`` for a day knows it is the only one, so a prover cannot choose
among several. Sent by a ``node`` account meeting its ``data`` threshold.

Refusals: ``not_node``, ``window_committed``, ``malformed``.

``zk.disclose``: the patient's signed disclosure (issue 19: "under a disclosure she signs,
recorded on the ledger and in her audit trail"). Body::

    {claim, start, end, days, to}

- ``claim``: the claim's canonical words (zk/claims.py ``parse(...).words``);
- ``start``/``end``: the period, epoch ms: the first window's start and the last window's
  end, ``days`` whole local days of hers (at most 90; the edge computes them in her zone);
- ``to``: to whom, sealed for her node (:data:`SEALED_TO_BYTES` bytes, always the same size):
  her words (at most 80 characters, "" for nobody named), padded and sealed with AES-GCM
  under a key derived from her CGM key-encryption key in her node's vault
  (``node.zkclaims``). Every member of the consortium replicates the ledger; none but her
  node learns whom she told, or whether she named anyone, and erasing her key erases it.
  The state machine checks the size only.

Signed by the patient's own keys at her ``grant`` threshold (a disclosure is consent). Stored
at ``zkdisclose/<tx hash>`` with the block's height and time and its log index, and
appended to her audit trail (``audit_append``, kind ``zk_disclosure``). Her node proves a
claim only under a disclosure of hers with the same words and period, and the claim file
carries it for the verifier (node/zkclaims.py). Refusals: ``not_patient``, ``malformed``.

``zk.withdraw``: the patient withdraws a disclosure of hers. Body ``{disclosure}`` (its
transaction hash). From then on her node proves nothing more under it (node/zkclaims.py:
``disclosure_withdrawn``); a claim file made before stays what it is, a proof about days
that are past, and withdrawing it does not reach the copies she gave away (the portal and
the CLI say so). The record at ``zkdisclose/<hash>`` gains ``withdrawn`` (height, time, the
withdrawal's hash) and her audit trail the withdrawal (kind ``zk_withdrawal``). Signed by
her own keys at her ``grant`` threshold, like the disclosure. Refusals: ``not_patient``,
``unknown_disclosure`` (none such, or another patient's: the same answer, so nobody learns
whether someone else disclosed), ``already_withdrawn``, ``malformed``.
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import InputError, RejectedError
from ..ledger.tx import SignedTx
from ..zk.claims import parse as parse_claim
from .accounts_model import load_account
from .grants import audit_append
from .machine import Body, Context, authorize, body_field, register, require
from .store import State

__all__ = ["DISCLOSE_FIELDS", "FIELDS", "FIELD_MODULUS", "MAX_DISCLOSE_DAYS", "MAX_TO",
           "SEALED_TO_BYTES", "ZkDay",
           "ZkDisclose", "ZkWithdraw", "zk_day_key", "zk_disclosure_key", "zk_withdrawal_key"]

FIELDS: Final = frozenset({"patient", "start", "end", "slots", "per", "commit"})
FIELD_MODULUS: Final = (
    21888242871839275222246405745257275088548364400416034343698204186575808495617)
SLOT_MS: Final = 300_000
MAX_WINDOW_MS: Final = 25 * 3_600_000
DISCLOSE_FIELDS: Final = frozenset({"claim", "start", "end", "days", "to"})
MAX_DISCLOSE_DAYS: Final = 90
MAX_TO: Final = 80
#: The sealed ``to`` of a ``zk.disclose``: crypto.seal's version byte and nonce (13 bytes),
#: the recipient's UTF-8 words padded with zero bytes to 4 bytes a character, the tag (16).
SEALED_TO_BYTES: Final = 13 + 4 * MAX_TO + 16


def zk_day_key(patient: bytes, start: int) -> str:
    return f"zkday/{patient.hex()}/{start}"


def zk_disclosure_key(tx_hash: bytes) -> str:
    return f"zkdisclose/{tx_hash.hex()}"


def zk_withdrawal_key(tx_hash: bytes) -> str:
    """Which disclosure the ``zk.withdraw`` ``tx_hash`` withdrew (her audit trail reads it)."""
    return f"zkwithdraw/{tx_hash.hex()}"


@dataclass(frozen=True, slots=True)
class ZkDay(Body):
    """The body of ``zk.day``: one window's Poseidon commitment (all fields required)."""

    patient: bytes
    start: int
    end: int
    slots: int
    per: int
    commit: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ZkDay:
        """Raises RejectedError (``malformed``) or MalformedError."""
        if set(body) != FIELDS:
            raise RejectedError(f"zk.day takes exactly {', '.join(sorted(FIELDS))}",
                                code="malformed")
        patient = body_field(body, "patient", bytes)
        commit = body_field(body, "commit", bytes)
        start, end = body_field(body, "start", int), body_field(body, "end", int)
        slots, per = body_field(body, "slots", int), body_field(body, "per", int)
        require(len(patient) == 32 and len(commit) == 32, "malformed",
                "patient and commit are 32 bytes")
        require(int.from_bytes(commit, "big") < FIELD_MODULUS, "malformed",
                "commit is a BN254 scalar-field element")
        require(0 <= start < end and end - start <= MAX_WINDOW_MS, "malformed",
                "a window is at most 25 hours, start before end")
        require(1 <= per <= 25 and 1 <= slots <= 300 and slots % per == 0
                and end - start <= slots * SLOT_MS, "malformed",
                "slots (at most 300, a multiple of per <= 25) cover the window")
        return cls(bytes(patient), start, end, slots, per, bytes(commit))

    def to_body(self) -> dict[str, Any]:
        return {"patient": self.patient, "start": self.start, "end": self.end,
                "slots": self.slots, "per": self.per, "commit": self.commit}


@register("zk.day", action="data", body=ZkDay)
def _zk_day(state: State, stx: SignedTx, ctx: Context) -> None:
    """Record one window's Poseidon commitment, once."""
    node = load_account(state, stx.tx.account)
    if node.kind != "node":
        raise RejectedError(f"window commitments are sent by a node account, not a "
                            f"{node.kind} account", code="not_node")
    authorize(node, stx, "data")
    b = ZkDay.parse(stx.tx.body)
    key = zk_day_key(b.patient, b.start)
    if key in state:
        raise RejectedError(f"the window starting {b.start} of patient {b.patient.hex()[:16]} "
                            "already has its commitment; a window is committed once",
                            code="window_committed")
    state.put(key, {"end": b.end, "slots": b.slots, "per": b.per, "commit": b.commit,
                    "index": ctx.index})


@dataclass(frozen=True, slots=True)
class ZkDisclose(Body):
    """The body of ``zk.disclose``: which claim, which days, to whom (all fields required)."""

    claim: str
    start: int
    end: int
    days: int
    to: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ZkDisclose:
        """Raises RejectedError (``malformed``) or MalformedError."""
        if set(body) != DISCLOSE_FIELDS:
            raise RejectedError(f"zk.disclose takes exactly {', '.join(sorted(DISCLOSE_FIELDS))}",
                                code="malformed")
        claim, to = body_field(body, "claim", str), body_field(body, "to", bytes)
        start, end = body_field(body, "start", int), body_field(body, "end", int)
        days = body_field(body, "days", int)
        try:
            canonical = parse_claim(claim).words
        except InputError as exc:
            raise RejectedError(str(exc), code="malformed") from None
        require(canonical == claim, "malformed",
                f"the claim's words are not canonical: write {canonical!r}")
        require(1 <= days <= MAX_DISCLOSE_DAYS, "malformed",
                f"a disclosure covers 1 to {MAX_DISCLOSE_DAYS} whole days")
        require(0 <= start < end and end - start <= days * MAX_WINDOW_MS, "malformed",
                "the period starts before it ends and spans at most its days")
        require(len(to) == SEALED_TO_BYTES, "malformed",
                f"to is the recipient sealed for the patient's node: {SEALED_TO_BYTES} bytes")
        return cls(claim, start, end, days, bytes(to))

    def to_body(self) -> dict[str, Any]:
        return {"claim": self.claim, "start": self.start, "end": self.end, "days": self.days,
                "to": self.to}


def _patient_only(state: State, stx: SignedTx, rule: str) -> None:
    """Refuse (``not_patient``) unless the sender is a patient account; ``rule`` says who."""
    who = load_account(state, stx.tx.account)
    if who.kind != "patient":
        raise RejectedError(f"{rule}, not a {who.kind} account", code="not_patient")


@register("zk.disclose", action="grant", body=ZkDisclose)
def _zk_disclose(state: State, stx: SignedTx, ctx: Context) -> None:
    """Record the patient's disclosure of one claim over one period, in her audit trail."""
    _patient_only(state, stx, "a disclosure is signed by the patient whose data it proves")
    b = ZkDisclose.parse(stx.tx.body)
    state.put(zk_disclosure_key(stx.tx_hash), {
        "patient": stx.tx.account, **b.to_body(), "height": ctx.height, "time": ctx.time_ms,
        "index": ctx.index})
    audit_append(state, stx.tx.account, "zk_disclosure", stx.tx_hash)


@dataclass(frozen=True, slots=True)
class ZkWithdraw(Body):
    """The body of ``zk.withdraw``: which disclosure (its transaction hash)."""

    disclosure: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ZkWithdraw:
        """Raises RejectedError (``malformed``) or MalformedError."""
        if set(body) != {"disclosure"}:
            raise RejectedError("zk.withdraw takes exactly disclosure", code="malformed")
        disclosure = body_field(body, "disclosure", bytes)
        require(len(disclosure) == 32, "malformed",
                "disclosure is the 32-byte hash of a zk.disclose")
        return cls(bytes(disclosure))

    def to_body(self) -> dict[str, Any]:
        return {"disclosure": self.disclosure}


@register("zk.withdraw", action="grant", body=ZkWithdraw)
def _zk_withdraw(state: State, stx: SignedTx, ctx: Context) -> None:
    """Withdraw one of the patient's disclosures: no more proofs under it."""
    _patient_only(state, stx, "a disclosure is withdrawn by the patient who signed it")
    b = ZkWithdraw.parse(stx.tx.body)
    key = zk_disclosure_key(b.disclosure)
    rec = state.get(key)
    if rec is None or rec["patient"] != stx.tx.account:
        raise RejectedError("you signed no disclosure with that id", code="unknown_disclosure")
    if rec.get("withdrawn") is not None:
        raise RejectedError(f"this disclosure was withdrawn already, at height "
                            f"{rec['withdrawn']['height']}", code="already_withdrawn")
    state.put(key, {**rec, "withdrawn": {"height": ctx.height, "time": ctx.time_ms,
                                         "tx": stx.tx_hash}})
    state.put(zk_withdrawal_key(stx.tx_hash), {"disclosure": b.disclosure})
    audit_append(state, stx.tx.account, "zk_withdrawal", stx.tx_hash)
