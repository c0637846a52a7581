"""Share a proof in headless Chromium: alice picks a claim, the days and to whom, signs and
downloads the claim file; her audit page lists the disclosure; the check on the same page
names the claim, the period and the checkpoint, and nothing else. The zero-knowledge test
profile (``glucoledger zk-setup --profile test``). Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glucoledger.zk.toolchain import Toolchain

from ..zk import conftest as zk_conftest
from .conftest import cover_claim_days
from .test_browser import ARGS, ARTIFACTS, CHROMIUM, _login
from .test_browser_charts import _post

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")
tc = zk_conftest.tc


def test_share_a_proof_signs_a_disclosure_she_sees_in_her_audit(  # type: ignore[no-untyped-def]
        served, tc: Toolchain, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("GLUCOLEDGER_ZK_PROFILE", "test")
    site, srv = served
    cover_claim_days(site, 2, lambda path, doc: _post(srv.url, path, doc))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 900},
                                       accept_downloads=True).new_page()
            _login(page, srv.url, "alice")
            page.goto(f"{srv.url}/portal/claims")
            page.get_by_label("What to prove").select_option("tbr54<=1")
            page.get_by_label("Over the last (whole days)").fill("2")
            page.get_by_label("For whom (optional)").fill("the licensing authority")
            hint = page.locator("form[action='/portal/claims/make'] p.hint").inner_text()
            assert "on the ledger" in hint and "audit trail" in hint  # told before signing
            with page.expect_download(timeout=120_000) as got:
                page.get_by_role("button", name="Sign and download the proof").click()
            saved = tmp_path / "claim.json"
            got.value.save_as(saved)
            doc = json.loads(saved.read_text())
            assert doc["claim"] == "tbr54<=1" and len(doc["windows"]) == 2

            page.goto(f"{srv.url}/portal/audit")
            entry = page.locator('#trail li.entry[data-kind="zk_disclosure"]')
            assert entry.count() == 1
            text = entry.inner_text()
            assert "tbr54<=1 over 2 days" in text and "the licensing authority" in text
            assert "Disclosed" in text and "refused" not in text.lower()
            page.screenshot(path=str(ARTIFACTS / "20-audit-lists-proof-disclosure.png"),
                            full_page=True)

            page.goto(f"{srv.url}/portal/claims")
            page.get_by_label("Claim file (JSON)").set_input_files(str(saved))
            page.get_by_role("button", name="Check it").click()
            shown = page.locator("#verified")
            assert "tbr54<=1" in shown.inner_text() and "2 day(s)" in shown.inner_text()
            assert shown.locator("dt").count() == 3  # the claim, the period, the checkpoint
        finally:
            browser.close()
