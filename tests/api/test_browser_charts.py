"""Charts a person can read on a phone, in headless Chromium (Debian's package, via Playwright).

- tap-for-value: a tap on today's chart reads the nearest reading (checked against the same
  readings fetched independently, through dr-lee's Nightscout token under a raw grant); the
  keyboard cursor (a focusable ``role=slider``) steps through readings and announces each
  in a polite live region; the AGP chart reads a time of day's percentiles, the same numbers
  its table lists;
- labels: every chart label on the phone (390 px) is at least 12 CSS px, inside the AGP
  report's frame too; the check itself fails on the report's own wide profile (control);
- sensor age and batteries from a real uploader's devicestatus, on a phone.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from glucoledger.api.portal_view import Prefs
from glucoledger.node import consent_actions as ca
from glucoledger.node.accounts import identity, keys_of
from glucoledger.node.demo_site import DEMO_READER_TOKEN, DEMO_UPLOADER_SECRET

from . import payloads
from . import test_browser_portal as _portal
from .test_browser import CHROMIUM

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")

browser = _portal.browser  # the same Chromium fixture
DAY = 86_400_000
SHA1 = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
# every rendered text node under ``root`` smaller than 12 CSS px: [tag, text, px]
SMALL_TEXT = """root => {
  const small = [];
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const t = walk.currentNode, el = t.parentElement;
    if (!t.textContent.trim() || !el || !el.getClientRects().length) continue;
    if (el.closest('.sr-only')) continue;
    let px = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement) px *= el.getScreenCTM().a;
    if (px < 12) small.push([el.tagName, t.textContent.trim().slice(0, 24), px]);
  }
  return small;
}"""


def _phone(browser: Any, url: str, name: str) -> Any:
    page = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                               is_mobile=True).new_page()
    page.goto(f"{url}/portal/login")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(f"{name}-demo-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/portal*")
    return page


def _post(url: str, path: str, doc: Any) -> None:
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(doc).encode(), method="POST",
                                 headers={"api-secret": SHA1,
                                          "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def _grant_lee(site: Any, streams: tuple[str, ...]) -> None:
    alice = identity(site.node, "alice")
    now = int(time.time() * 1000)
    ca.grant(site.node, alice.id, keys_of(site.node, alice), identity(site.node, "dr-lee").id,
             streams=streams, view="raw", window={"last_days": 30}, valid_from=now - 1000,
             valid_until=now + 30 * DAY)


def _entries(url: str, zone: tzinfo) -> dict[str, int]:
    """Today's sensor readings (in ``zone``) as dr-lee's Nightscout client reads them:
    {HH:MM in ``zone``: sgv}."""
    with urllib.request.urlopen(f"{url}/api/v1/entries/sgv.json?count=2000&token="
                                f"{DEMO_READER_TOKEN}", timeout=30) as r:
        docs = json.loads(r.read())
    today = datetime.now(zone).date()
    out = {}
    for d in docs:
        at = datetime.fromtimestamp(d["date"] / 1000, zone)
        if at.date() == today:
            out[at.strftime("%H:%M")] = d["sgv"]
    return out


def _noon_zone() -> str:
    """A fixed-offset zone where it is now between noon and 1 pm: the patient who looks at
    "today" in it has half a day of readings behind her whatever the hour the test runs at
    (just after midnight UTC, today would hold a few readings: no middle, no hour back)."""
    hours = 12 - datetime.now(UTC).hour  # -11 .. 12: every one is an Etc/GMT zone
    return f"Etc/GMT{'-' if hours >= 0 else '+'}{abs(hours)}"  # Etc/GMT-5 is UTC+5


def _tap_at(page: Any, svg: Any, x_units: float, y_frac: float = 0.5) -> None:
    box = svg.bounding_box()
    assert box is not None
    svg.tap(position={"x": x_units * box["width"] / 320, "y": box["height"] * y_frac})


def test_tap_and_keys_read_today_and_the_profile(served, browser) -> None:  # type: ignore[no-untyped-def]
    site, srv = served
    _grant_lee(site, ("cgm",))
    # Alice looks at her day in a zone where it is now early afternoon (the demo's three
    # days of readings give her half a day today), so the test reads the same day-shape
    # whatever the hour it runs at; the page shows her times in her zone (portal prefs).
    zone = ZoneInfo(_noon_zone())
    Prefs(site.node.data_dir).set(identity(site.node, "alice").id, "mg/dL", zone.key)
    now = int(time.time() * 1000)
    _post(srv.url, "/api/v1/entries", [{"device": "xDrip-DexcomG6", "date": now, "sgv": 287,
                                        "direction": "DoubleUp", "type": "sgv"}])
    truth = _entries(srv.url, zone)
    page = _phone(browser, srv.url, "alice")
    chart = page.locator("#today svg.chart")
    out = page.locator("#today output.readout")
    assert out.get_attribute("aria-live") == "polite" and out.inner_text() == ""
    midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    times = sorted(truth)
    assert len(times) >= 24, times  # hours of readings since her midnight: a middle, an hour
    # a tap on the middle of the day's readings reads the nearest one, as Nightscout has it
    mid = times[len(times) // 2]
    t_mid = datetime.strptime(mid, "%H:%M").replace(year=midnight.year, month=midnight.month,
                                                     day=midnight.day, tzinfo=zone)
    _tap_at(page, chart, 34 + 282 * (t_mid - midnight).total_seconds() / 86_400)
    said = out.inner_text()
    hhmm, value = said.split(": ")
    assert value == f"{truth[hhmm]} mg/dL", (said, truth.get(hhmm))
    got = datetime.strptime(hhmm, "%H:%M")
    assert abs((got - datetime.strptime(mid, "%H:%M")).total_seconds()) <= 600, (said, mid)
    # a tap at the right edge reads the newest: the one just uploaded
    _tap_at(page, chart, 318)
    newest = datetime.fromtimestamp(now / 1000, zone).strftime("%H:%M")
    assert out.inner_text() == f"{newest}: 287 mg/dL"
    # keyboard: the cursor is a slider; End, one step back, one hour back
    cursor = page.locator("#today [role=slider]")
    cursor.focus()
    page.keyboard.press("End")
    assert cursor.get_attribute("aria-valuetext") == out.inner_text()
    assert out.inner_text().endswith(": 287 mg/dL")
    page.keyboard.press("ArrowLeft")
    step_back = out.inner_text().split(": ")[0]
    assert step_back == times[-2] if times[-1] == newest else step_back < times[-1]
    assert out.inner_text() == f"{step_back}: {truth[step_back]} mg/dL"
    page.keyboard.press("PageDown")
    hour_back = out.inner_text().split(": ")[0]
    gap = (datetime.strptime(step_back, "%H:%M") - datetime.strptime(hour_back, "%H:%M"))
    assert 50 * 60 <= gap.total_seconds() <= 70 * 60, (step_back, hour_back)
    box = cursor.bounding_box()
    assert box is not None and box["height"] >= 44

    # the profile: tap the middle of the 12:00 bin; the table's 12:00 row says the same
    profile = page.locator("#period svg.agp-chart")
    _tap_at(page, profile, 36 + 278 * (12 * 60 + 7.5) / 1_440)
    read = page.locator("#period output.readout").inner_text()
    assert read.startswith("12:00–12:15: median "), read
    row = page.locator("table.agp-table tbody tr", has_text="12:00").first
    cells = [c.text_content() for c in row.locator("td").all()]  # in a closed <details>
    assert read == (f"12:00–12:15: median {cells[3]} mg/dL; middle half {cells[2]}–{cells[4]}; "
                    f"90 % between {cells[1]} and {cells[5]}"), (read, cells)
    page.context.close()


def test_chart_labels_are_readable_on_a_phone(served, browser) -> None:  # type: ignore[no-untyped-def]
    site, srv = served
    _grant_lee(site, ("cgm", "insulin", "carbs", "settings"))
    alice = _phone(browser, srv.url, "alice")
    for where in ("#today svg.chart", "#period svg.agp-chart"):
        svg = alice.locator(where)
        assert svg.locator("text").count() >= 5
        assert svg.evaluate(SMALL_TEXT) == [], where
    alice.context.close()
    doc = _phone(browser, srv.url, "dr-lee")
    doc.goto(f"{srv.url}/portal/patients/alice")
    for where in ("#agp svg.agp-chart", "#daily"):
        assert doc.locator(where).first.evaluate(SMALL_TEXT) == [], where
    frame = doc.frame_locator("#agp iframe.agp-report")
    body = frame.locator("body")
    assert body.evaluate(SMALL_TEXT) == []
    assert frame.locator("p.phone-only").is_visible()
    # control: without the phone stylesheet the report's own 900-unit profile has 4 px labels
    body.evaluate("b => b.ownerDocument.querySelectorAll('style')[1].remove()")
    small = body.evaluate(SMALL_TEXT)
    assert any(tag == "text" and px < 6 for tag, _t, px in small), small
    doc.context.close()


def test_sensor_age_and_batteries_on_a_phone(served, browser) -> None:  # type: ignore[no-untyped-def]
    _site, srv = served
    page = _phone(browser, srv.url, "alice")
    assert page.locator("#sensor-age").inner_text().startswith("unknown")
    assert page.locator("#phone-battery").inner_text().startswith("unknown")
    now = int(time.time() * 1000)
    _post(srv.url, "/api/v1/treatments", {"eventType": "Sensor Start", "enteredBy": "xdrip",
                                          "created_at": payloads.iso(now - 6 * DAY - 7_200_000)})
    _post(srv.url, "/api/v1/devicestatus", payloads.aaps_devicestatus(now))
    page.reload()
    page.locator("#devices").scroll_into_view_if_needed()
    assert page.locator("#sensor-age").inner_text().startswith("6 days 2 hours")
    assert page.locator("#phone-battery").inner_text().startswith("71 %")
    assert page.locator("#pump-battery").inner_text().startswith("75 %")
    assert int(page.evaluate("document.documentElement.scrollWidth - innerWidth")) <= 0
    page.context.close()
