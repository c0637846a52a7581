"""``glucoledger research ...``: studies (sponsor), opt-in and withdrawal (patient), releases
and DP queries (sponsor), offline verification (anyone). Thin: parse, call node/research.py,
render. Accounts are named as in the node's address book; their custodial keys sign.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..codec import parse_hex_id
from ..errors import MalformedError
from ..files import atomic_write, storage_error
from ..interop.fhir_research import research_consent, research_study
from ..node import accounts
from ..node.deid import Profile
from ..node.research import ResearchService, verify_bundle
from ..node.research_view import participation
from ..state.consent import DAY_MS, MAX_WINDOW_DAYS
from ..state.research import load_study
from .common import (
    DataOpt,
    console,
    in_file,
    open_node,
    open_node_and_vault,
    out_file,
    read_text,
    table,
)

__all__ = ["register"]

research_app = typer.Typer(help="Research sharing: studies, opt-in, de-identified releases, "
                           "DP queries, verification.", no_args_is_help=True)
Name = Annotated[str, typer.Option(help="An account name from the address book.")]
StudyId = Annotated[str, typer.Option("--study", help="The study id (hex).")]


#: The smallest privacy cost a query can charge: budgets are kept in millionths of epsilon.
MIN_EPSILON = 0.000_001


def _json_file(path: Path, what: str) -> dict[str, Any]:
    """A person's JSON file (already checked to exist by ``in_file``) as an object."""
    try:
        doc = json.loads(read_text(path, what.removeprefix("the ")))  # binary: refused
    except ValueError as exc:
        raise MalformedError(f"{what} ({path}) is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedError(f"{what} ({path}) must be a JSON object")
    return doc


@research_app.command("register")
def register_study(sponsor: Name, terms: Annotated[Path, in_file(
        "JSON file: protocol, ethics, purpose, streams, fields, period {from, to}, forms, "
        "k, budget (epsilon in millionths), retention_days, contact, credit {rate, terms}",
        option="--terms")],
        data: DataOpt = None) -> None:
    """Register a study (signed by the sponsor; accepted by this node's organization).

    Example: glucoledger research register --sponsor uni-research --terms terms.json
    """
    doc = _json_file(terms, "the study terms")
    with open_node_and_vault(data) as (node, vault):
        ident = accounts.identity(node, sponsor)
        sid = ResearchService(node, vault).register_study(
            ident.id, accounts.keys_of(node, ident), doc, [node.wallet.load("org")])
    console.print(f"study {sid.hex()}")


@research_app.command("close")
def close_study(sponsor: Name, study: StudyId, data: DataOpt = None) -> None:
    """Close a study: no release or query from the next block on.

    Example: glucoledger research close --sponsor uni-research --study STUDY_ID
    """
    with open_node_and_vault(data) as (node, vault):
        ident = accounts.identity(node, sponsor)
        ResearchService(node, vault).close_study(ident.id, accounts.keys_of(node, ident),
                                                 parse_hex_id(study, "--study"))
    console.print("closed")


@research_app.command("join")
def join(patient: Name, study: StudyId,
         profile: Annotated[Path | None, in_file(
             "JSON file: name, birth_date (YYYY-MM-DD), sex, state, zip, diabetes_type; "
             "kept sealed on this node, never released as is. Leave it out to keep the one "
             "you gave before.", option="--profile")] = None,
         streams: Annotated[str, typer.Option(help="Comma-separated; at most the study's.")]
         = "cgm",
         fields: Annotated[str, typer.Option(help="Comma-separated quasi-identifiers you "
                                             "share: age, sex, region, diabetes_type")] = "",
         days: Annotated[int, typer.Option(help="How many days your consent lasts.", min=1,
                                           max=MAX_WINDOW_DAYS)] = 365,
         data: DataOpt = None) -> None:
    """Opt in to a study (your research grant; you may narrow its streams and fields).

    Example: glucoledger research join --patient alice --study STUDY_ID --profile me.json
    --fields sex,region --days 365
    """
    prof = (Profile.from_value(_json_file(profile, "the research profile"))
            if profile is not None else None)
    with open_node_and_vault(data) as (node, vault):
        ident = accounts.identity(node, patient)
        gid = ResearchService(node, vault).join(
            ident.id, accounts.keys_of(node, ident, [0]), parse_hex_id(study, "--study"),
            [s for s in streams.split(",") if s], [f for f in fields.split(",") if f],
            node.now_ms() + days * DAY_MS, prof)
    console.print(f"research grant {gid.hex()}")


@research_app.command("withdraw")
def withdraw(patient: Name, grant: Annotated[str, typer.Option(
        "--grant", help="Your research grant's id (hex), as `research join` printed it.")],
             data: DataOpt = None) -> None:
    """Withdraw from a study: you are in no later release or query.

    Example: glucoledger research withdraw --patient alice --grant GRANT_ID
    """
    with open_node_and_vault(data) as (node, vault):
        ident = accounts.identity(node, patient)
        ResearchService(node, vault).withdraw(ident.id, accounts.keys_of(node, ident, [0]),
                                              parse_hex_id(grant, "--grant"))
    console.print("withdrawn: you are in no release or query from now on")


@research_app.command("release")
def release(sponsor: Name, study: StudyId,
            out: Annotated[Path, out_file("Where to write the release bundle (JSON).")],
            data: DataOpt = None) -> None:
    """Receive a de-identified record-level release (a bundle you can verify offline).

    Example: glucoledger research release --sponsor uni-research --study STUDY_ID
    --out release.json
    """
    with open_node_and_vault(data) as (node, vault):
        ident = accounts.identity(node, sponsor)
        raw = ResearchService(node, vault).release(ident.id, accounts.keys_of(node, ident),
                                                   parse_hex_id(study, "--study"))
    atomic_write(out, raw, mode=0o600)
    doc = json.loads(raw)
    console.print(f"{len(doc['rows'])} rows of {len(doc['participants'])} participants "
                  f"written to {out}")


@research_app.command("query")
def query(sponsor: Name, study: StudyId,
          statistic: Annotated[str, typer.Option(help="mean_glucose, time_in_range, "
                                                 "time_below_70, time_below_54, gmi, "
                                                 "hourly_median_profile, "
                                                 "hypo1_episodes_per_week, "
                                                 "hypo2_episodes_per_week, "
                                                 "hyper1_episodes_per_week, "
                                                 "hyper2_episodes_per_week")],
          epsilon: Annotated[float, typer.Option(
              help="Privacy cost of this query (0.000001..100, charged in millionths).",
              min=MIN_EPSILON, max=100.0)],
          data: DataOpt = None) -> None:
    """A differentially private cohort statistic, charged to the study's budget first.

    Example: glucoledger research query --sponsor uni-research --study STUDY_ID
    --statistic time_in_range --epsilon 0.1
    """
    with open_node_and_vault(data) as (node, vault):
        ident = accounts.identity(node, sponsor)
        a = ResearchService(node, vault).query(ident.id, accounts.keys_of(node, ident),
                                               parse_hex_id(study, "--study"), statistic, epsilon)
    shown = ", ".join(f"{v:.1f}" for v in a.values)
    console.print(f"{a.statistic} = {shown} over {a.participants} participants "
                  f"(epsilon {a.epsilon:g}; spent {a.spent:g} of {a.budget:g})")


BundleArg = Annotated[Path, in_file("A release bundle that `research release` wrote.")]


def _bundle(path: Path) -> bytes:
    """The bundle's exact bytes; a binary or unreadable file is refused first (read_text)."""
    read_text(path, "release bundle (JSON) that `research release` wrote")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise storage_error(exc, path, "reading the release bundle") from None


@research_app.command("verify")
def verify(bundle: BundleArg, data: DataOpt = None) -> None:
    """Check a release bundle offline against this node's checkpoint key.

    Example: glucoledger research verify release.json --data /srv/gl
    """
    raw = _bundle(bundle)
    with open_node(data) as node:
        got = verify_bundle(raw, node.verifier())
    console.print(f"verified: {got.rows} rows, {got.participants} participants, "
                  f"{len(got.batches)} batches, root {got.root.hex()[:16]}, checkpoint "
                  f"{got.checkpoint.size} signed by {got.signer}")


@research_app.command("am-i-in")
def am_i_in(patient: Name, bundle: BundleArg, data: DataOpt = None) -> None:
    """Check a release bundle for your data (it is verified first).

    Example: glucoledger research am-i-in --patient alice release.json
    """
    raw = _bundle(bundle)
    with open_node_and_vault(data) as (node, vault):
        mine = ResearchService(node, vault).am_i_in(accounts.identity(node, patient).id, raw)
    console.print(f"yes: {len(mine)} of your batches are in this release" if mine else
                  "no: none of your data is in this release")


@research_app.command("mine")
def mine(patient: Name,
         fhir: Annotated[bool, typer.Option(
             help="Print FHIR Consent and ResearchStudy JSON instead of a table.")] = False,
         as_json: Annotated[bool, typer.Option(
             "--json", help="Print the table's rows as a JSON list instead.")] = False,
         data: DataOpt = None) -> None:
    """Your studies: what each received and your credit (or FHIR Consent + ResearchStudy).

    Example: glucoledger research mine --patient alice --json
    """
    with open_node(data) as node:
        parts = participation(node.state, accounts.identity(node, patient).id)
    if fhir:
        console.print_json(json.dumps([
            [research_consent(p.grant, p.study, p.grant["time"]), research_study(p.study)]
            for p in parts], default=lambda b: b.hex()))
        return
    docs = [{"study": p.study["protocol"], "purpose": p.study["purpose"],
             "grant": p.grant["id"].hex()[:16], "status": p.grant["status"],
             "releases": sum(r["form"] == "records" for r in p.releases),
             "queries": sum(r["form"] == "aggregate" for r in p.releases),
             "credit": p.credits, "credit_days": p.credit_days} for p in parts]
    if as_json:
        console.print_json(json.dumps(docs))
        return
    rows = [[d["study"], d["purpose"], d["grant"], d["status"], str(d["releases"]),
             str(d["queries"]), f"{d['credit']} ({d['credit_days']} days)"] for d in docs]
    console.print(table(f"research of {patient}", ["study", "purpose", "grant", "status",
                                                   "releases", "queries", "credit"], rows))


@research_app.command("show")
def show(study: StudyId, data: DataOpt = None) -> None:
    """A study's terms and spent budget (as FHIR ResearchStudy JSON).

    Example: glucoledger research show --study STUDY_ID
    """
    with open_node(data) as node:
        rec = load_study(node.state, parse_hex_id(study, "--study"))
    console.print_json(json.dumps(research_study(rec)))


def register(app: typer.Typer) -> None:
    app.add_typer(research_app, name="research")

