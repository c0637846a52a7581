"""Contracts for research: studies, opt-in research grants, releases and their budget.

A study (``study/<id>``, id = the registering transaction's hash)::

    {id, sponsor, protocol, ethics, purpose, streams, fields, period {from, to}, forms, k,
     budget, retention_days, contact, credit {rate, terms}, status, scope_version, spent,
     created, changed}

- ``study.register`` (auth "self", sent on the sponsor organization's account with its next
  nonce): signed by keys meeting the sponsor's ``default`` threshold *and* by the ``default``
  threshold of at least the consortium's checkpoint ``threshold`` of member organizations
  (CCF-style acceptance: the consortium admits a study, not the sponsor alone).
- ``study.amend`` (same authorization): new values for some scope fields. A change that
  *widens* what participants gave (more streams or fields, a longer period, new forms, a
  larger budget, a longer retention, a smaller k) bumps ``scope_version``: every research
  grant given for an older version stops counting until the participant re-consents.
  Narrowing needs no re-consent. From state rule set 3 (state/accounts.py ``RULES``) a
  change of what she was told she consents to (``StudyTerms.repurposes``: the purpose, the
  protocol, the ethics approval, the credit's terms, a lower credit rate) bumps it too.
- ``study.close`` (sponsor's ``default``): no release or query after this block.
- ``research.consent`` (action class ``grant`` on the patient's multisig account): body
  ``{study, streams, fields, until}``; she may narrow the study's streams and fields; the
  grant counts for the study's current ``scope_version``. A second consent to the same study
  replaces the first (how a participant re-consents after a widening amendment).
- ``research.withdraw`` (``grant``): body ``{grant}``; from this block on she is in no release
  or query; the releases that already held her data stay recorded (``rgrant`` ``releases``).
- ``research.release`` (sponsor's ``default``): body ``{study, form}`` with form ``records``,
  or ``{study, form: "aggregate", statistic, epsilon}`` with epsilon in millionths. The
  contract itself picks the participants (every grant active at this block, for the current
  scope version, inside its ``until``) and the exact batches each contributes (the
  ``data.commit`` index of state/access.py), appends the event to each participant's audit
  trail, and for aggregates charges the budget. Sequential composition (Dwork and Roth,
  The Algorithmic Foundations of Differential Privacy, 2014, theorem 3.16): ``spent`` is the
  sum of the epsilons of the accepted queries, and a query that would pass ``budget`` is
  refused as ``budget_exhausted``.
- ``research.manifest`` (auth "self", a ``node`` account meeting its ``data`` threshold): the
  node that built a record-level release attests its manifest. On a chain of rule set 2
  (state/accounts.py ``RULES``) that must be a node of the organization serving the study's
  sponsor (the sponsor, or the organization that vouched for its account), else
  ``not_releasing_node``: another member's node can neither attest (nor credit days for) a
  release it did not build. The body is ``{release, manifest, root, rows, days}`` where
  ``days`` lists, per grant, the UTC days (epoch day numbers) of
  sufficient data it contained. Each new day earns the participant ``credit.rate`` credits
  (``rcredit/<grant>``): a day counts once per study, however many releases hold it. Credits
  are bound to the grant (never an account that could transfer them) and there is no
  transaction that moves them.

Write-ahead: nothing leaves the node before the ``research.release`` that names it is
ordered; a record-level release is handed out only after its ``research.manifest``.

Refusals: ``not_organization``, ``insufficient_signatures``, ``bad_nonce``,
``unknown_study``, ``not_sponsor``, ``study_closed``, ``form_not_allowed``, ``not_patient``,
``bad_scope``, ``unknown_grant``, ``not_your_grant``, ``already_withdrawn``,
``too_few_participants``, ``budget_exhausted``, ``not_started``, ``not_node``, ``unknown_release``,
``manifest_exists``, ``bad_days``, ``not_releasing_node``, ``too_many_participants``,
``malformed``.
Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import MalformedError
from ..glucose.readings import STREAMS
from ..ledger.tx import SignedTx
from .access import batches_in
from .accounts import genesis_info, rules
from .accounts_model import Account, load_account
from .consent import DAY_MS
from .governance import member_orgs_signing
from .grants import audit_append
from .machine import Body, Context, authorize, bump_nonce, register, require
from .store import State

__all__ = ["FIELDS", "FORMS", "STATISTICS", "ReleaseRequest", "StudyTerms", "active_grants",
           "credit_of", "grant_counts", "load_study", "release_key", "rgrant_key", "study_key"]

FORMS: Final = ("records", "aggregate")
#: Quasi-identifiers a study may ask for (each generalised in releases; see node/research).
FIELDS: Final = ("age", "sex", "region", "diabetes_type")
STATISTICS: Final = ("mean_glucose", "time_in_range", "time_below_70", "gmi",
                     "time_below_54", "hourly_median_profile", "hypo1_episodes_per_week",
                     "hypo2_episodes_per_week", "hyper1_episodes_per_week",
                     "hyper2_episodes_per_week")
MAX_EPSILON_MICRO: Final = 100_000_000  # 100: past any meaningful privacy
MAX_TEXT: Final = 500
MAX_PARTICIPANTS: Final = 10_000


def study_key(study: bytes) -> str:
    return "study/" + study.hex()


def rgrant_key(grant: bytes) -> str:
    return "rgrant/" + grant.hex()


def release_key(release: bytes) -> str:
    return "release/" + release.hex()


def _participants_key(study: bytes) -> str:
    return "rgrants/" + study.hex()


def _consent_index_key(study: bytes, patient: bytes) -> str:
    return f"rconsent/{study.hex()}/{patient.hex()}"


def _credit_key(grant: bytes) -> str:
    return "rcredit/" + grant.hex()


# --- typed bodies ------------------------------------------------------------------------
def _text(body: dict[str, Any], name: str) -> str:
    v = body.get(name)
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT:
        raise MalformedError(f"{name} is text of 1..{MAX_TEXT} characters")
    return v


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = body.get(name)
    if type(v) is not int or not lo <= v <= hi:
        raise MalformedError(f"{name} is an integer from {lo} to {hi}")
    return v


def _subset(value: Any, name: str, allowed: tuple[str, ...], *, empty: bool = False) -> list[str]:
    ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    if not ok or (not value and not empty) or len(set(value)) != len(value):
        raise MalformedError(f"{name} is a list of distinct values from {', '.join(allowed)}")
    bad = [x for x in value if x not in allowed]
    if bad:
        raise MalformedError(f"{name}: unknown value {bad[0]!r}; use {', '.join(allowed)}")
    return sorted(value)


def _hash(body: dict[str, Any], name: str) -> bytes:
    return _hash_value(body.get(name), name)


def _hash_value(v: Any, name: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise MalformedError(f"{name} is a 32-byte id")
    return v


TERMS_KEYS: Final = ("protocol", "ethics", "purpose", "streams", "fields", "period", "forms",
                     "k", "budget", "retention_days", "contact", "credit")


@dataclass(frozen=True, slots=True)
class StudyTerms(Body):
    """The scope fields of a study, as registered or amended: the body of
    ``study.register`` (``parse``) and the ``terms`` of ``study.amend``."""

    protocol: str
    ethics: str
    purpose: str
    streams: tuple[str, ...]
    fields: tuple[str, ...]
    period_from: int
    period_to: int
    forms: tuple[str, ...]
    k: int
    budget: int  # epsilon, in millionths
    retention_days: int
    contact: str
    credit_rate: int
    credit_terms: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> StudyTerms:
        if set(body) != set(TERMS_KEYS):
            raise MalformedError(f"a study's terms are exactly {', '.join(TERMS_KEYS)}")
        period, credit = body["period"], body["credit"]
        if not isinstance(period, dict) or set(period) != {"from", "to"}:
            raise MalformedError("period is {from, to} in epoch ms")
        lo, hi = _int(period, "from", 0, 1 << 62), _int(period, "to", 0, 1 << 62)
        if hi <= lo:
            raise MalformedError("period.to must follow period.from")
        if not isinstance(credit, dict) or set(credit) != {"rate", "terms"}:
            raise MalformedError("credit is {rate (credits per day of data), terms}")
        return cls(_text(body, "protocol"), _text(body, "ethics"), _text(body, "purpose"),
                   tuple(_subset(body["streams"], "streams", STREAMS)),
                   tuple(_subset(body["fields"], "fields", FIELDS, empty=True)), lo, hi,
                   tuple(_subset(body["forms"], "forms", FORMS)), _int(body, "k", 2, 1000),
                   _int(body, "budget", 0, MAX_EPSILON_MICRO),
                   _int(body, "retention_days", 1, 36_600), _text(body, "contact"),
                   _int(credit, "rate", 0, 1000), _text(credit, "terms"))

    @classmethod
    def parse(cls, body: dict[str, Any]) -> StudyTerms:
        """Raises MalformedError."""
        return cls.from_body(body)

    def to_body(self) -> dict[str, Any]:
        return self.to_value()

    def to_value(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "ethics": self.ethics, "purpose": self.purpose,
                "streams": list(self.streams), "fields": list(self.fields),
                "period": {"from": self.period_from, "to": self.period_to},
                "forms": list(self.forms), "k": self.k, "budget": self.budget,
                "retention_days": self.retention_days, "contact": self.contact,
                "credit": {"rate": self.credit_rate, "terms": self.credit_terms}}

    def repurposes(self, old: StudyTerms) -> bool:
        """Whether these terms tell participants something else than ``old`` about what
        their data is for or what they get for it (rule set 3: they consent again)."""
        return ((self.purpose, self.protocol, self.ethics, self.credit_terms)
                != (old.purpose, old.protocol, old.ethics, old.credit_terms)
                or self.credit_rate < old.credit_rate)

    def widens(self, old: StudyTerms) -> bool:
        """Whether these terms ask participants for more than ``old`` did."""
        return (not set(self.streams) <= set(old.streams)
                or not set(self.fields) <= set(old.fields)
                or self.period_from < old.period_from or self.period_to > old.period_to
                or not set(self.forms) <= set(old.forms) or self.budget > old.budget
                or self.retention_days > old.retention_days or self.k < old.k)


@dataclass(frozen=True, slots=True)
class ReleaseRequest(Body):
    """The body of ``research.release``: a record-level release ``{study, form}`` or an
    aggregate query ``{study, form, statistic, epsilon}`` (epsilon in millionths)."""

    study: bytes
    form: str
    statistic: str | None = None
    epsilon: int = 0  # millionths

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ReleaseRequest:
        form = body.get("form")
        if form == "records":
            if set(body) != {"study", "form"}:
                raise MalformedError("a record-level release is {study, form}")
            return cls(_hash(body, "study"), "records")
        if form == "aggregate":
            if set(body) != {"study", "form", "statistic", "epsilon"}:
                raise MalformedError("an aggregate query is {study, form, statistic, epsilon}")
            stat = body["statistic"]
            if stat not in STATISTICS:
                raise MalformedError(f"statistic is one of {', '.join(STATISTICS)}")
            return cls(_hash(body, "study"), "aggregate", stat,
                       _int(body, "epsilon", 1, MAX_EPSILON_MICRO))
        raise MalformedError(f"form is one of {', '.join(FORMS)}")

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ReleaseRequest:
        """Raises MalformedError."""
        return cls.from_body(body)

    def to_body(self) -> dict[str, Any]:
        if self.form == "records":
            return {"study": self.study, "form": self.form}
        return {"study": self.study, "form": self.form, "statistic": self.statistic,
                "epsilon": self.epsilon}


@dataclass(frozen=True, slots=True)
class StudyAmend(Body):
    """The body of ``study.amend``: the study (checked with the study's record) and the full
    new terms."""

    study: Any
    terms: StudyTerms

    @classmethod
    def parse(cls, body: dict[str, Any]) -> StudyAmend:
        require("study" in body and "terms" in body and set(body) == {"study", "terms"},
                "malformed", "study.amend is {study, terms} (the full new terms)")
        terms = StudyTerms.from_body(body["terms"] if isinstance(body["terms"], dict) else {})
        return cls(body["study"], terms)

    def to_body(self) -> dict[str, Any]:
        return {"study": self.study, "terms": self.terms.to_value()}


@dataclass(frozen=True, slots=True)
class StudyClose(Body):
    """The body of ``study.close``: ``{study}`` (checked with the study's record)."""

    study: Any

    @classmethod
    def parse(cls, body: dict[str, Any]) -> StudyClose:
        require(set(body) == {"study"}, "malformed", "study.close takes study")
        return cls.of(body)


@dataclass(frozen=True, slots=True)
class ResearchConsent(Body):
    """The body of ``research.consent``: study, streams, fields, until. ``parse`` checks the
    names; the values are checked after the patient's and the study's records."""

    study: Any
    streams: Any
    fields: Any
    until: Any

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ResearchConsent:
        require(set(body) == {"study", "streams", "fields", "until"}, "malformed",
                "research.consent takes study, streams, fields, until")
        return cls.of(body)


@dataclass(frozen=True, slots=True)
class ResearchWithdraw(Body):
    """The body of ``research.withdraw``: ``{grant}``, a research grant's 32-byte id."""

    grant: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ResearchWithdraw:
        require(set(body) == {"grant"}, "malformed", "research.withdraw takes grant")
        return cls(_hash(body, "grant"))


@dataclass(frozen=True, slots=True)
class ResearchManifest(Body):
    """The body of ``research.manifest``: release, manifest, root, rows, days. ``parse``
    checks the names; the values are checked against the release's record."""

    release: Any
    manifest: Any
    root: Any
    rows: Any
    days: Any

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ResearchManifest:
        require(set(body) == {"release", "manifest", "root", "rows", "days"}, "malformed",
                "research.manifest takes release, manifest, root, rows, days")
        return cls.of(body)


# --- reads -----------------------------------------------------------------------------------
def load_study(state: State, study: bytes) -> dict[str, Any]:
    rec = state.get(study_key(study))
    require(rec is not None, "unknown_study", f"no study {study.hex()[:16]}; check its id")
    return dict(rec)


def grant_counts(study: dict[str, Any], grant: dict[str, Any], time_ms: int) -> bool:
    """Whether a research grant counts at ``time_ms``: active, for the current scope
    version, inside its end and the study's period."""
    return bool(grant["status"] == "active" and grant["version"] == study["scope_version"]
            and time_ms < grant["until"])


def active_grants(state: State, study: bytes, time_ms: int) -> list[dict[str, Any]]:
    """The research grants that count for ``study`` at ``time_ms``, in consent order."""
    rec = load_study(state, study)
    out = []
    for gid in state.get(_participants_key(study)) or []:
        g = state.get(rgrant_key(gid))
        if grant_counts(rec, g, time_ms):
            out.append(dict(g))
    return out


# --- authorization -------------------------------------------------------------------------
def _sponsor_and_consortium(state: State, stx: SignedTx) -> Account:
    """The sponsor's own threshold and nonce, then the consortium's member threshold."""
    sponsor = load_account(state, stx.tx.account)
    require(sponsor.kind == "organization", "not_organization",
            f"studies are registered by a research organization's account, not a "
            f"{sponsor.kind}'s")
    require(stx.tx.nonce == sponsor.nonce, "bad_nonce",
            f"nonce {stx.tx.nonce} is not the sponsor's next ({sponsor.nonce}); re-sign")
    weight = sum(sponsor.weights("default").get(k, 0) for k in stx.signer_ids)
    require(weight >= sponsor.threshold("default"), "insufficient_signatures",
            "the sponsor organization's keys do not reach its threshold; sign with them")
    info = genesis_info(state)
    signing = member_orgs_signing(state, info, stx)
    require(len(signing) >= info["threshold"], "insufficient_signatures",
            f"{len(signing)} member organization(s) accepted the study "
            f"({', '.join(signing) or 'none'}); {info['threshold']} needed: collect their "
            "cosignatures into the envelope")
    bump_nonce(state, sponsor)
    return sponsor


def _own_open_study(state: State, stx: SignedTx, study: Any) -> dict[str, Any]:
    rec = load_study(state, _hash_value(study, "study"))
    require(rec["sponsor"] == stx.tx.account, "not_sponsor",
            f"study {rec['id'].hex()[:16]} belongs to another sponsor")
    require(rec["status"] == "open", "study_closed", f"study {rec['id'].hex()[:16]} is closed")
    return rec


# --- studies ---------------------------------------------------------------------------------
@register("study.register", auth="self", body=StudyTerms)
def _register(state: State, stx: SignedTx, ctx: Context) -> None:
    """Register a study: the sponsor's terms, accepted by the consortium's threshold."""
    terms = StudyTerms.parse(stx.tx.body)
    sponsor = _sponsor_and_consortium(state, stx)
    state.put(study_key(stx.tx_hash), {
        "id": stx.tx_hash, "sponsor": sponsor.id, **terms.to_value(), "status": "open",
        "scope_version": 1, "spent": 0, "created": ctx.height, "changed": ctx.height})


@register("study.amend", auth="self", body=StudyAmend)
def _amend(state: State, stx: SignedTx, ctx: Context) -> None:
    """Amend a study's terms; a widening asks every participant to consent again."""
    b = StudyAmend.parse(stx.tx.body)
    terms = b.terms
    rec = _own_open_study(state, stx, b.study)
    _sponsor_and_consortium(state, stx)
    old = StudyTerms.from_body({k: rec[k] for k in TERMS_KEYS})
    again = terms.widens(old) or (rules(state) >= 3 and terms.repurposes(old))
    version = rec["scope_version"] + (1 if again else 0)
    state.put(study_key(rec["id"]), {**rec, **terms.to_value(), "scope_version": version,
                                     "changed": ctx.height})


@register("study.close", body=StudyClose)
def _close(state: State, stx: SignedTx, ctx: Context) -> None:
    """Close a study: no release or query from this block on."""
    rec = _own_open_study(state, stx, StudyClose.parse(stx.tx.body).study)
    state.put(study_key(rec["id"]), {**rec, "status": "closed", "changed": ctx.height})


# --- participants ------------------------------------------------------------------------------
@register("research.consent", action="grant", body=ResearchConsent)
def _consent(state: State, stx: SignedTx, ctx: Context) -> None:
    """A patient joins a study (or re-consents), narrowing its streams and fields if she will."""
    b = ResearchConsent.parse(stx.tx.body)
    patient = load_account(state, stx.tx.account)
    require(patient.kind == "patient", "not_patient",
            "only a patient consents to share her data with a study")
    study = load_study(state, _hash_value(b.study, "study"))
    require(study["status"] == "open", "study_closed", "the study is closed; it takes no one")
    streams = _subset(b.streams, "streams", STREAMS)
    fields = _subset(b.fields, "fields", FIELDS, empty=True)
    until = _int({"until": b.until}, "until", 0, 1 << 62)
    require(set(streams) <= set(study["streams"]) and set(fields) <= set(study["fields"]),
            "bad_scope", "a participant may narrow the study's streams and fields, never "
            f"widen them (study: {', '.join(study['streams'])}; "
            f"{', '.join(study['fields']) or 'no fields'})")
    require(until > ctx.time_ms, "bad_scope", "until must be in the future")
    index_key = _consent_index_key(study["id"], patient.id)
    previous = state.get(index_key)
    if previous is not None:  # re-consent replaces the earlier grant
        old = state.get(rgrant_key(previous))
        if old["status"] == "active":
            state.put(rgrant_key(previous), {**old, "status": "replaced",
                                             "ended": ctx.height, "ended_time": ctx.time_ms})
    ids = state.get(_participants_key(study["id"])) or []
    require(len(ids) < MAX_PARTICIPANTS, "too_many_participants",
            f"a study holds at most {MAX_PARTICIPANTS} research grants")
    state.put(rgrant_key(stx.tx_hash), {
        "id": stx.tx_hash, "study": study["id"], "patient": patient.id, "streams": streams,
        "fields": fields, "until": until, "version": study["scope_version"],
        "status": "active", "created": ctx.height, "time": ctx.time_ms, "ended": None,
        "releases": []})
    state.put(_participants_key(study["id"]), [*ids, stx.tx_hash])
    state.put(index_key, stx.tx_hash)
    audit_append(state, patient.id, "research_consent", stx.tx_hash)


@register("research.withdraw", action="grant", body=ResearchWithdraw)
def _withdraw(state: State, stx: SignedTx, ctx: Context) -> None:
    """Withdraw from a study: in no release or query from this block on."""
    g = state.get(rgrant_key(ResearchWithdraw.parse(stx.tx.body).grant))
    require(g is not None, "unknown_grant", "no research grant with that id; check it")
    require(g["patient"] == stx.tx.account, "not_your_grant",
            "that research grant belongs to another patient")
    require(g["status"] == "active", "already_withdrawn",
            f"that research grant is already {g['status']}")
    state.put(rgrant_key(g["id"]), {**g, "status": "withdrawn", "ended": ctx.height,
                                     "ended_time": ctx.time_ms})
    state.put("rwithdraw/" + stx.tx_hash.hex(), g["id"])
    audit_append(state, g["patient"], "research_withdraw", stx.tx_hash)


# --- uses ---------------------------------------------------------------------------------------
@register("research.release", body=ReleaseRequest)
def _release(state: State, stx: SignedTx, ctx: Context) -> None:
    """A release or DP query: the contract picks the participants and batches, audits it."""
    req = ReleaseRequest.parse(stx.tx.body)
    study = _own_open_study(state, stx, req.study)
    require(req.form in study["forms"], "form_not_allowed",
            f"study {study['id'].hex()[:16]} may receive {', '.join(study['forms'])}, "
            f"not {req.form}")
    require(ctx.time_ms >= study["period"]["from"], "not_started",
            "the study's period has not started; ask again after it starts")
    grants = active_grants(state, study["id"], ctx.time_ms)
    require(len(grants) >= study["k"], "too_few_participants",
            f"{len(grants)} participant(s) consented; the study's k is {study['k']}: a "
            "release needs at least k, wait for more")
    if req.form == "aggregate":
        spent = study["spent"] + req.epsilon
        require(spent <= study["budget"], "budget_exhausted",
                f"epsilon {req.epsilon / 1e6:g} would bring the spent budget to "
                f"{spent / 1e6:g}, past the study's {study['budget'] / 1e6:g}; nothing was "
                "computed")
        state.put(study_key(study["id"]), {**study, "spent": spent})
    lo, hi = study["period"]["from"], min(study["period"]["to"], ctx.time_ms)
    parts = []
    for g in grants:
        streams = sorted(set(g["streams"]) & set(study["streams"]))
        entries = batches_in(state, g["patient"], streams, lo, hi)
        parts.append({"grant": g["id"], "streams": streams, "fields": g["fields"],
                      "batches": [e[0] for e in entries], "commits": [e[1] for e in entries]})
        state.put(rgrant_key(g["id"]), {**g, "releases": [*g["releases"], stx.tx_hash]})
        audit_append(state, g["patient"], "research_use", stx.tx_hash)
    state.put(release_key(stx.tx_hash), {
        "id": stx.tx_hash, "study": study["id"], "form": req.form,
        "statistic": req.statistic, "epsilon": req.epsilon, "participants": parts,
        "from": lo, "to": hi, "time": ctx.time_ms, "height": ctx.height, "manifest": None})


def _releasing_node(state: State, node: Account, study: dict[str, Any]) -> None:
    """Refuse unless ``node`` belongs to the organization that serves the study's sponsor:
    the sponsor itself (an organization with its own node) or the organization that vouched
    for the sponsor's account (a research organization served by a member's node). That is
    the node ``ResearchService.release`` runs on, which built the release (rule set 2)."""
    sponsor = load_account(state, study["sponsor"])
    serving = {sponsor.id, bytes(sponsor.record.get("sponsor") or b"")} - {b""}
    require(node.record.get("sponsor") in serving, "not_releasing_node",
            f"study {study['id'].hex()[:16]}'s releases are built and attested by the node of "
            "its sponsor's organization; this node belongs to another organization: attest "
            "from the sponsor's node")


@register("research.manifest", auth="self", body=ResearchManifest)
def _manifest(state: State, stx: SignedTx, ctx: Context) -> None:
    """The releasing node attests a record-level release's manifest; days earn credit."""
    node = load_account(state, stx.tx.account)
    require(node.kind == "node", "not_node", "a manifest is attested by a node account")
    authorize(node, stx, "data")
    b = ResearchManifest.parse(stx.tx.body)
    rel = state.get(release_key(_hash_value(b.release, "release")))
    require(rel is not None, "unknown_release", "no release with that id")
    require(rel["form"] == "records", "unknown_release", "aggregates carry no manifest")
    if rules(state) >= 2:
        _releasing_node(state, node, load_study(state, rel["study"]))
    require(rel["manifest"] is None, "manifest_exists", "that release has its manifest")
    manifest, root = _hash_value(b.manifest, "manifest"), _hash_value(b.root, "root")
    rows = _int({"rows": b.rows}, "rows", 0, 1 << 40)
    days = b.days
    grants = {p["grant"] for p in rel["participants"]}
    # type(d[0]) is bytes before ``in``: a list or map is unhashable (TypeError halted every
    # node, audit F5); any other non-bytes id was refused here with these words already.
    require(isinstance(days, list) and all(
        isinstance(d, list) and len(d) == 2 and type(d[0]) is bytes and d[0] in grants
        and isinstance(d[1], list) for d in days), "bad_days",
        "days is [[grant, [epoch day, ...]], ...] for participants")
    study = load_study(state, rel["study"])
    first, last = rel["from"] // DAY_MS, (rel["to"] - 1) // DAY_MS
    for gid, day_list in days:
        require(all(type(x) is int and first <= x <= last for x in day_list)
                and len(set(day_list)) == len(day_list), "bad_days",
                "credited days lie inside the release's period, once each")
        ck = _credit_key(gid)
        have = state.get(ck) or {"days": [], "credits": 0}
        new = sorted(set(day_list) - set(have["days"]))
        state.put(ck, {"days": sorted({*have["days"], *new}),
                       "credits": have["credits"] + len(new) * study["credit"]["rate"]})
    state.put(release_key(rel["id"]), {**rel, "manifest": manifest, "root": root,
                                       "rows": rows, "attested": ctx.height})


def credit_of(state: State, grant: bytes) -> dict[str, Any]:
    """``{days, credits}`` earned by a research grant (empty when none yet)."""
    return dict(state.get(_credit_key(grant)) or {"days": [], "credits": 0})

