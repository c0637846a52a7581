"""The portal in headless Chromium (Debian's package, driven by Playwright).

Alice logs in, grants dr-lee access; dr-lee's list shows her and her page her readings;
alice revokes; she vanishes from the list; alice's audit trail shows dr-lee's look.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium")
                                        .exists() else None)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")


def _login(page, url: str, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/portal/login")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(f"{name}-demo-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/portal*")


def test_grant_see_revoke_audit(served) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    _site, srv = served
    ARTIFACTS.mkdir(exist_ok=True)
    profile = tempfile.mkdtemp(prefix="gl-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1100, "height": 900})
            alice = ctx.pages[0] if ctx.pages else ctx.new_page()
            _login(alice, srv.url, "alice")
            assert alice.get_by_role("heading", name="Hello alice").is_visible()
            alice.screenshot(path=str(ARTIFACTS / "01-patient-home.png"), full_page=True)

            alice.get_by_label("Give access to").select_option("dr-lee")
            alice.get_by_label("Every reading").check()
            alice.get_by_role("button", name="Give access").click()
            alice.wait_for_url("**/portal?msg=*")
            assert alice.locator('li.grant.active[data-grantee="dr-lee"]').count() == 1

            browser2 = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            doc = browser2.new_page(viewport={"width": 390, "height": 844})  # a phone
            _login(doc, srv.url, "dr-lee")
            assert doc.locator('tr.patient[data-patient="alice"]').count() == 1
            doc.get_by_role("link", name="alice").click()
            doc.wait_for_url("**/portal/patients/alice")
            assert doc.locator("table.readings tbody tr").count() > 0
            doc.screenshot(path=str(ARTIFACTS / "02-clinician-sees-alice-phone.png"),
                           full_page=True)

            alice.get_by_role("button", name="Revoke access for dr-lee").click()
            alice.wait_for_url("**/portal?msg=*")
            assert alice.locator('li.grant.active[data-grantee="dr-lee"]').count() == 0

            doc.goto(f"{srv.url}/portal")
            assert doc.locator('tr.patient[data-patient="alice"]').count() == 0
            assert doc.locator("#no-patients").is_visible()
            doc.screenshot(path=str(ARTIFACTS / "03-clinician-after-revoke.png"),
                           full_page=True)

            alice.goto(f"{srv.url}/portal/audit")
            audit = alice.locator("#trail li.entry")
            texts = [audit.nth(i).inner_text() for i in range(audit.count())]
            assert any("dr-lee" in t and "Allowed" in t for t in texts), texts
            alice.locator("#audit").screenshot(path=str(ARTIFACTS / "04-audit-trail.png"))
            alice.goto(f"{srv.url}/portal/status")
            alice.get_by_role("button", name="Verify the whole ledger now").click()
            assert "Verified" in alice.locator("#verify-result").inner_text()
            alice.screenshot(path=str(ARTIFACTS / "05-status.png"), full_page=True)
            browser2.close()
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
