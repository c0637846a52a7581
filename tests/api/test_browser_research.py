"""The research page in headless Chromium (Debian's package, via Playwright), served by
uvicorn on a free port (tests/servers.py):

- axe-core (the portal's pinned version, tests/api/test_browser_portal.py) reports no
  critical, serious or moderate violation on the page of each role (patient with studies,
  uses and an open study to join; patient on her first join, asked for her details; the
  sponsor with releases and forms; a bundle checked), at 390 and 1280 px, and nothing
  overflows at 320 px;
- keyboard only, a patient opens the page from the navigation, joins a study unticking a
  field, withdraws from another; each confirmation receives focus;
- she sees the study she left, what it received before (and not after), and her credit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoledger.node.research import ResearchService
from tests.api.test_browser import ARTIFACTS, CHROMIUM
from tests.api.test_browser_portal import _axe, _enter, _focused_id, _overflow, _page, _tab_to
from tests.api.test_browser_portal import axe_source as axe_source  # noqa: F401 (fixture)
from tests.api.test_browser_portal import browser as browser  # noqa: F401 (fixture)
from tests.api.test_rest_research import ResearchSite
from tests.servers import UvicornThread

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run "
                                "`bash .ci/install-browser.sh` (Debian package chromium)")


class Served:
    def __init__(self, tmp: Path) -> None:
        self.site = ResearchSite(tmp)
        lab = self.site.lab
        lab.research = ResearchService(self.site.node, self.site.ctx.svc.vault)
        for name in ("p0", "p1", "p2", "p3", "p5", "uni-research"):
            self.site.ctx.passwords.set(name, f"{name}-demo-password")
        self.left = lab.study(protocol="GL-WEB-1", purpose="overnight lows in adults")
        grants = [lab.join(i, self.left) for i in range(3)]
        lab.release(self.left)
        lab.research.query(lab.sponsor.id, lab.sponsor_keys, self.left,
                           "hypo1_episodes_per_week", 0.2)
        lab.node.send("research.withdraw", {"grant": grants[0]}, lab.patients[0].id,
                      lab.keys(lab.patients[0]))
        lab.release(self.left)
        self.kept = lab.study(protocol="GL-WEB-2", purpose="exercise and glucose")
        for i in (1, 2):
            lab.join(i, self.kept)
        self.open = lab.study(protocol="GL-WEB-3", purpose="pump settings and lows")
        self.http = UvicornThread(self.site.app)
        self.url = self.http.url

    def close(self) -> None:
        self.http.stop()
        self.site.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def test_research_page_axe_clean_for_every_role_and_fits_a_phone(
        served: Served, browser: Any, axe_source: str, tmp_path: Path) -> None:
    lab = served.site.lab
    lab.research.store.forget(lab.patients[5].id)  # p5 is asked for her details
    bundle = tmp_path / "release.json"
    bundle.write_bytes(lab.research.release(lab.sponsor.id, lab.sponsor_keys, served.kept))
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    seen = 0
    for name in ("p0", "p5", "uni-research"):
        for width in (390, 1280, 320):
            page = _page(browser, served.url, name, width)
            page.goto(f"{served.url}/portal/research")
            assert page.locator("h1").inner_text() == "Research"
            checks = [page]
            if name != "p5":  # and the page after checking a bundle
                verified = page.context.new_page()
                verified.goto(f"{served.url}/portal/research")
                verified.set_input_files("#bundle", str(bundle))
                with verified.expect_navigation():
                    verified.get_by_role("button", name="Check it").click()
                assert "Unaltered" in verified.locator("#verified").inner_text()
                checks.append(verified)
            for p in checks:
                seen += 1
                if width == 320:
                    if (extra := _overflow(p)) > 0:
                        problems.append(f"{name} {p.url} at 320 px overflows by {extra} px")
                    continue
                for v in _axe(p, axe_source):
                    problems.append(f"{name} {p.url} at {width} px: {v['impact']} {v['id']} "
                                    f"({v['help']}) at {v['nodes']}")
            if width == 390:
                page.screenshot(path=str(ARTIFACTS / f"research-{name}-phone.png"),
                                full_page=True)
            page.context.close()
    assert seen == 3 * 5
    assert not problems, "\n".join(problems)


def test_keyboard_only_join_and_withdraw_and_what_she_sees(served: Served, browser: Any
                                                           ) -> None:
    page = _page(browser, served.url, "p1", 1280, 900)
    # from the navigation, by keyboard
    _tab_to(page, 'header a[href="/portal/research"]')
    _enter(page, f"{served.url}/portal/research")
    left = page.locator('article.study[data-protocol="GL-WEB-1"]')
    assert left.get_attribute("data-status") == "active"
    assert left.locator("table.uses tbody tr").count() == 3  # two releases and the query
    # join GL-WEB-3, keeping back her age
    offer = page.locator('article.open-study[data-protocol="GL-WEB-3"]')
    assert "pump settings and lows" in offer.inner_text()
    sid = served.open.hex()[:12]
    _tab_to(page, f'#join-{sid} input[name="fields"][value="age"]')
    page.keyboard.press("Space")
    assert not page.locator(f'#join-{sid} input[name="fields"][value="age"]').is_checked()
    _tab_to(page, f'#join-{sid} button[type="submit"]')
    _enter(page, "**/portal/research?msg=*")
    assert _focused_id(page) == "notice"
    assert "You joined GL-WEB-3" in page.locator("#notice").inner_text()
    joined = page.locator('article.study[data-protocol="GL-WEB-3"]')
    assert joined.get_attribute("data-status") == "active"
    assert "your region, sex" in joined.inner_text() and "age" not in joined.inner_text()
    assert page.locator('article.open-study[data-protocol="GL-WEB-3"]').count() == 0
    # withdraw from GL-WEB-2
    _tab_to(page, '[aria-label="Withdraw from GL-WEB-2"]')
    _enter(page, "**/portal/research?msg=*")
    assert _focused_id(page) == "notice" and "You withdrew" in page.locator(
        "#notice").inner_text()
    assert page.locator('article.study[data-protocol="GL-WEB-2"]').get_attribute(
        "data-status") == "withdrawn"
    page.context.close()
    # p0 withdrew from GL-WEB-1 before its second release: she sees the first, not the second
    page = _page(browser, served.url, "p0", 1000, 900)
    page.goto(f"{served.url}/portal/research")
    section = page.locator('article.study[data-protocol="GL-WEB-1"]')
    assert section.get_attribute("data-status") == "withdrawn"
    rows = section.locator("table.uses tbody tr")
    assert rows.count() == 2
    assert "de-identified records" in rows.nth(0).inner_text()
    assert "Episodes below 70 mg/dL per week" in rows.nth(1).inner_text()
    credit = section.locator("p.credit").inner_text()
    assert "cannot be sold or transferred" in credit and "day(s)" in credit
    page.context.close()
