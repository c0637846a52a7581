"""Standard CGM metrics per the International Consensus on Time in Range.

Reference: Battelino T, Danne T, Bergenstal RM, et al. "Clinical Targets for Continuous
Glucose Monitoring Data Interpretation: Recommendations From the International Consensus on
Time in Range." Diabetes Care 2019;42(8):1593-1603, doi:10.2337/dci19-0028 (Table 1 for the
metrics, Table 2 for the targets); GMI from Bergenstal RM et al., Diabetes Care
2018;41(11):2275-2280.

How each number is computed (n = CGM readings in the window, each counted once per time):

- Percentages of readings (not of clock time), each an integer in basis points (% x 100):
  ``tir_bp``     70 <= g <= 180 mg/dL  (both bounds inclusive)
  ``tbr70_bp``   g < 70                 (includes the readings below 54)
  ``tbr54_bp``   g < 54
  ``tar180_bp``  g > 180                (includes the readings above 250)
  ``tar250_bp``  g > 250
  so tir + tbr70 + tar180 = 100 % exactly before rounding.
- ``mean_dmgdl``: arithmetic mean in tenths of mg/dL.
- ``sd_dmgdl``: sample standard deviation (n - 1 denominator, as R's ``sd`` and iglu) in
  tenths of mg/dL; 0 when n = 1.
- ``cv_bp``: 100 x SD / mean, in basis points (target <= 36 %).
- ``gmi_bp``: GMI (%) = 3.31 + 0.02392 x mean (mg/dL), in basis points of percent (7.05 % is
  705), from the unrounded mean.
- ``active_bp``: percentage of time the CGM was active. The window is cut into slots of the
  sensor interval (default 5 min) from its start; a slot is active if it holds at least one
  reading; active = active slots / all slots. (Counting slots, not readings, keeps it at most
  100 % for sensors that report more often than the interval, and unaffected by jitter.)
- The window is ``[start_ms, end_ms)``; by default from the first reading to the end of the
  slot holding the last one, i.e. the span the sensor could have covered (iglu's
  "automatic" range: floor(span / interval) + 1 slots).
- ``days_with_data``: distinct local calendar days (by each reading's own UTC offset) with
  at least one reading. ``window_ms``: the window length.
- ``sufficient``: the consensus minimum, a window of at least 14 days with active >= 70 %.

Invariants: all stored numbers are integers computed in exact integer arithmetic and rounded
half up, so every node derives identical bytes from identical readings; ``to_value()`` is
ready for ``codec.encode``. The float properties (``tir``, ``mean``, ``gmi``, ...) are for
display only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import isqrt
from typing import Any, Final

from ..errors import MalformedError, OutOfRangeError
from .readings import CgmReading

__all__ = ["CONSENSUS_TARGETS", "SUFFICIENT_ACTIVE_BP", "SUFFICIENT_DAYS", "Summary", "summarize"]

DAY_MS: Final = 86_400_000
SUFFICIENT_DAYS: Final = 14
SUFFICIENT_ACTIVE_BP: Final = 7_000

#: Consensus targets for most adults with type 1 or type 2 diabetes (Battelino 2019, Table 2):
#: metric name -> (comparison, threshold in basis points).
CONSENSUS_TARGETS: Final[dict[str, tuple[str, int]]] = {
    "tir_bp": (">", 7_000),
    "tbr70_bp": ("<", 400),
    "tbr54_bp": ("<", 100),
    "tar180_bp": ("<", 2_500),
    "tar250_bp": ("<", 500),
    "cv_bp": ("<=", 3_600),
}


def _div_round(num: int, den: int) -> int:
    """round(num / den), halves up, for den > 0 and num >= 0."""
    return (2 * num + den) // (2 * den)


def _sqrt_round(num: int, den: int) -> int:
    """round(sqrt(num / den)), halves up: floor(sqrt(x) + 1/2) = (isqrt(floor(4x)) + 1) // 2."""
    return (isqrt(4 * num // den) + 1) // 2


@dataclass(frozen=True, slots=True)
class Summary:
    """Consensus CGM metrics of one window (see the module docstring for the definitions)."""

    start_ms: int
    end_ms: int
    interval_ms: int
    count: int
    expected: int
    active_slots: int
    days_with_data: int
    tir_bp: int
    tbr70_bp: int
    tbr54_bp: int
    tar180_bp: int
    tar250_bp: int
    mean_dmgdl: int
    sd_dmgdl: int
    cv_bp: int
    gmi_bp: int
    active_bp: int
    sufficient: bool

    @property
    def window_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def window_days(self) -> float:
        return self.window_ms / DAY_MS

    @property
    def tir(self) -> float:
        """Time in range 70-180, %."""
        return self.tir_bp / 100

    @property
    def tbr70(self) -> float:
        """Time below 70, %."""
        return self.tbr70_bp / 100

    @property
    def tbr54(self) -> float:
        """Time below 54, %."""
        return self.tbr54_bp / 100

    @property
    def tar180(self) -> float:
        """Time above 180, %."""
        return self.tar180_bp / 100

    @property
    def tar250(self) -> float:
        """Time above 250, %."""
        return self.tar250_bp / 100

    @property
    def mean(self) -> float:
        """Mean glucose, mg/dL."""
        return self.mean_dmgdl / 10

    @property
    def sd(self) -> float:
        """Standard deviation, mg/dL."""
        return self.sd_dmgdl / 10

    @property
    def cv(self) -> float:
        """Coefficient of variation, %."""
        return self.cv_bp / 100

    @property
    def gmi(self) -> float:
        """Glucose management indicator, %."""
        return self.gmi_bp / 100

    @property
    def active(self) -> float:
        """CGM active, %."""
        return self.active_bp / 100

    def meets(self, metric: str) -> bool:
        """Whether ``metric`` (a key of CONSENSUS_TARGETS) meets its consensus target."""
        op, threshold = CONSENSUS_TARGETS[metric]
        value: int = getattr(self, metric)
        if op == ">":
            return value > threshold
        if op == "<":
            return value < threshold
        return value <= threshold

    def to_value(self) -> dict[str, Any]:
        """All fields as ints (and one bool), ready for ``codec.encode``."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_value(cls, value: object) -> Summary:
        """Rebuild a Summary from ``to_value()`` output. Raises MalformedError."""
        names = cls.__slots__
        if not isinstance(value, dict) or set(value) != set(names):
            raise MalformedError(f"a summary is a map of exactly {', '.join(names)}")
        for name in names:
            kind = bool if name == "sufficient" else int
            if type(value[name]) is not kind:
                raise MalformedError(f"summary field {name} must be {kind.__name__}")
        return cls(**value)


def summarize(
    readings: Iterable[CgmReading],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    interval_min: int = 5,
) -> Summary:
    """Compute the consensus metrics of the CGM ``readings`` in ``[start_ms, end_ms)``.

    Readings outside the window are ignored; two readings with the same time count once
    (the first is kept). Without ``start_ms`` the window starts at the first reading; without
    ``end_ms`` it ends with the interval slot that holds the last reading.

    Raises OutOfRangeError when the window holds no reading or is empty, and ValueError for
    a non-positive ``interval_min``.
    """
    if interval_min <= 0:
        raise ValueError("interval_min must be positive")
    interval = interval_min * 60_000
    by_time: dict[int, CgmReading] = {}
    for reading in readings:
        if not isinstance(reading, CgmReading):
            raise TypeError("summarize takes CgmReading values")
        by_time.setdefault(reading.time_ms, reading)
    times = sorted(by_time)
    if not times:
        raise OutOfRangeError("no CGM readings to summarize; upload some first")
    start = times[0] if start_ms is None else start_ms
    # Default end: the end of the slot holding the last reading.
    end = start + ((times[-1] - start) // interval + 1) * interval if end_ms is None else end_ms
    if end <= start:
        raise OutOfRangeError(f"the window [{start}, {end}) is empty; end must follow start")
    chosen = [by_time[t] for t in times if start <= t < end]
    if not chosen:
        raise OutOfRangeError("no CGM readings in the window; widen it or upload data")

    n = len(chosen)
    values = [r.mgdl for r in chosen]
    total = sum(values)
    squares = sum(v * v for v in values)
    spread = n * squares - total * total  # n^2 x population variance, exact

    slots = -(-(end - start) // interval)
    active = len({(r.time_ms - start) // interval for r in chosen})
    days = len({(r.time_ms + r.tz_offset_min * 60_000) // DAY_MS for r in chosen})
    active_bp = _div_round(10_000 * active, slots)

    def pct(count: int) -> int:
        return _div_round(10_000 * count, n)

    return Summary(
        start_ms=start,
        end_ms=end,
        interval_ms=interval,
        count=n,
        expected=slots,
        active_slots=active,
        days_with_data=days,
        tir_bp=pct(sum(1 for v in values if 70 <= v <= 180)),
        tbr70_bp=pct(sum(1 for v in values if v < 70)),
        tbr54_bp=pct(sum(1 for v in values if v < 54)),
        tar180_bp=pct(sum(1 for v in values if v > 180)),
        tar250_bp=pct(sum(1 for v in values if v > 250)),
        mean_dmgdl=_div_round(10 * total, n),
        sd_dmgdl=0 if n < 2 else _sqrt_round(100 * spread, n * (n - 1)),
        cv_bp=0 if n < 2 else _sqrt_round(10**8 * spread * n, (n - 1) * total * total),
        gmi_bp=_div_round(331_000 * n + 2_392 * total, 1_000 * n),
        active_bp=active_bp,
        sufficient=(end - start) >= SUFFICIENT_DAYS * DAY_MS and active_bp >= SUFFICIENT_ACTIVE_BP,
    )
