"""The AGP report through audited reads (node/report.py), checked in headless Chromium.

A summary grant gets the aggregate parts (statistics, ranges, GRI, percentile profile,
episode counts) and never a daily profile or a reading; a raw read gets daily profiles with
weekday labels and low/high shading, and boluses and carbs beside glucose. A conflicting
re-upload is visible: raw and summary reads agree on the later value.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node.access import RawRelease, SignedSummary
from glucoledger.node.report import agp_report
from glucoledger.node.settled import SETTLE_MS

from ..api.test_browser import ARGS, CHROMIUM
from .conftest import DAY, NOW, Care

#: The 14 days of the fixture's data, read once the last of them has settled
#: (node/settled.py): the summary grant's "last 14 days" and the raw reader's same window.
DAYS14 = {"from": NOW - 14 * DAY, "to": NOW}


def _pages(care: Care) -> tuple[str, str, RawRelease, SignedSummary]:
    care.grant(care.endo, view="summary", window={"last_days": 14})
    care.grant(care.nurse, streams=("carbs", "cgm", "insulin"), view="raw",
               window={"last_days": 15})
    care.clock.advance(SETTLE_MS)
    summary = care.access.read(care.request(care.endo, view="summary",
                                            window={"last_days": 14}).raw)
    raw = care.access.read(care.request(care.nurse, streams=("carbs", "cgm", "insulin"),
                                        window=DAYS14).raw)
    assert isinstance(summary, SignedSummary) and isinstance(raw, RawRelease)
    summary.verify(care.node.node_key.public)  # the profile is signed with the metrics
    return (agp_report(summary, patient="alice").html(),
            agp_report(raw, patient="alice", units="mmol/L").html(), raw, summary)


def test_summary_view_holds_no_reading(care: Care) -> None:
    summary_page, raw_page, raw, summary = _pages(care)
    assert summary.summary == raw.summary  # one computation, whatever the view
    assert '<figure class="day"' not in summary_page and "aggregate-only" in summary_page
    assert raw_page.count('<figure class="day"') >= 14
    # Nothing per reading or per day: no daily section, trace, shading or treatment.
    for marker in ('class="daily"', "shade-low", "shade-high", 'class="bolus"',
                   'class="carbs"', 'class="weekday"'):
        assert marker not in summary_page, marker
    # The one chart is the modal day: its points are the 96 bins, not the readings.
    median = re.findall(r'<polyline class="median" points="([^"]*)"', summary_page)
    assert sum(len(m.split()) for m in median) <= 96
    assert summary_page.count("Sufficient data") + summary_page.count("Insufficient data") == 1


def test_conflicting_reupload_is_visible_and_raw_and_summary_agree(care: Care) -> None:
    original = care.readings["cgm"][-72:]
    changed = tuple(CgmReading(r.time_ms, r.tz_offset_min, min(400, r.mgdl + 50))
                    for r in original)
    dev = care.world.add_device("CGM-2", model="Dexcom G7")
    from glucoledger.node.devices import bind_device

    bind_device(care.node, care.alice.id, care.alice.keys[:1], dev.id)
    care.ingest.ingest_batches([Batch("cgm", changed, changed[0].time_ms, changed[-1].time_ms,
                                      len(changed))],
                               patient=care.alice.id, uploader=dev.id, signer=dev.key)
    care.grant(care.endo, view="summary", window={"last_days": 14})
    care.grant(care.nurse, view="raw", window={"last_days": 15})
    care.clock.advance(SETTLE_MS)
    s = care.access.read(care.request(care.endo, view="summary", window={"last_days": 14}).raw)
    raw = care.access.read(care.request(care.nurse, window=DAYS14).raw)
    assert isinstance(s, SignedSummary) and isinstance(raw, RawRelease)
    assert s.summary.superseded == 72
    by_time = {r.time_ms: r for r in raw.records if isinstance(r, CgmReading)}
    assert len(by_time) == len([r for r in raw.records if isinstance(r, CgmReading)])
    assert all(by_time[r.time_ms].mgdl == r.mgdl for r in changed)  # the later upload
    assert raw.summary == s.summary


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                    "`bash .ci/install-browser.sh` (Debian package chromium)")
def test_agp_report_in_chromium(care: Care, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    summary_page, raw_page, _raw, summary = _pages(care)
    profile = tempfile.mkdtemp(prefix="gl-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1100, "height": 900})
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            for html, view in ((summary_page, "summary"), (raw_page, "raw")):
                path = tmp_path / f"{view}.html"
                path.write_text(html)
                page.goto(path.as_uri())
                text = page.inner_text("body")
                for heading in ("Glucose statistics and targets", "Time in ranges",
                                "Glycemia Risk Index", "Events", "Ambulatory glucose profile"):
                    title = page.get_by_role("heading", name=heading, exact=True)
                    assert title.is_visible(), heading
                assert re.search(r"GRI \d+\.\d, zone [A-E]", text)
                rows = page.locator("tr.range")
                assert rows.count() == 5
                for i in range(5):
                    row = rows.nth(i).inner_text()
                    assert re.search(r"\d+\.\d %", row) and "goal" in row and "a day" in row
                labels = page.locator("text.pct-label")
                assert sorted(labels.all_text_contents()) == ["25 %", "5 %", "50 %", "75 %", "95 %"]
                assert page.locator("tr.episode").count() == 5
                assert re.search(r"\(UTC[+-]\d\d:\d\d, 14\.0 days\)", text)
                assert text.count("ufficient data") == 1
                assert "Sensor LOW readings" in text
                days = page.locator("figure.day")
                if view == "summary":
                    assert days.count() == 0 and page.locator("polyline").count() >= 1
                    assert page.locator("circle.carbs, path.bolus").count() == 0
                    assert "mg/dL" in text
                else:
                    assert days.count() >= 14
                    weekdays = page.locator("figure.day .weekday").all_inner_texts()
                    assert set(weekdays) <= {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
                    assert len(set(weekdays)) == 7
                    assert page.locator("rect.shade-low, rect.shade-high").count() > 0
                    assert page.locator("path.bolus").count() > 0
                    assert page.locator("circle.carbs").count() > 0
                    assert "mmol/L" in text and "Target range, 3.9-10.0 mmol/L" in text
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert summary.profile.days == ()
