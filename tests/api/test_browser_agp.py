"""The portal's AGP report (node/report.py) in headless Chromium: the patient sees the full
report inside her page (a sandboxed frame, under the page's CSP); a summary-grant clinician
sees the aggregate report and no daily profile."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from .test_browser import ARGS, CHROMIUM, _login

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")


@contextmanager
def _desktop() -> Iterator[Any]:
    """A headless Chromium context (desktop size) in a fresh profile, removed afterwards."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="gl-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1100, "height": 900})
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_portal_agp_for_patient_and_summary_clinician(served) -> None:  # type: ignore[no-untyped-def]
    _site, srv = served
    with _desktop() as ctx:
        alice = ctx.pages[0] if ctx.pages else ctx.new_page()
        _login(alice, srv.url, "alice")
        alice.get_by_text("Ambulatory glucose profile (AGP report)").click()  # expand it
        report = alice.frame_locator("iframe.agp-report")
        assert report.get_by_role("heading", name="Glycemia Risk Index").is_visible()
        days = report.locator("figure.day").count()
        assert days >= 1
        assert report.locator("text.pct-label").count() == 5
        assert report.locator("tr.range").count() == 5

        alice.get_by_label("Give access to").select_option("dr-lee")
        alice.get_by_label("Only summaries", exact=False).check()
        alice.get_by_role("button", name="Give access").click()
        alice.wait_for_url("**/portal?msg=*")

        doc = ctx.new_page()
        ctx.clear_cookies()
        _login(doc, srv.url, "dr-lee")
        assert doc.locator('tr.patient[data-patient="alice"]').count() == 1
        doc.goto(f"{srv.url}/portal/patients/alice")
        agg = doc.frame_locator("#agp iframe.agp-report")
        assert agg.get_by_role("heading", name="Time in ranges").is_visible()
        if days >= 5:  # the aggregate profile is shown from 5 days with data on
            assert agg.locator("text.pct-label").count() == 5
        else:
            assert agg.locator("text.withheld").count() == 1
            assert agg.locator("text.pct-label").count() == 0
        assert agg.locator("figure.day").count() == 0
        assert agg.locator(".aggregate-only").count() == 1


_PARTS = (".period", ".active", ".sufficiency", "table.metrics", "table.ranges-table", ".gri",
          "table.episodes")


def _report_parts(frame) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The aggregate parts of an AGP report frame as text (the same for raw and summary)."""
    return {sel: frame.locator(sel).first.inner_text() for sel in _PARTS}


def test_raw_and_summary_reports_cover_whole_days(served) -> None:  # type: ignore[no-untyped-def]
    """The patient's own report (a raw read) covers 14 whole local days in her zone; a
    summary-grant clinician's covers 14 whole UTC days, the only windows a summary grant
    permits (state/consent.py ``_check_days``: a window of his choosing would give single
    readings by subtraction). Both reports have the same aggregate parts, and each header
    names its zone."""
    _site, srv = served
    zone = "Pacific/Kiritimati"  # UTC+14: her local days are not UTC days
    with _desktop() as ctx:
        alice = ctx.pages[0] if ctx.pages else ctx.new_page()
        _login(alice, srv.url, "alice")
        alice.goto(f"{srv.url}/portal/settings")
        alice.locator("#tz").select_option(zone)
        alice.get_by_role("button", name="Save").click()
        alice.wait_for_url("**/portal/settings?msg=*")
        alice.goto(f"{srv.url}/portal")
        alice.get_by_label("Give access to").select_option("dr-lee")
        alice.get_by_label("Only summaries", exact=False).check()
        alice.get_by_role("button", name="Give access").click()
        alice.wait_for_url("**/portal?msg=*")
        alice.get_by_text("Ambulatory glucose profile (AGP report)").click()
        own = _report_parts(alice.frame_locator("iframe.agp-report"))
        own_table = alice.locator("#period table.metrics tbody").inner_text()
        assert alice.frame_locator("iframe.agp-report").locator("figure.day").count() >= 1

        doc = ctx.new_page()
        ctx.clear_cookies()
        _login(doc, srv.url, "dr-lee")
        doc.goto(f"{srv.url}/portal/patients/alice")
        agg = doc.frame_locator("#agp iframe.agp-report")
        assert agg.locator(".aggregate-only").count() == 1
        theirs = _report_parts(agg)
        their_table = doc.locator("#period table.metrics tbody").inner_text()
    # hers in her zone, his in UTC days, each 14 whole days from midnight to midnight
    assert f"({zone}, 14 whole local days)" in own[".period"], own[".period"]
    assert "(UTC, 14 whole local days)" in theirs[".period"], theirs[".period"]
    for period in (own[".period"], theirs[".period"]):
        assert period.count("00:00") == 2, period
    assert set(own) == set(theirs) and all(theirs.values())
    assert own_table and their_table
    assert "Readings" in own["table.metrics"]
