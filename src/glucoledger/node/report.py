"""The AGP report of one audited release: the one pipeline the CLI ``report`` command and the
web portal both call.

``agp_report(release, ...)`` takes what ``AccessService.read`` released and builds the page:

- a ``SignedSummary`` (summary grant): the node-signed metrics and the aggregate percentile
  profile it carries; the page shows statistics, ranges, GRI, episode counts and the
  percentile profile, never a daily profile or a reading (glucose/report.py);
- a ``RawRelease`` (raw grant, or the patient herself): the node's metrics of exactly the
  released values (later uploads supersede, glucose/timeline.py), the full AGP with daily
  profiles, and boluses and carbs on them when the release holds the insulin and carbs
  streams.

Both use the summary the node computed over the permitted window, so the period, % active
and the one sufficiency verdict are the same whatever the view: a report of "the last N
days" is one audited read of exactly those N whole local days (node/localdays.py
``last_days``; the CLI ``report``, the portal's pages and its PDF all read it so), and
``zone`` (``LocalDays.named_zone``) names the zone they were counted in. The report is never
computed from a wider release cut down here: the node weighs each reading by its device's
interval (node/access.py), which a release's records alone do not carry. Pure given the
release (no I/O); the callers write files or pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from ..errors import OutOfRangeError
from ..glucose.agp import Agp, compute_agp
from ..glucose.metrics import Summary
from ..glucose.readings import Bolus, Carbs, CgmReading, Record
from ..glucose.report import render_html, render_png
from .access import RawRelease, SignedSummary

__all__ = ["AgpReport", "agp_report"]


@dataclass(frozen=True, slots=True)
class AgpReport:
    """A report ready to render: ``view`` is "raw" or "summary"; ``readings`` how many CGM
    readings it drew on (0 is never shown: an empty window is refused)."""

    view: str
    summary: Summary
    agp: Agp
    treatments: tuple[Record, ...]
    patient: str
    units: str
    readings: int
    #: The zone the period was counted in (node/localdays.py), named in the header; None:
    #: the latest reading's UTC offset.
    zone: tuple[str, tzinfo] | None = None

    def html(self) -> str:
        return render_html(self.agp, self.summary, patient=self.patient, units=self.units,
                           treatments=self.treatments, zone=self.zone)

    def png(self, dpi: int = 110) -> bytes:
        return render_png(self.agp, self.summary, patient=self.patient, dpi=dpi,
                          units=self.units, zone=self.zone)


def agp_report(release: RawRelease | SignedSummary, *, patient: str,
               units: str = "mg/dL", zone: tuple[str, tzinfo] | None = None) -> AgpReport:
    """The AGP report of ``release`` for ``patient`` (a pseudonym shown on the page);
    ``zone``: the zone its period was counted in (node/localdays.py).

    Raises OutOfRangeError when the release holds no CGM reading (nothing to report).
    """
    if isinstance(release, SignedSummary):
        return AgpReport("summary", release.summary, release.profile, (), patient,
                         units, release.summary.count, zone)
    cgm = [r for r in release.records if isinstance(r, CgmReading)]
    if not cgm or release.summary is None:
        raise OutOfRangeError("no CGM readings in the period this reader may see; widen the "
                              "period or upload data")
    treatments = tuple(r for r in release.records if isinstance(r, (Bolus, Carbs)))
    return AgpReport("raw", release.summary, compute_agp(cgm), treatments, patient, units,
                     len(cgm), zone)

