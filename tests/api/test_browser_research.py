"""The patient's research page in headless Chromium (Debian's package, via Playwright): she
logs in through the portal, sees the study she joined, what it received and her credit; after
she withdraws, a later release is not listed. Served by uvicorn on a port in 28000-28999."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from glucoledger.node.research import ResearchService
from tests.api.test_browser import ARGS, ARTIFACTS, CHROMIUM, _login
from tests.api.test_rest_research import ResearchSite

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")


def _port() -> int:
    for port in range(28180, 28999):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 28180-28999")


def test_patient_sees_her_studies_uses_and_credit(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    site = ResearchSite(tmp_path)
    lab = site.lab
    lab.research = ResearchService(site.node, site.ctx.services["vault"])  # the server's vault
    study = lab.study(protocol="GL-WEB-1", purpose="overnight lows in adults")
    grants = [lab.join(i, study) for i in range(3)]
    lab.release(study)
    lab.research.query(lab.sponsor.id, lab.sponsor_keys, study, "time_in_range", 0.2)
    lab.node.send("research.withdraw", {"grant": grants[0]}, lab.patients[0].id,
                  lab.keys(lab.patients[0]))
    lab.release(study)
    site.ctx.passwords.set("p0", "p0-demo-password")
    port = _port()
    server = uvicorn.Server(uvicorn.Config(site.app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="gl-chromium-")
    try:
        with sync_playwright() as p:
            ctx: Any = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1000, "height": 900})
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.goto(f"{url}/research")
            page.wait_for_url(f"{url}/portal/login*")  # not signed in: sent to log in
            _login(page, url, "p0")
            page.goto(f"{url}/research")
            section = page.locator('section.study[data-protocol="GL-WEB-1"]')
            assert section.count() == 1
            assert section.get_attribute("data-status") == "withdrawn"
            assert "overnight lows in adults" in section.inner_text()
            rows = section.locator("table.uses tbody tr")
            assert rows.count() == 2  # the release and the query before she withdrew
            assert "de-identified records" in rows.nth(0).inner_text()
            assert "epsilon 0.2" in rows.nth(1).inner_text()
            credit = section.locator("p.credit").inner_text()
            assert "cannot be sold or transferred" in credit and "day(s)" in credit
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "research-patient.png"), full_page=True)
            ctx.close()
    finally:
        server.should_exit = True
        thread.join(10)
        site.close()
