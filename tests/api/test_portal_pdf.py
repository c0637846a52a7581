"""The clinician's PDF report (api/portal_pdf.py), printed by the real Chromium and read back
with pypdf: the report's pages and numbers, through consent and audited like any read; a
summary grant's PDF holds no daily profile; without Chromium the link is gone and the
request is a 503 page that points to printing, with no read made."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from glucoledger.api import portal_pdf
from glucoledger.node.accounts import identity
from glucoledger.node.audit import audit_trail

from .test_portal_devices import _grant
from .test_portal_http import _login

pypdf = pytest.importorskip("pypdf")
pytestmark = pytest.mark.skipif(not portal_pdf.available(), reason="no Chromium here: install "
                                "the Debian package chromium (bash .ci/install-browser.sh)")
DAY = 86_400_000


def _lee_reads(site: Any) -> int:
    lee = identity(site.node, "dr-lee").id
    return sum(1 for e in audit_trail(site.node, identity(site.node, "alice").id)
               if e.kind == "access" and e.who == lee)


def _pdf_text(body: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(body))
    return len(reader.pages), "\n".join(p.extract_text() or "" for p in reader.pages)


def _page_tir(html: str) -> str:
    m = re.search(r"Time in range \(70–180 mg/dL\)</th><td>([0-9.]+) %</td>", html)
    assert m, "no time in range on the page"
    return m.group(1)


def test_raw_grant_pdf_has_the_report_pages_and_numbers(client: Any, site: Any) -> None:
    _grant(site, "raw", ("cgm", "insulin", "carbs"))
    _login(client, "dr-lee")
    page = client.get("/portal/patients/alice?days=14").text
    assert 'id="pdf-link"' in page and "report.pdf?days=14" in page
    before = _lee_reads(site)
    r = client.get("/portal/patients/alice/report.pdf?days=14")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "no-store"
    assert r.content.startswith(b"%PDF-")
    assert _lee_reads(site) == before + 1  # audited like any read
    pages, text = _pdf_text(r.content)
    assert pages >= 2, pages
    flat = " ".join(text.split())
    for words in ("Ambulatory Glucose Profile (AGP) report", "alice", "Glycemia Risk Index",
                  "Daily glucose profiles", "Time in range 70-180 mg/dL"):
        assert words in flat, words
    tir = _page_tir(page)  # the number on the page is the number in the PDF
    assert re.search(rf"Time in range 70-180 mg/dL {re.escape(tir)} %", flat), (tir, flat[:800])


def test_summary_grant_pdf_has_no_daily_profile(client: Any, site: Any) -> None:
    _grant(site, "summary", ("cgm", "insulin", "carbs"))
    _login(client, "dr-lee")
    r = client.get("/portal/patients/alice/report.pdf?days=14")
    assert r.status_code == 200, r.text[:300]
    _pages, text = _pdf_text(r.content)
    flat = " ".join(text.split())
    assert "Summary view" in flat and "Daily glucose profiles" not in flat
    assert "Time in range 70-180 mg/dL" in flat


def test_no_grant_no_pdf(client: Any, site: Any) -> None:
    _login(client, "dr-lee")
    r = client.get("/portal/patients/alice/report.pdf")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "has not given you access" in r.text
    assert client.get("/portal/patients/alice/report.pdf?days=365").status_code == 400


def test_without_chromium_a_page_that_says_print(client: Any, site: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _grant(site, "raw", ("cgm",))
    _login(client, "dr-lee")
    monkeypatch.setattr(portal_pdf, "chromium_path", lambda: None)
    assert 'id="pdf-link"' not in client.get("/portal/patients/alice").text
    before = _lee_reads(site)
    r = client.get("/portal/patients/alice/report.pdf")
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    assert "Print report" in r.text and "Traceback" not in r.text
    assert _lee_reads(site) == before  # nothing was read
