"""Research sharing, the service layer: studies, opt-in, de-identified releases, DP queries.

The contracts (state/research.py) decide who is in a release and charge the privacy budget;
this module builds what leaves the node, only after the contract's record is ordered
(write-ahead, as node/access.py):

- ``ResearchService.release`` submits ``research.release`` (form ``records``) on the
  sponsor's account, reads the participants and batches the contract recorded, opens those
  batches, writes de-identified rows (node/deid.py), generalises the quasi-identifiers until
  k-anonymous, re-checks k with pycanon and scans for Safe Harbor identifiers (fail closed:
  nothing leaves on a finding), builds the manifest, and has the node attest it with
  ``research.manifest`` (which also credits the days of sufficient data). Only then does it
  return the release bundle.
- A bundle (canonical JSON) holds the manifest (study, release, form, k, fields, the
  ``data.commit`` hashes of every batch drawn from, the number of leaves, the Merkle root),
  the participants table and the rows, and the proof that the ``research.manifest`` naming
  this manifest's hash was accepted under a signed checkpoint (node/proofs.py
  ``verify_ordered``). ``verify_bundle`` checks all of it offline; a changed row changes the
  root and fails. Leaves: RFC 9162 ``leaf_hash(canonical CBOR of the entry)``, participants
  first (by pseudonym), then rows (by pseudonym, stream, time).
- ``ResearchService.query`` submits ``research.release`` (form ``aggregate``); if the
  contract accepted it (so the budget is charged on the ledger first), it computes the
  statistic with OpenDP over one value per participant (24 for the hourly median glucose
  profile, each hour charged epsilon/24; for episode rates, her hypo- or hyperglycaemia
  episodes of the 2023 consensus, Battelino et al., Lancet Diabetes Endocrinol
  2023;11(1):42-57, as glucose/indices.py counts them, per week of sensor wear): a bounded
  mean (the number of
  participants is public: it is on the ledger) with Laplace noise calibrated by OpenDP's
  binary search so that the measurement's privacy map at d_in=2 (one participant changed
  under the symmetric distance) is at most the epsilon the ledger charged.
- Sufficient data for credit: a UTC day with at least 70 % of its 288 five-minute CGM slots
  (the consensus' wear threshold, Battelino et al. 2019, applied per day).

The node's research secret keys every pseudonym and date shift; profiles given at opt-in
never leave the node. Both are sealed under the node's master key (node/research_store.py).
"""

from __future__ import annotations

import base64
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .. import codec
from ..crypto import PrivateKey
from ..crypto.hashing import hmac_sha256, tagged_hash
from ..errors import (
    BackendError,
    ConsistencyError,
    InputError,
    MalformedError,
    NotFoundError,
    RejectedError,
)
from ..glucose.metrics import summarize
from ..glucose.readings import CgmReading, Record
from ..ledger import merkle
from ..ledger.checkpoint import Checkpoint, NoteVerifier
from ..state.access import erased_key
from ..state.accounts_model import account_id, single_key_policy
from ..state.research import release_key
from ..vault.store import Vault
from . import deid
from .nsversions import DEDUP_CONTEXT, doc_refs, superseded
from .proofs import _unb64, dumps_proof, load_document, ordered_proof, verify_ordered
from .research_store import ResearchStore
from .research_view import participation
from .service import Node

__all__ = ["BUNDLE_TYPE", "STATISTIC_WORDS", "DpAnswer", "ResearchService", "VerifiedRelease",
           "dumps_bundle", "verify_bundle"]

