"""Emergency access in headless Chromium, two people on two devices.

dr-kim asks for emergency access in her browser; rosa, alice's trusted person, logs in in a
separate browser context (her own device), sees who asks, why and for how long, and approves
with the keyboard; dr-kim then sees alice's readings; alice's audit page lists the emergency
first. Nobody types another person's password. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import pytest

from .test_browser import ARGS, ARTIFACTS, CHROMIUM, _login

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")

REASON = "found unresponsive in the waiting room"


def test_clinician_asks_trusted_party_approves_on_her_own_device(served) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    _site, srv = served
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            doc = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
            _login(doc, srv.url, "dr-kim")
            assert doc.locator('input[type="password"]').count() == 0
            doc.get_by_label("Patient", exact=True).select_option("alice")
            doc.get_by_label("Reason").fill(REASON)
            doc.get_by_label("Access for").select_option("4")
            doc.get_by_role("button", name="Request emergency access").click()
            doc.wait_for_url("**/portal?msg=*")
            assert "trusted person must approve" in doc.locator(".notice").inner_text()
            mine = doc.locator("#emergency li.request.pending")
            assert mine.count() == 1 and "waiting for her trusted person" in mine.inner_text()
            assert doc.locator('tr.patient[data-patient="alice"]').count() == 0
            doc.screenshot(path=str(ARTIFACTS / "06-clinician-asks-emergency.png"),
                           full_page=True)

            rosa = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
            _login(rosa, srv.url, "rosa")  # her own login, her own device (a phone)
            waiting = rosa.locator("#emergency-decide article.request")
            assert waiting.count() == 1
            text = waiting.inner_text()
            assert "dr-kim asks to see alice's data" in text and REASON in text
            assert "4 hours" in text
            rosa.screenshot(path=str(ARTIFACTS / "07-trusted-party-sees-request-phone.png"),
                            full_page=True)
            approve = rosa.get_by_role("button",
                                       name="Approve dr-kim's emergency access to alice")
            approve.focus()
            rosa.keyboard.press("Enter")  # keyboard only
            rosa.wait_for_url("**/portal?msg=*")
            assert "Approved" in rosa.locator(".notice").inner_text()
            assert rosa.locator("#no-requests").is_visible()

            doc.reload()
            seen = doc.locator('tr.patient[data-patient="alice"]')
            assert seen.count() == 1 and "emergency" in seen.inner_text()
            doc.goto(f"{srv.url}/portal/patients/alice")
            assert "emergency access" in doc.locator("h1").inner_text()
            assert doc.locator("table.readings tbody tr").count() > 0
            doc.screenshot(path=str(ARTIFACTS / "08-clinician-sees-alice-in-emergency.png"),
                           full_page=True)

            alice = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
            _login(alice, srv.url, "alice")
            alice.goto(f"{srv.url}/portal/audit")
            rows = alice.locator("#trail li.entry")
            first = rows.nth(0)
            assert "emergency" in (first.get_attribute("class") or "")
            assert "dr-kim" in first.inner_text()
            kinds = [rows.nth(i).get_attribute("data-kind") for i in range(rows.count())]
            flagged = ["emergency" in (rows.nth(i).get_attribute("class") or "")
                       for i in range(rows.count())]
            # the request, its opening and every read under it are flagged, and listed first
            top = [k for k, f in zip(kinds, flagged, strict=True) if f]
            assert {"emergency", "emergency_request"} <= set(top), (kinds, flagged)
            opened = rows.nth(kinds.index("emergency")).inner_text()
            assert "approved by rosa" in opened, opened
            assert flagged == sorted(flagged, reverse=True), "emergencies are listed first"
            alice.locator("#audit").screenshot(
                path=str(ARTIFACTS / "09-patient-audit-emergency-first.png"))
        finally:
            browser.close()
