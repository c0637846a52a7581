"""The clinician's printable report as a PDF: the AGP v5 report page (node/report.py, the same
HTML the portal embeds and the CLI writes) printed by Chromium.

Why Chromium and not a PDF library: the report is HTML with inline SVG; Chromium prints
exactly what the clinician sees on screen and in the browser's print dialog, with text
that stays text (searchable, copyable, read by screen readers' PDF modes). A second drawing
of the report for a PDF library would drift from the page. The cost is a browser on the
server, so the PDF is an *optional* path: without Playwright or a Chromium binary the page
hides the PDF link and a request for it is a 503 page that points to "Print report" (the
print stylesheet, always there). Serving pages never needs Chromium.

Invariants:
- the PDF is built from an audited read through the clinician's grant, like every view:
  a summary grant yields the aggregate report only (no daily profile, no reading);
- Chromium renders with JavaScript off and every network request refused, so the report
  (self-contained: inline CSS and SVG) cannot fetch anything or run anything;
- costly: per account at most ``BURST`` PDFs per ``EVERY_S`` seconds, and one render at a
  time per server (``CostLimiter``), a 429 page otherwise;
- the binary is found in ``$GLUCOLEDGER_CHROMIUM``, else ``chromium`` on the PATH (Debian's
  package), else Playwright's own download.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..errors import BackendError
from ..node.report import AgpReport
from .context import ctx
from .portal_base import fmt_of, templates, who
from .portal_clinician import grant_for
from .portal_patient import period_report

__all__ = ["BURST", "EVERY_S", "available", "chromium_path", "html_to_pdf", "router"]

router = APIRouter(include_in_schema=False)
EVERY_S: Final = 60.0
BURST: Final = 6
_ARGS: Final = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run")
_UNAVAILABLE: Final = ("a PDF needs Chromium on the server, and this server has none; use "
                       "\"Print report\" on the patient's page (the browser prints the same "
                       "report), or ask the administrator to install the chromium package")


def chromium_path() -> str | None:
    """The Chromium binary to print with, or None to let Playwright use its own."""
    for path in (os.environ.get("GLUCOLEDGER_CHROMIUM"), shutil.which("chromium"),
                 "/usr/bin/chromium"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def available() -> bool:
    """Whether this server can print PDFs: Playwright importable and a Chromium found."""
    return importlib.util.find_spec("playwright") is not None and chromium_path() is not None


def html_to_pdf(page_html: str, *, timeout_ms: int = 30_000) -> bytes:
    """``page_html`` (self-contained) printed to A4 by Chromium.

    Raises BackendError (503) when Chromium or Playwright is missing or the render fails."""
    if not available():
        raise BackendError(_UNAVAILABLE, code="pdf_unavailable")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                        args=list(_ARGS), timeout=timeout_ms)
            try:
                context = browser.new_context(java_script_enabled=False, offline=True)
                page = context.new_page()
                page.route("**/*", lambda route: route.abort())
                page.set_content(page_html, timeout=timeout_ms, wait_until="load")
                return page.pdf(format="A4", print_background=True,
                                margin={"top": "10mm", "bottom": "10mm", "left": "10mm",
                                        "right": "10mm"})
            finally:
                browser.close()
    except PlaywrightError:
        # the detail (paths, browser output) stays in the server; the person gets what to do
        raise BackendError("the PDF could not be printed right now; try again in a minute or "
                           "use \"Print report\"", code="pdf_failed") from None


templates.env.globals["pdf_available"] = available


def _report(request: Request, name: str, days: int) -> AgpReport:
    """The report of the clinician's grant for ``days`` (an audited read). Raises
    OutOfRangeError when the period holds no sensor glucose."""
    _, p = who(request)
    pid, g = grant_for(request, p, name)
    streams = ["cgm"] if g.view == "summary" else sorted(
        set(g.streams) & {"cgm", "insulin", "carbs"})
    return period_report(request, p, pid, streams, g.view, days, name, fmt_of(request))


@router.get("/portal/patients/{name}/report.pdf")
def report_pdf(request: Request, name: str,
               days: Annotated[int, Query(ge=1, le=90)] = 14) -> Response:
    """The AGP report of ``name`` as a PDF, through consent and audited like any read."""
    s, _ = who(request)
    if not available():  # before the read: nothing is released that cannot be printed
        raise BackendError(_UNAVAILABLE, code="pdf_unavailable")
    c = ctx(request)
    c.costly.spend(s.ident.id.hex(), "pdf", EVERY_S, burst=BURST)
    report = _report(request, name, days)
    with c.costly.slot():
        pdf = html_to_pdf(report.html())
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{name}-agp-{days}d.pdf"',
        "Cache-Control": "no-store"})