BUNDLE_TYPE: Final = "glucoledger/research-release/v1"
MANIFEST_TAG: Final = "research-manifest"
DAY_MS: Final = 86_400_000
SUFFICIENT_SLOTS: Final = 202  # 70 % of 288
#: Per-participant value bounds for the DP statistics (clamped before the mean).
BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "mean_glucose": (40.0, 400.0), "gmi": (40.0, 400.0), "time_in_range": (0.0, 100.0),
    "time_below_70": (0.0, 100.0), "time_below_54": (0.0, 100.0),
    "hourly_median_profile": (40.0, 400.0),
    # episodes per week of sensor wear, clamped at three a day of hypo, five of hyper
    "hypo1_episodes_per_week": (0.0, 21.0), "hypo2_episodes_per_week": (0.0, 21.0),
    "hyper1_episodes_per_week": (0.0, 35.0), "hyper2_episodes_per_week": (0.0, 35.0)}
WEEK_MS: Final = 7 * DAY_MS
#: Each statistic in words, for people (the portal).
STATISTIC_WORDS: Final[dict[str, str]] = {
    "mean_glucose": "Mean glucose (mg/dL)", "gmi": "GMI (%)",
    "time_in_range": "Time in range 70-180 mg/dL (%)",
    "time_below_70": "Time below 70 mg/dL (%)", "time_below_54": "Time below 54 mg/dL (%)",
    "hourly_median_profile": "Median glucose by hour of the day (mg/dL, 24 values)",
    "hypo1_episodes_per_week": "Episodes below 70 mg/dL per week",
    "hypo2_episodes_per_week": "Episodes below 54 mg/dL per week",
    "hyper1_episodes_per_week": "Episodes above 180 mg/dL per week",
    "hyper2_episodes_per_week": "Episodes above 250 mg/dL per week"}
#: The statistic's name -> the Summary field counting its episodes (glucose/indices.py).
EPISODES: Final[dict[str, str]] = {
    "hypo1_episodes_per_week": "hypo1_episodes", "hypo2_episodes_per_week": "hypo2_episodes",
    "hyper1_episodes_per_week": "hyper1_episodes",
    "hyper2_episodes_per_week": "hyper2_episodes"}
MAX_BUNDLE: Final = 64 << 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


dumps_bundle = dumps_proof  # one canonical JSON form for every offline document


def manifest_hash(manifest: dict[str, Any]) -> bytes:
    return tagged_hash(MANIFEST_TAG, codec.encode(manifest))


def release_leaves(participants: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
                   ) -> list[bytes]:
    return [merkle.leaf_hash(codec.encode(e)) for e in (*participants, *rows)]


@dataclass(frozen=True, slots=True)
class DpAnswer:
    study: bytes
    query: bytes  # the research.release transaction that charged the budget
    statistic: str
    #: one value, or 24 (the hourly median profile, hour 0..23 of participants' local time)
    values: tuple[float, ...]
    epsilon: float
    participants: int
    spent: float
    budget: float

    @property
    def value(self) -> float:
        return self.values[0]


@dataclass(frozen=True, slots=True)
class VerifiedRelease:
    study: bytes
    release: bytes
    root: bytes
    rows: int
    participants: int
    batches: tuple[bytes, ...]
    checkpoint: Checkpoint
    signer: str


