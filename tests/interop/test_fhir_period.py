"""FHIR summary Observations cover the REQUESTED period (issue 11), and still validate.

14 days of data in a 32-day request: effectivePeriod is the 32 days and sensor-active is
14/32 = 43.75 %, not the 96.9 % the data's own span gave; a 12-hour window stays 12 hours.
"""

from __future__ import annotations

import pytest

from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading
from glucoledger.interop.fhir import summary_observations, validate

pytest.importorskip("fhir.resources")

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
MIN = 60_000
DAY = 86_400_000
CODES = {"107931-8", "106793-3", "97507-8", "97506-0", "104638-2", "104636-6", "104637-4"}


def _observations(start: int, end: int, days: float) -> list[dict]:  # type: ignore[type-arg]
    readings = [CgmReading(T0 + 9 * DAY + i * 5 * MIN, 0, 120 + i % 90)
                for i in range(int(days * 288))]
    s = summarize(readings, start_ms=start, end_ms=end, interval_min=5)
    out = summary_observations("urn:uuid:p", s)
    for o in out:
        validate(o)
    assert {c["code"] for o in out for c in o["code"]["coding"]} == CODES
    return out


def test_effective_period_is_the_requested_period() -> None:
    out = _observations(T0, T0 + 32 * DAY, 14)
    for o in out:
        assert o["effectivePeriod"] == {"start": "2026-11-01T00:00:00.000Z",
                                        "end": "2026-12-03T00:00:00.000Z"}
    active = next(o for o in out if o["code"]["coding"][0]["code"] == "104637-4")
    assert active["valueQuantity"] == {"value": 43.75, "unit": "%",
                                       "system": "http://unitsofmeasure.org", "code": "%"}


def test_a_twelve_hour_window_stays_twelve_hours() -> None:
    start = T0 + 9 * DAY + 6 * 3_600_000
    out = _observations(start, start + 12 * 3_600_000, 1)
    assert out[0]["effectivePeriod"] == {"start": "2026-11-10T06:00:00.000Z",
                                         "end": "2026-11-10T18:00:00.000Z"}
