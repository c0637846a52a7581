"""Property tests for decide(): a permit never exceeds the grant's scope, window or validity."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.glucose.readings import STREAMS
from glucoledger.state.consent import (
    DAY_MS,
    Deny,
    Grant,
    Permit,
    Request,
    decide,
    grant_key,
    granted_span,
    grants_index_key,
    summary_days,
    to_fhir_consent,
    window_at,
)
from glucoledger.state.store import State

PATIENT, GRANTEE = b"\x01" * 32, b"\x02" * 32
T = st.integers(0, 400 * DAY_MS)
streams = st.lists(st.sampled_from(STREAMS), min_size=1, max_size=3, unique=True)


@st.composite
def windows(draw: Any) -> dict[str, int]:
    if draw(st.booleans()):
        return {"last_days": draw(st.integers(1, 120))}
    lo = draw(T)
    return {"from": lo, "to": lo + draw(st.integers(1, 100 * DAY_MS))}


@st.composite
def grants(draw: Any, n: int) -> dict[str, Any]:
    vf = draw(T)
    return {"id": bytes([n]) * 32, "patient": PATIENT, "grantee": GRANTEE,
            "streams": sorted(draw(streams)), "view": draw(st.sampled_from(["raw", "summary"])),
            "window": draw(windows()), "valid_from": vf,
            "valid_until": vf + draw(st.integers(1, 200 * DAY_MS)),
            "purpose": draw(st.sampled_from(["treatment", "research", "emergency"])),
            "alerts": draw(st.booleans()),
            "status": draw(st.sampled_from(["active", "active", "revoked"])),
            "emergency": draw(st.booleans())}


def _state(records: list[dict[str, Any]]) -> State:
    s = State()
    s.put("chain/genesis", {"rules": 2})  # a chain of today's state rules (the day rule)
    s.put("acct/" + PATIENT.hex(), {"kind": "patient"})
    for r in records:
        s.put(grant_key(r["id"]), r)
    s.put(grants_index_key(PATIENT), [[r["grantee"], r["id"]] for r in records])
    return s


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=0, max_size=4, unique=True).flatmap(
    lambda ns: st.tuples(*[grants(n) for n in ns])), streams,
    st.sampled_from(["raw", "summary"]), st.none() | windows(), T)
def test_permit_never_exceeds_the_grant(records: tuple[dict[str, Any], ...], req_streams:
                                        list[str], view: str, window: dict[str, int] | None,
                                        t: int) -> None:
    state = _state(list(records))
    d = decide(state, GRANTEE, Request(PATIENT, tuple(sorted(req_streams)), view, window), t)
    if isinstance(d, Deny):
        assert d.reason and d.message
        return
    assert isinstance(d, Permit)
    g = Grant.from_record(next(r for r in records if r["id"] == d.grant))
    assert g.status == "active"
    assert g.valid_from <= t < g.valid_until
    assert set(d.streams) <= set(g.streams)
    assert d.view == "summary" or g.view == "raw"
    asked = window
    if g.view == "summary":
        # whole, finished UTC days only, whatever was asked (state/consent.py _check_days)
        assert d.start_ms % DAY_MS == 0 and d.end_ms % DAY_MS == 0
        assert d.end_ms <= t - t % DAY_MS
        if window is None or "last_days" in window:  # the last k whole days
            k = (window or g.window).get("last_days")
            asked = summary_days(k, t) if k is not None else None
        else:
            assert window["from"] % DAY_MS == 0 and window["to"] % DAY_MS == 0
        # a last_days grant's N whole days are within what granted_span allows
        lo, hi = granted_span(g.window, summary_days(g.window["last_days"], t), t) \
            if "last_days" in g.window else window_at(g.window, t)
    else:
        lo, hi = granted_span(g.window, asked, t)
    assert lo <= d.start_ms < d.end_ms <= hi
    if "last_days" in g.window:  # N whole local days at most: N days and an hour, recent
        n = g.window["last_days"]
        assert d.end_ms - d.start_ms <= n * DAY_MS + 3_600_000
        assert d.start_ms >= t - (n + 1) * DAY_MS - 3_600_000 and d.end_ms <= t
    else:
        assert (lo, hi) == window_at(g.window, t)
    if asked is not None:
        rlo, rhi = window_at(asked, t)
        assert rlo <= d.start_ms and d.end_ms <= rhi
    assert d.emergency == g.emergency


@settings(max_examples=100, deadline=None)
@given(grants(9), T)
def test_no_one_else_is_permitted(record: dict[str, Any], t: int) -> None:
    d = decide(_state([record]), b"\x03" * 32, Request(PATIENT, ("cgm",), "summary"), t)
    assert isinstance(d, Deny) and d.reason == "no_grant"


@settings(max_examples=50, deadline=None)
@given(grants(5))
def test_every_grant_maps_to_a_fhir_consent(record: dict[str, Any]) -> None:
    c = to_fhir_consent(Grant.from_record(record), recorded_ms=record["valid_from"])
    assert c["resourceType"] == "Consent"
    assert c["status"] == ("active" if record["status"] == "active" else "inactive")
    assert len(c["provision"]["code"]) == len(record["streams"])


def test_fhir_consent_validates_with_fhir_resources() -> None:
    import pytest

    r4 = pytest.importorskip("fhir.resources.R4B.consent")
    g = Grant(b"\x05" * 32, PATIENT, GRANTEE, ("cgm", "insulin"), "summary",
              {"from": 0, "to": 14 * DAY_MS}, 0, 30 * DAY_MS, "treatment", True, "active")
    r4.Consent.model_validate(to_fhir_consent(g, recorded_ms=0))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 120), st.integers(0, 3 * DAY_MS), st.integers(0, 3 * DAY_MS),
       st.integers(200 * DAY_MS, 400 * DAY_MS), st.sampled_from(["raw", "summary"]),
       st.booleans())
def test_whole_days_near_now_stay_within_n_days_and_an_hour(n: int, back: int, length_less: int,
                                                          t: int, view: str,
                                                          utc: bool) -> None:
    """Windows near "the last N whole days" (the allowance of granted_span): a permit is
    never longer than N days and an hour, never older than N + 1 days and an hour, and
    never after now. ``utc``: the window's ends moved to UTC midnights (what a summary
    grant permits at all)."""
    record = {"id": b"\x07" * 32, "patient": PATIENT, "grantee": GRANTEE, "streams": ["cgm"],
              "view": view, "window": {"last_days": n}, "valid_from": 0,
              "valid_until": 1 << 50, "purpose": "treatment", "alerts": False,
              "status": "active", "emergency": False}
    end = t - back // 2 + DAY_MS // 2
    start = end - (n + 1) * DAY_MS + length_less
    if utc:
        start, end = start - start % DAY_MS, end - end % DAY_MS
    d = decide(_state([record]), GRANTEE, Request(PATIENT, ("cgm",), "summary",
                                                   {"from": start, "to": end}), t)
    if isinstance(d, Deny):
        return
    assert d.end_ms - d.start_ms <= n * DAY_MS + 3_600_000
    assert d.start_ms >= t - (n + 1) * DAY_MS - 3_600_000 and d.end_ms <= t
    assert d.start_ms >= start and d.end_ms <= end