class ResearchService:
    def __init__(self, node: Node, vault: Vault) -> None:
        self.node = node
        self.vault = vault
        self.account = account_id("node", single_key_policy(node.node_key.public))
        self.store = ResearchStore(node.data_dir, node.master)

    # --- node-local secrets and profiles (sealed under the master key: research_store) ---
    def _secret(self) -> bytes:
        return self.store.secret()

    def set_profile(self, patient: bytes, profile: deid.Profile) -> None:
        """Keep what the participant told the node at opt-in (never released as is)."""
        self.store.set_profile(patient, profile)

    def profile(self, patient: bytes) -> deid.Profile:
        return self.store.profile(patient)

    # --- studies and participants (custodial keys sign; self-custody clients build the
    # same transactions themselves) -----------------------------------------------------------
    def register_study(self, sponsor: bytes, keys: Sequence[PrivateKey],
                       terms: dict[str, Any], members: Sequence[PrivateKey]) -> bytes:
        """Register a study; ``members`` are the member organizations' keys that accept it
        (at least the consortium's threshold). Raises RejectedError (the contract's code)."""
        stx, _ = self.node.send("study.register", terms, sponsor, [*keys, *members])
        return stx.tx_hash

    def amend_study(self, sponsor: bytes, keys: Sequence[PrivateKey], study: bytes,
                    terms: dict[str, Any], members: Sequence[PrivateKey]) -> None:
        self.node.send("study.amend", {"study": study, "terms": terms}, sponsor,
                       [*keys, *members])

    def close_study(self, sponsor: bytes, keys: Sequence[PrivateKey], study: bytes) -> None:
        self.node.send("study.close", {"study": study}, sponsor, keys)

    def join(self, patient: bytes, keys: Sequence[PrivateKey], study: bytes,
             streams: Sequence[str], fields: Sequence[str], until_ms: int,
             profile: deid.Profile | None) -> bytes:
        """Opt in (or re-consent): keep her profile on the node (None: the one she gave
        before), then sign her research grant under her multisig policy. Returns the grant
        id. Raises RejectedError, NotFoundError (no profile given, none kept), InputError
        (a birth date after today); a refused consent leaves the profile the node kept before
        as it was."""
        if profile is not None and profile.age_at(self.node.now_ms()) < 0:
            raise InputError(f"the birth date {profile.birth_date} is after today: give your "
                             "birth date as YYYY-MM-DD")
        before = self.store.profile(patient) if self.store.has_profile(patient) else None
        if profile is None and before is None:
            raise NotFoundError("this node has no research profile of yours yet: give your "
                                "details (kept on the node, never released as they are)")
        if profile is not None:
            self.set_profile(patient, profile)
        try:
            stx, _ = self.node.send("research.consent", {
                "study": study, "streams": list(streams), "fields": list(fields),
                "until": until_ms}, patient, keys)
        except BaseException:
            if profile is not None:  # put back what was kept before (or nothing)
                if before is None:
                    self.store.forget(patient)
                else:
                    self.set_profile(patient, before)
            raise
        return stx.tx_hash

    def withdraw(self, patient: bytes, keys: Sequence[PrivateKey], grant: bytes) -> None:
        """Withdraw: in no release or query from the next block on. Once she takes part in
        no study any more, the details she gave at opt-in are deleted from the node (she
        gives them again if she joins a study later)."""
        self.node.send("research.withdraw", {"grant": grant}, patient, keys)
        if not any(p.grant["status"] == "active"
                   for p in participation(self.node.state, patient)):
            self.store.forget(patient)

    def am_i_in(self, patient: bytes, bundle: bytes) -> tuple[bytes, ...]:
        """Her ``data.commit`` hashes that a release drew from (verified first; empty if
        she is not in it). Raises as ``verify_bundle`` does."""
        got = verify_bundle(bundle, self.node.verifier())
        mine = {row.tx_hash for row in self.vault.batches(patient)}
        return tuple(c for c in got.batches if c in mine)

    # --- the sponsor's side ------------------------------------------------------------------
    def _order(self, sponsor: bytes, keys: Sequence[PrivateKey], body: dict[str, Any]
               ) -> dict[str, Any]:
        stx, _receipt = self.node.send("research.release", body, sponsor, keys)
        record = self.node.state.get(release_key(stx.tx_hash))
        if record is None:  # pragma: no cover - an accepted release always records
            raise NotFoundError("the release record is missing from the state")
        return dict(record)

    def _records(self, part: dict[str, Any], lo: int, hi: int) -> list[Record]:
        """A participant's records in [lo, hi) of the streams she shares, counted as every
        clinical read counts them: a Nightscout document edited or deleted since its upload
        counts once, in its last version, or not at all (node/nsversions.py)."""
        state = self.node.state
        dedup = hmac_sha256(self.node.master, DEDUP_CONTEXT)
        out: list[Record] = []
        for ct in part["batches"]:
            if state.get(erased_key(ct)) is not None:
                continue  # erased by the patient: nothing to release
            row = self.vault.by_ct(ct)
            _salt, batch = self.vault.open(row)
            if batch.stream in part["streams"]:
                gone = superseded(state, row.patient, ct,
                                  doc_refs(dedup, row.patient, batch.items))
                out.extend(r for i, r in enumerate(batch.items)
                           if lo <= r.time_ms < hi and i not in gone)
        out.sort(key=lambda r: r.time_ms)
        return out

    def release(self, sponsor: bytes, keys: Sequence[PrivateKey], study: bytes) -> bytes:
        """Order a record-level release, build it, have the node attest it; return the bundle.

        Raises RejectedError (the contract's code: study closed, too few participants...),
        ConsistencyError when the de-identification checks fail (nothing is released).
        """
        _checker()
        rel = self._order(sponsor, keys, {"study": study, "form": "records"})
        srec = self.node.state.get("study/" + study.hex())
        skey = deid.study_key(self._secret(), study)
        profiles: dict[str, deid.Profile] = {}
        granted: dict[str, list[str]] = {}  # the fields each participant consented to
        rows: list[dict[str, Any]] = []
        days: list[list[Any]] = []
        identifiers: dict[str, list[str]] = {"account id": [], "name": [], "zip": [],
                                             "birth date": [], "device serial": []}
        for part in rel["participants"]:
            grant = self.node.state.get("rgrant/" + part["grant"].hex())
            patient = grant["patient"]
            pid = deid.pseudonym(skey, patient)
            shift = deid.date_shift_ms(skey, patient)
            prof = self.profile(patient)
            profiles[pid] = prof
            granted[pid] = part["fields"]
            identifiers["account id"].append(patient.hex())
            identifiers["name"].append(prof.name)
            identifiers["zip"].append(prof.zip)
            identifiers["birth date"].append(prof.birth_date)
            records = self._records(part, rel["from"], rel["to"])
            for r in records:
                row = deid.record_row(pid, r, shift)
                if row is not None:
                    rows.append(row)
            days.append([part["grant"], _sufficient_days(records)])
        identifiers["device serial"] = self._serials()
        fields = sorted(set(srec["fields"]))
        # pseudonyms are stable in a study: what earlier releases gave about them is fixed,
        # and the release joined with them by pseudonym must be k-anonymous too
        with self.store.released(study) as fixed:
            table, _levels = deid.generalise(profiles, fields, srec["k"], rel["time"],
                                             granted, fixed)
            participants = [{"pid": pid, **table[pid]} for pid in sorted(table)]
            _check_k(participants, fields, srec["k"])
            _check_k(deid.joined(table, fixed, fields), fields, srec["k"],
                     "joined by pseudonym with the study's earlier releases, it")
            findings = deid.scan_identifiers([*participants, *rows], identifiers)
            if findings:
                raise ConsistencyError("the release failed the Safe Harbor scan and was not "
                                       f"released: {findings[0]}")
            for pid, row in table.items():  # written before anything leaves the node
                fixed.setdefault(pid, row)
        rows.sort(key=lambda r: (r["pid"], r["stream"], r["time"]))
        leaves = release_leaves(participants, rows)
        manifest = {"type": "glucoledger/research-manifest/v1", "chain": self.node.chain,
                    "study": study, "release": rel["id"], "form": "records", "k": srec["k"],
                    "fields": fields, "purpose": srec["purpose"],
                    "batches": sorted(c for p in rel["participants"] for c in p["commits"]),
                    "leaves": len(leaves), "root": merkle.root_of(leaves)}
        mhash = manifest_hash(manifest)
        body = {"release": rel["id"], "manifest": mhash, "root": manifest["root"],
                "rows": len(rows), "days": days}
        stx = self.node.build("research.manifest", body, self.account, [self.node.node_key],
                              nonce=0)
        receipt = self.node.submit([stx.raw])[0]
        if not receipt.ok:
            raise RejectedError(f"the node's manifest was refused: {receipt.result.message}",
                                code=receipt.result.code)
        assert receipt.index is not None
        doc = {"type": BUNDLE_TYPE, "manifest": _b64(codec.encode(manifest)),
               "participants": participants, "rows": rows,
               "attestation": _b64(stx.raw), **ordered_proof(self.node, receipt.index)}
        return dumps_bundle(doc)

    def _serials(self) -> list[str]:
        out = []
        for key in self.node.state.keys("dev/"):
            rec = self.node.state.get(key)
            if isinstance(rec, dict) and isinstance(rec.get("serial"), str):
                out.append(rec["serial"])
        return out

    def query(self, sponsor: bytes, keys: Sequence[PrivateKey], study: bytes, statistic: str,
              epsilon: float) -> DpAnswer:
        """Charge ``epsilon`` on the ledger, then answer with OpenDP. Raises RejectedError
        (``budget_exhausted`` and the other codes of the contract) and changes nothing then."""
        if not 0 < epsilon <= 100:
            raise InputError("epsilon is a number above 0, at most 100")
        micro = round(epsilon * 1_000_000)
        rel = self._order(sponsor, keys, {"study": study, "form": "aggregate",
                                          "statistic": statistic, "epsilon": micro})
        per: list[list[float]] = []
        for part in rel["participants"]:
            cgm = [r for r in self._records(part, rel["from"], rel["to"])
                   if isinstance(r, CgmReading)]
            per.append(_participant_values(statistic, cgm))
        eps = micro / 1_000_000
        width = len(per[0]) if per else 1
        # a profile of 24 hourly means costs eps/24 each: sequential composition sums to eps
        out = tuple(_dp_mean([v[j] for v in per], BOUNDS[statistic], eps / width)
                    for j in range(width))
        if statistic == "gmi":  # post-processing of the DP mean keeps the guarantee
            out = (3.31 + 0.02392 * out[0],)
        srec = self.node.state.get("study/" + study.hex())
        return DpAnswer(study, rel["id"], statistic, out, eps, len(per),
                        srec["spent"] / 1_000_000, srec["budget"] / 1_000_000)


