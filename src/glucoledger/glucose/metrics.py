"""Standard CGM metrics per the International Consensus on Time in Range, weighted by time.

Reference: Battelino T, Danne T, Bergenstal RM, et al. "Clinical Targets for Continuous
Glucose Monitoring Data Interpretation: Recommendations From the International Consensus on
Time in Range." Diabetes Care 2019;42(8):1593-1603, doi:10.2337/dci19-0028 (Table 1 for the
metrics, Table 2 for the targets); GMI from Bergenstal RM et al., Diabetes Care
2018;41(11):2275-2280. Further indices (GRI, LBGI/HBGI, J-index, episodes): glucose/indices.py;
MAGE (``mage_dmgdl``, tenths of mg/dL, 0 when no excursion exceeds the SD): glucose/mage.py.

Which readings count (glucose/timeline.py): readings come in upload order; for one instant
the later upload's value counts (``superseded`` says how many earlier values were replaced
by another value). Each reading has a weight w, the time it stands for: until the next
reading, at most its sensor's nominal interval (a longer gap is missing data), the last one
clipped at the window's end. W is the sum of the weights.

- Percentages of TIME, integers in basis points (% x 100), from the weights:
  ``tir_bp``     70 <= g <= 180 mg/dL  (both bounds inclusive)
  ``tbr70_bp``   g < 70                 (includes the time below 54)
  ``tbr54_bp``   g < 54
  ``tar180_bp``  g > 180                (includes the time above 250)
  ``tar250_bp``  g > 250
  so tir + tbr70 + tar180 = 100 % exactly before rounding.
- ``mean_dmgdl``: time-weighted mean, tenths of mg/dL.
- ``sd_dmgdl``: time-weighted sample SD with reliability weights,
  sqrt(sum w (g - mean)^2 / (W - sum w^2 / W)); with equal weights exactly the n - 1 SD
  of R's ``sd`` and iglu. ``cv_bp``: 100 x SD / mean in basis points (target <= 36 %).
- ``gmi_bp``: GMI (%) = 3.31 + 0.02392 x mean (mg/dL), basis points, from the unrounded mean.
- Censored readings (sensor LOW / HIGH, glucose/readings.py) count at the sensor's limit
  value (40 mg/dL for a LOW, 400 for a HIGH unless the device gave its limit), the rule of
  clinical software (Dexcom Clarity, LibreView): so a LOW always counts below 54 and a HIGH
  above 250, and mean, SD, CV and GMI use the limit, which understates how extreme they were
  (the report says how many: ``censored_low``, ``censored_high``).
- ``active_bp``: W / window length (the time the sensor was active), basis points.
  ``active_ms`` = W.
- The window is ``[start_ms, end_ms)``: the period the reader asked for (callers pass it);
  without it, from the first reading to one interval after the last. ``interval_ms`` is the
  nominal interval used when the caller gave one for all readings, else the median spacing.
- ``days_with_data``: distinct local calendar days (by each reading's own UTC offset) with at
  least one reading.
- ``sufficient``: the consensus minimum, applied to the window: at least 14 days long and
  active >= 70 %. Days are local days (node/localdays.py): 14 whole local days spanning a
  daylight-saving spring-forward last 14 x 24 hours less one hour, and count as 14 days.
  One rule, one verdict: every view prints this field, never recomputes it.

Invariants: all stored numbers are integers computed in exact integer arithmetic and rounded
half up, so every node derives identical bytes from identical readings; ``to_value()`` is
ready for ``codec.encode``. The float properties (``tir``, ``mean``, ``gmi``, ...) are for
display only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import isqrt
from typing import Any, Final

import numpy as np

from ..errors import MalformedError, OutOfRangeError
from .indices import episodes, gri_zone, risk_micro
from .mage import mage_dmgdl
from .readings import CgmReading
from .timeline import median_spacing_ms, weigh

__all__ = ["CONSENSUS_TARGETS", "SUFFICIENT_ACTIVE_BP", "SUFFICIENT_DAYS", "Summary", "summarize"]

DAY_MS: Final = 86_400_000
SUFFICIENT_DAYS: Final = 14
SUFFICIENT_ACTIVE_BP: Final = 7_000
#: The most a daylight-saving change shortens a local day (zones shift by 30 or 60 minutes).
DST_MS: Final = 3_600_000

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
    active_ms: int
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
    censored_low: int
    censored_high: int
    superseded: int
    gri_c: int
    gri_hypo_c: int
    gri_hyper_c: int
    lbgi_c: int
    hbgi_c: int
    j_index_c: int
    mage_dmgdl: int
    hypo1_episodes: int
    hypo2_episodes: int
    hypo_extended_episodes: int
    hyper1_episodes: int
    hyper2_episodes: int
    hypo1_min: int
    hypo2_min: int
    hyper1_min: int
    hyper2_min: int

    @property
    def tbr54_70_bp(self) -> int:
        """Time 54..69 mg/dL (the AGP's "low"), basis points."""
        return self.tbr70_bp - self.tbr54_bp

    @property
    def tar180_250_bp(self) -> int:
        """Time 181..250 mg/dL (the AGP's "high"), basis points."""
        return self.tar180_bp - self.tar250_bp

    @property
    def gri(self) -> float:
        """Glycemia Risk Index, 0..100."""
        return self.gri_c / 100

    @property
    def gri_zone(self) -> str:
        """The AGP v5 GRI zone, A (lowest risk) to E."""
        return gri_zone(self.gri_c)

    @property
    def lbgi(self) -> float:
        return self.lbgi_c / 100

    @property
    def hbgi(self) -> float:
        return self.hbgi_c / 100

    @property
    def j_index(self) -> float:
        return self.j_index_c / 100

    @property
    def mage(self) -> float:
        """MAGE, mg/dL (glucose/mage.py); 0 when no excursion exceeds the SD."""
        return self.mage_dmgdl / 10

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
    interval_min: int | None = None,
    intervals_ms: Sequence[int] | None = None,
) -> Summary:
    """Compute the consensus metrics of the CGM ``readings`` in ``[start_ms, end_ms)``.

    ``readings`` come in upload order: for one instant, the later one counts. Each reading's
    nominal interval is ``intervals_ms[i]`` (parallel to ``readings``; node/access.py sets it
    from the uploading device's model), else ``interval_min`` for all, else the median
    spacing of the readings. Readings outside the window are ignored. Without ``start_ms``
    the window starts at the first reading; without ``end_ms`` it ends one interval after
    the last.

    Raises OutOfRangeError when the window holds no reading or is empty, and ValueError for
    a non-positive interval or an ``intervals_ms`` of another length.
    """
    if interval_min is not None and interval_min <= 0:
        raise ValueError("interval_min must be positive")
    items = list(readings)
    for reading in items:
        if not isinstance(reading, CgmReading):
            raise TypeError("summarize takes CgmReading values")
    if intervals_ms is not None and (len(intervals_ms) != len(items) or
                                     any(i <= 0 for i in intervals_ms)):
        raise ValueError("intervals_ms must hold one positive interval per reading")
    by_time: dict[int, tuple[CgmReading, int]] = {}
    superseded = 0
    for index, reading in enumerate(items):
        old = by_time.get(reading.time_ms)
        if old is not None and old[0] != reading:
            superseded += 1
        by_time[reading.time_ms] = (reading, -1 if intervals_ms is None else intervals_ms[index])
    times = sorted(by_time)
    if not times:
        raise OutOfRangeError("no CGM readings to summarize; upload some first")
    if intervals_ms is None:
        common = interval_min * 60_000 if interval_min is not None else median_spacing_ms(times)
        by_time = {t: (r, common) for t, (r, _) in by_time.items()}
    else:
        common = median_spacing_ms(times)
    start = times[0] if start_ms is None else start_ms
    end = times[-1] + by_time[times[-1]][1] if end_ms is None else end_ms
    if end <= start:
        raise OutOfRangeError(f"the window [{start}, {end}) is empty; end must follow start")
    chosen_times = [t for t in times if start <= t < end]
    if not chosen_times:
        raise OutOfRangeError("no CGM readings in the window; widen it or upload data")
    chosen = [by_time[t][0] for t in chosen_times]
    weighted = weigh(chosen, [by_time[t][1] for t in chosen_times], end)

    n = len(chosen)
    s0 = s1 = s2 = q = 0
    low_risk = high_risk = 0
    below54 = below70 = in_range = above180 = above250 = 0
    # Every sum below is a sum over readings of w x f(g): the same integers summed per
    # distinct glucose value first, then in Python's unbounded integers, as the loop over
    # readings did. Exact: a reading's weight never reaches past the next reading, so the
    # weights of a window add up to at most its length (< 2**53 ms), which doubles hold.
    g_arr = np.fromiter((x.reading.mgdl for x in weighted), dtype=np.int64, count=n)
    w_arr = np.fromiter((x.weight_ms for x in weighted), dtype=np.int64, count=n)
    per_g = np.bincount(g_arr, weights=w_arr)
    for g in np.flatnonzero(per_g).tolist():
        w = int(per_g[g])
        s0 += w
        s1 += w * g
        s2 += w * g * g
        lo, hi = risk_micro(g)
        low_risk += w * lo
        high_risk += w * hi
        if g < 54:
            below54 += w
        if g < 70:
            below70 += w
        elif g <= 180:
            in_range += w
        else:
            above180 += w
            if g > 250:
                above250 += w
    sizes, times_used = np.unique(w_arr, return_counts=True)
    for w, k in zip(sizes.tolist(), times_used.tolist(), strict=True):
        q += k * w * w
    spread = s0 * s2 - s1 * s1  # W^2 x weighted population variance, exact
    var_den = s0 * s0 - q  # W^2 - sum w^2: 0 for a single reading

    window = end - start
    active_bp = _div_round(10_000 * s0, window)
    days = len({(r.time_ms + r.tz_offset_min * 60_000) // DAY_MS for r in chosen})

    def pct(weight: int) -> int:
        return _div_round(10_000 * weight, s0)

    sd_dmgdl = 0 if var_den <= 0 else _sqrt_round(100 * spread, var_den)
    mean_dmgdl = _div_round(10 * s1, s0)
    hypo_c = _div_round(10_000 * (10 * below54 + 8 * (below70 - below54)), 10 * s0)
    hyper_c = _div_round(10_000 * (10 * above250 + 5 * (above180 - above250)), 10 * s0)
    gri_c = min(10_000, _div_round(10_000 * (30 * (10 * below54 + 8 * (below70 - below54)) +
                                             16 * (10 * above250 + 5 * (above180 - above250))),
                                   100 * s0))
    ep = episodes(weighted)
    return Summary(
        start_ms=start,
        end_ms=end,
        interval_ms=common,
        count=n,
        active_ms=s0,
        days_with_data=days,
        tir_bp=pct(in_range),
        tbr70_bp=pct(below70),
        tbr54_bp=pct(below54),
        tar180_bp=pct(above180),
        tar250_bp=pct(above250),
        mean_dmgdl=mean_dmgdl,
        sd_dmgdl=sd_dmgdl,
        cv_bp=0 if var_den <= 0 else _sqrt_round(10**8 * spread * s0 * s0, var_den * s1 * s1),
        gmi_bp=_div_round(331_000 * s0 + 2_392 * s1, 1_000 * s0),
        active_bp=active_bp,
        sufficient=(window >= SUFFICIENT_DAYS * DAY_MS - DST_MS
                    and active_bp >= SUFFICIENT_ACTIVE_BP),
        censored_low=sum(1 for r in chosen if r.censored == "low"),
        censored_high=sum(1 for r in chosen if r.censored == "high"),
        superseded=superseded,
        gri_c=gri_c,
        gri_hypo_c=hypo_c,
        gri_hyper_c=hyper_c,
        lbgi_c=_div_round(low_risk, 10_000 * s0),
        hbgi_c=_div_round(high_risk, 10_000 * s0),
        j_index_c=_div_round((mean_dmgdl + sd_dmgdl) ** 2, 1_000),
        mage_dmgdl=mage_dmgdl([r.time_ms for r in chosen], [r.mgdl for r in chosen]) or 0,
        hypo1_episodes=ep.hypo1,
        hypo2_episodes=ep.hypo2,
        hypo_extended_episodes=ep.hypo_extended,
        hyper1_episodes=ep.hyper1,
        hyper2_episodes=ep.hyper2,
        hypo1_min=ep.hypo1_min,
        hypo2_min=ep.hypo2_min,
        hyper1_min=ep.hyper1_min,
        hyper2_min=ep.hyper2_min,
    )