def _sufficient_days(records: Sequence[Record]) -> list[int]:
    slots: dict[int, set[int]] = {}
    for r in records:
        if isinstance(r, CgmReading):
            slots.setdefault(r.time_ms // DAY_MS, set()).add(r.time_ms % DAY_MS // 300_000)
    return sorted(d for d, s in slots.items() if len(s) >= SUFFICIENT_SLOTS)


def _participant_values(statistic: str, cgm: list[CgmReading]) -> list[float]:
    """One value per participant (24 for the hourly median profile); a participant without
    readings in the window counts as the lower bound, so the cohort size stays public."""
    lo = BOUNDS[statistic][0]
    if statistic == "hourly_median_profile":
        hours: dict[int, list[int]] = {}
        for r in cgm:  # her local clock hour
            hours.setdefault((r.time_ms // 60_000 + r.tz_offset_min) // 60 % 24, []).append(
                r.mgdl)
        overall = statistics.median(r.mgdl for r in cgm) if cgm else lo
        return [float(statistics.median(hours[h])) if h in hours else float(overall)
                for h in range(24)]
    if not cgm:
        return [lo]
    s = summarize(cgm)
    if statistic in EPISODES:  # the 2023 consensus' episodes, per week the sensor was worn
        count = int(getattr(s, EPISODES[statistic]))
        return [count * WEEK_MS / s.active_ms if s.active_ms > 0 else lo]
    return [{"mean_glucose": s.mean_dmgdl / 10, "gmi": s.mean_dmgdl / 10,
             "time_in_range": s.tir_bp / 100, "time_below_70": s.tbr70_bp / 100,
             "time_below_54": s.tbr54_bp / 100}[statistic]]


def _dp_mean(values: list[float], bounds: tuple[float, float], epsilon: float) -> float:
    """OpenDP: clamp, sized bounded mean, Laplace noise; privacy map checked <= epsilon."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False), size=len(values)),
             dp.symmetric_distance())
    meas = dp.binary_search_chain(
        lambda s: space >> dp.t.then_clamp(bounds) >> dp.t.then_mean()  # type: ignore[no-untyped-call]
        >> dp.m.then_laplace(scale=s), d_in=2, d_out=epsilon)
    if meas.map(2) > epsilon:  # pragma: no cover - binary_search_chain guarantees it
        raise ConsistencyError("the DP measurement would spend more than the charged epsilon")
    return float(meas(values))


def _checker() -> Any:
    """pycanon's anonymity module, or BackendError (checked before anything is ordered)."""
    try:
        from pycanon import anonymity  # type: ignore[import-untyped]
    except ImportError:
        raise BackendError("the independent k-anonymity checker (pycanon) is not installed on "
                           "this node, so no record-level release is built; see pyproject's "
                           "research extra") from None
    return anonymity


def _check_k(participants: list[dict[str, Any]], fields: list[str], k: int,
             what: str = "it") -> None:
    """Re-check k-anonymity with pycanon, an implementation independent of node/deid.py."""
    if not fields:
        return  # no quasi-identifier released: every participant looks alike
    import pandas as pd

    with warnings.catch_warnings():  # pycanon's pandas idioms warn under pandas 3
        warnings.simplefilter("ignore")
        got = int(_checker().k_anonymity(pd.DataFrame(participants), fields))
    if got < k:
        raise ConsistencyError(f"the release was withheld: {what} is {got}-anonymous, not "
                               f"{k}-anonymous; nothing was released (a release with more "
                               "participants may pass)")


# --- the verifier's side -------------------------------------------------------------------
def verify_bundle(data: bytes, verifier: NoteVerifier) -> VerifiedRelease:
    """Check a release bundle offline against the node's checkpoint key.

    Raises MalformedError (not a canonical bundle), SignatureError (checkpoint or
    attestation), ConsistencyError (a row, the manifest or the proof does not match).
    """
    keys = {"type", "manifest", "participants", "rows", "attestation", "log_index",
            "log_proof", "block_header", "results", "checkpoint"}
    doc = load_document(data, limit=MAX_BUNDLE, keys=keys, doc_type=BUNDLE_TYPE,
                        what="release bundle")
    if not isinstance(doc["participants"], list) or not isinstance(doc["rows"], list):
        raise MalformedError("participants and rows are lists")
    stx, cp, signer = verify_ordered(doc, verifier, "attestation", "research.manifest")
    try:
        manifest = codec.decode(_unb64(doc["manifest"], "manifest"))
    except (ValueError, MalformedError):
        raise MalformedError("manifest is base64 canonical CBOR") from None
    if not isinstance(manifest, dict) or manifest_hash(manifest) != stx.tx.body["manifest"]:
        raise ConsistencyError("the manifest is not the one the node attested")
    try:
        leaves = release_leaves(doc["participants"], doc["rows"])
    except (TypeError, ValueError, MalformedError):
        raise MalformedError("participants and rows are maps of text and numbers") from None
    if len(leaves) != manifest["leaves"] or merkle.root_of(leaves) != manifest["root"]:
        raise ConsistencyError("the rows are not the ones the manifest's Merkle root commits "
                               "to: the release was altered")
    if manifest["release"] != stx.tx.body["release"] or manifest["chain"] != cp.origin:
        raise ConsistencyError("the manifest names another release or chain")
    return VerifiedRelease(manifest["study"], manifest["release"], manifest["root"],
                           len(doc["rows"]), len(doc["participants"]),
                           tuple(manifest["batches"]), cp, signer)
