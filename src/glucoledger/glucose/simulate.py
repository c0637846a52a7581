"""Simulated patients: realistic, deterministic CGM, insulin and carbs streams for tests/demos.

The built-in model is a compact phenomenological one, not a physiological model; it is
meant to produce data that looks and summarizes like real type 1 diabetes CGM data:

- A baseline that follows the clock: a circadian wave (higher in the afternoon) plus the
  dawn phenomenon (a rise between about 03:00 and 08:00), with a day-to-day offset.
- Meals (breakfast, lunch, dinner, sometimes a snack) whose carbs are absorbed along a gamma
  curve (peak about 45 min), and boluses that act along a slower curve (peak about 70 min,
  effect for about 5 h), so meals give post-prandial peaks. Boluses are sometimes mis-dosed,
  late or missed; high glucose sometimes gets a correction bolus.
- Exercise some afternoons lowers glucose, so hypoglycaemia happens; a low is usually
  treated with 15-20 g of rescue carbs, giving the familiar rebound.
- Deviations from the baseline decay with a time constant of about 3 h (counter-regulation
  and basal insulin), plus a small physiological random walk.
- Sensor: 10-day sessions, each starting with a 2 h warm-up without readings at an
  arbitrary phase of the 5-minute grid; random signal-loss gaps; a per-session calibration
  bias and autocorrelated (AR(1)) noise; values rounded and clipped to 40..400 mg/dL; trend
  arrows from the last 15 minutes as Dexcom defines them.

Invariants: deterministic for a seed (one ``random.Random(seed)``, never the global
generator); no clock reads; every record is a valid ``readings`` record, so a simulated
stream passes ``parse_batch``/``Batch`` validation.

``simulate_with_simglucose`` drives the UVA/Padova 2008 simulator (Kovatchev et al., J
Diabetes Sci Technol 2009;3(1):44-55) through the PyPI ``simglucose`` package when it is
installed (the optional ``sim`` extra).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Final

from .readings import Basal, Bolus, Carbs, CgmReading, Record

__all__ = ["PROFILES", "Profile", "simulate_cgm", "simulate_patient", "simulate_with_simglucose"]

STEP_MS: Final = 5 * 60_000
DAY_MS: Final = 86_400_000
SESSION_MS: Final = 10 * DAY_MS
WARMUP_MS: Final = 2 * 3_600_000


@dataclass(frozen=True, slots=True)
class Profile:
    """Parameters of one kind of simulated patient."""

    base_mgdl: float  # overnight baseline
    isf: float  # mg/dL per unit
    icr: float  # g per unit
    dose_error: float  # SD of the relative bolus error
    dose_bias: float  # mean relative bolus error (positive: over-bolus)
    miss_bolus: float  # probability a meal bolus is forgotten
    exercise_per_day: float  # probability of afternoon exercise
    dropouts_per_day: float  # mean number of signal-loss gaps per day


PROFILES: Final[dict[str, Profile]] = {
    "typical": Profile(150, 42, 10, 0.32, -0.05, 0.08, 0.30, 0.6),
    "tight": Profile(118, 50, 9, 0.12, 0.03, 0.02, 0.30, 0.4),
    "high": Profile(180, 40, 10, 0.35, -0.15, 0.18, 0.10, 1.0),
    "hypo_prone": Profile(125, 55, 9, 0.20, 0.15, 0.03, 0.45, 0.6),
}

# (meal, mean minute of day, SD minutes, mean grams, SD grams, probability)
_MEALS: Final = (
    ("breakfast", 7 * 60 + 30, 40, 45, 12, 0.92),
    ("lunch", 12 * 60 + 45, 45, 60, 15, 0.95),
    ("snack", 16 * 60, 60, 20, 8, 0.35),
    ("dinner", 19 * 60 + 15, 50, 70, 20, 0.97),
)
# Scheduled basal: (start minute, mU/h); the dawn segment is higher.
_BASAL_SCHEDULE: Final = ((0, 800), (180, 1_050), (480, 900), (1_320, 800))
_TAU_CARBS: Final = 45.0  # min
_TAU_INSULIN: Final = 70.0  # min


def _gamma_rate(t_min: float, tau: float) -> float:
    """Fraction absorbed per minute at ``t_min`` of a unit dose (gamma k=2; integrates to 1)."""
    return 0.0 if t_min < 0 else t_min / (tau * tau) * math.exp(-t_min / tau)


def _trend(history: list[tuple[int, int]]) -> str | None:
    """Dexcom trend from readings of the last 15 minutes (rate in mg/dL per minute)."""
    if len(history) < 4:
        return None
    (t0, v0), (t1, v1) = history[-4], history[-1]
    if t1 - t0 > 16 * 60_000:  # a gap: no arrow rather than a wrong one
        return "NOT COMPUTABLE"
    rate = (v1 - v0) / ((t1 - t0) / 60_000)
    for threshold, name in ((3, "DoubleUp"), (2, "SingleUp"), (1, "FortyFiveUp")):
        if rate > threshold:
            return name
    for threshold, name in ((-1, "Flat"), (-2, "FortyFiveDown"), (-3, "SingleDown")):
        if rate >= threshold:
            return name
    return "DoubleDown"


def simulate_patient(
    seed: int,
    days: int,
    start_ms: int,
    profile: str = "typical",
    *,
    tz_offset_min: int = 0,
) -> dict[str, list[Record]]:
    """Simulate ``days`` days from ``start_ms``: {"cgm": [...], "insulin": [...], "carbs": [...]}.

    Each list is sorted by time. Raises ValueError for an unknown profile or days < 1.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    if days < 1:
        raise ValueError("days must be at least 1")
    p = PROFILES[profile]
    rng = random.Random(seed)
    tz_ms = tz_offset_min * 60_000
    steps = days * DAY_MS // STEP_MS

    # --- plan the days: meals, boluses, exercise (all in absolute ms)
    carbs_events: list[tuple[int, float]] = []  # (time, grams) affecting glucose
    insulin_events: list[tuple[int, float]] = []  # (time, units) affecting glucose
    exercise: list[tuple[int, int]] = []  # (start, end)
    insulin_out: list[Record] = []
    carbs_out: list[Record] = []
    day_offset: list[float] = []
    first_midnight = (start_ms + tz_ms) // DAY_MS * DAY_MS - tz_ms
    for day in range(days + 1):
        midnight = first_midnight + day * DAY_MS
        day_offset.append(rng.gauss(0, 10))
        for start_min, rate in _BASAL_SCHEDULE:
            t = midnight + start_min * 60_000
            nxt = [s for s, _ in _BASAL_SCHEDULE if s > start_min]
            duration = ((nxt[0] if nxt else 1_440) - start_min) * 60_000
            if start_ms <= t < start_ms + days * DAY_MS:
                insulin_out.append(Basal(t, tz_offset_min, "scheduled", rate, duration))
        for _name, mean_min, sd_min, mean_g, sd_g, prob in _MEALS:
            if rng.random() > prob:
                continue
            t = midnight + int(rng.gauss(mean_min, sd_min)) * 60_000
            grams = round(max(8.0, rng.gauss(mean_g, sd_g)))
            carbs_events.append((t, grams))
            if start_ms <= t < start_ms + days * DAY_MS:
                carbs_out.append(Carbs(t, tz_offset_min, grams * 10))
            if rng.random() < p.miss_bolus:
                continue
            dose = grams / p.icr * max(0.3, 1 + p.dose_bias + rng.gauss(0, p.dose_error))
            bolus_t = t + int(rng.gauss(5, 10)) * 60_000  # sometimes before, mostly after
            milli = max(50, round(dose * 20) * 50)  # pumps deliver in 0.05 U steps
            insulin_events.append((bolus_t, milli / 1000))
            if start_ms <= bolus_t < start_ms + days * DAY_MS:
                insulin_out.append(Bolus(bolus_t, tz_offset_min, "normal", milli))
        if rng.random() < p.exercise_per_day:
            t = midnight + int(rng.uniform(15 * 60 + 10, 17 * 60 + 50)) * 60_000
            end = t + int(rng.uniform(30, 75)) * 60_000
            exercise.append((t, end))
            if start_ms <= t < start_ms + days * DAY_MS:
                insulin_out.append(Basal(t, tz_offset_min, "temp", 400, end - t))

    # --- the glucose trajectory on the 5-minute grid
    glucose: list[float] = []
    x = rng.gauss(0, 20)  # deviation from baseline
    last_rescue = -DAY_MS
    last_correction = -DAY_MS
    csf = p.isf / p.icr
    for k in range(steps):
        t = start_ms + k * STEP_MS
        minute = ((t + tz_ms) % DAY_MS) / 60_000
        day = (t - first_midnight) // DAY_MS
        circadian = 12 * math.sin(2 * math.pi * (minute - 10 * 60) / 1_440)
        dawn = 28 * math.exp(-(((minute - 6.5 * 60) / 70) ** 2))
        baseline = p.base_mgdl + circadian + dawn + day_offset[day]
        slope = 0.0  # mg/dL per minute
        for et, eaten in carbs_events:
            if 0 <= t - et < 6 * 3_600_000:
                slope += eaten * csf * _gamma_rate((t - et) / 60_000, _TAU_CARBS)
        for et, dose_u in insulin_events:
            if 0 <= t - et < 8 * 3_600_000:
                slope -= dose_u * p.isf * _gamma_rate((t - et) / 60_000, _TAU_INSULIN)
        if any(s <= t < e for s, e in exercise):
            slope -= 1.1
        x += 5 * slope - x * (5 / 180) + rng.gauss(0, 2.2)
        g = baseline + x
        if g < 65 and t - last_rescue > 45 * 60_000 and rng.random() < 0.85:
            last_rescue = t
            rescue = t + int(rng.uniform(5, 20)) * 60_000
            grams = round(rng.uniform(15, 25))
            carbs_events.append((rescue, grams))
            if rescue < start_ms + days * DAY_MS:
                carbs_out.append(Carbs(rescue, tz_offset_min, grams * 10))
        if g > 250 and t - last_correction > 3 * 3_600_000 and rng.random() < 0.4:
            last_correction = t
            milli = max(50, round((g - 130) / p.isf * 20) * 50)
            insulin_events.append((t, milli / 1000))
            insulin_out.append(Bolus(t, tz_offset_min, "normal", milli))
        glucose.append(max(30.0, g))

    cgm = _sense(rng, glucose, start_ms, days, p.dropouts_per_day, tz_offset_min)
    insulin_out.sort(key=lambda r: (r.time_ms, r.TYPE))
    carbs_out.sort(key=lambda r: r.time_ms)
    return {"cgm": list(cgm), "insulin": _unique(insulin_out), "carbs": _unique(carbs_out)}


def _unique(records: list[Record]) -> list[Record]:
    """Drop a record whose (time, type) repeats an earlier one (a batch refuses duplicates)."""
    seen: set[tuple[int, str]] = set()
    out: list[Record] = []
    for r in records:
        if (r.time_ms, r.TYPE) not in seen:
            seen.add((r.time_ms, r.TYPE))
            out.append(r)
    return out


def _sense(
    rng: random.Random, glucose: list[float], start_ms: int, days: int, dropouts: float, tz: int
) -> list[CgmReading]:
    """Sample the trajectory with sensor sessions, warm-ups, dropouts, bias and noise."""
    end_ms = start_ms + days * DAY_MS
    # Sessions: the first one began some time before the window (it may be in warm-up).
    session_start = start_ms - int(rng.uniform(0, SESSION_MS)) // 1000 * 1000
    gaps: list[tuple[int, int]] = []
    for _day in range(days):
        for _ in range(_poisson(rng, dropouts)):
            gap_start = start_ms + int(rng.uniform(0, days * DAY_MS))
            gaps.append((gap_start, gap_start + int(rng.expovariate(1 / 50) + 15) * 60_000))
    out: list[CgmReading] = []
    history: list[tuple[int, int]] = []
    noise = 0.0
    while session_start < end_ms:
        bias = rng.gauss(0, 0.05)
        t = session_start + WARMUP_MS
        session_end = session_start + SESSION_MS
        while t < min(session_end, end_ms):
            noise = 0.7 * noise + rng.gauss(0, 4)
            if t >= start_ms and not any(a <= t < b for a, b in gaps):
                g = glucose[(t - start_ms) // STEP_MS]
                value = min(400, max(40, round(g * (1 + bias) + noise)))
                history = [h for h in history[-3:] if t - h[0] <= 20 * 60_000]
                history.append((t, value))
                out.append(CgmReading(t, tz, value, _trend(history)))
            t += STEP_MS
        # Changing the sensor takes a few minutes to an hour; the new one starts off-grid.
        session_start = session_end + int(rng.uniform(5 * 60, 3_600)) * 1000
        history = []
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def simulate_cgm(
    seed: int, days: int, start_ms: int, profile: str = "typical", *, tz_offset_min: int = 0
) -> list[CgmReading]:
    """Simulated CGM readings (the "cgm" stream of ``simulate_patient``)."""
    cgm = simulate_patient(seed, days, start_ms, profile, tz_offset_min=tz_offset_min)["cgm"]
    return [r for r in cgm if isinstance(r, CgmReading)]


def simulate_with_simglucose(
    seed: int,
    days: float,
    start_ms: int,
    *,
    patient: str = "adult#001",
    sensor: str = "GuardianRT",
    pump: str = "Insulet",
) -> dict[str, list[Record]]:
    """Simulate with the UVA/Padova model (PyPI ``simglucose``) and a basal-bolus controller.

    Returns {"cgm", "insulin", "carbs"} like ``simulate_patient`` (times in UTC); the insulin
    delivered in each sensor step (basal included) appears as one "automated" bolus. The sensor
    "GuardianRT" samples every 5 minutes ("Dexcom" in simglucose samples every 3). Slow:
    about 8 s per simulated day. Raises ImportError with install advice when simglucose is
    not installed (``pip install 'glucoledger[sim]'``).
    """
    try:
        import warnings
        from datetime import UTC, datetime, timedelta

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from simglucose.actuator.pump import InsulinPump
            from simglucose.controller.basal_bolus_ctrller import BBController
            from simglucose.patient.t1dpatient import T1DPatient
            from simglucose.sensor.cgm import CGMSensor
            from simglucose.simulation.env import T1DSimEnv
            from simglucose.simulation.scenario_gen import RandomScenario
            from simglucose.simulation.sim_engine import SimObj
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "simglucose is not installed; install the optional extra: "
            "pip install 'glucoledger[sim]'"
        ) from exc

    start = datetime.fromtimestamp(start_ms // 1000, tz=UTC).replace(tzinfo=None)
    env = T1DSimEnv(
        T1DPatient.withName(patient),
        CGMSensor.withName(sensor, seed=seed),
        InsulinPump.withName(pump),
        RandomScenario(start_time=start, seed=seed),
    )
    sim = SimObj(env, BBController(), timedelta(days=days), animate=False, path=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim.simulate()
        frame: Any = sim.results()
    return _from_simglucose_frame(frame)


def _from_simglucose_frame(frame: Any) -> dict[str, list[Record]]:
    from datetime import UTC

    cgm: list[Record] = []
    insulin: list[Record] = []
    carbs: list[Record] = []
    times = list(frame.index)
    for i, when in enumerate(times):
        t = int(when.replace(tzinfo=UTC).timestamp()) * 1000
        row = frame.iloc[i]
        glucose, cho, rate = (float(row[k]) for k in ("CGM", "CHO", "insulin"))
        if not math.isnan(glucose):
            cgm.append(CgmReading(t, 0, min(400, max(40, round(glucose)))))
        if i + 1 == len(times) or math.isnan(cho) or math.isnan(rate):
            continue  # the last row holds no action (simglucose leaves NaN there)
        step_min = (times[i + 1] - when).total_seconds() / 60
        # simglucose records CHO (g/min) and insulin (U/min, basal included) per step; each
        # step's delivery becomes one automated bolus, its carbs one carbs entry.
        grams_tenths = round(cho * step_min * 10)
        if grams_tenths > 0:
            carbs.append(Carbs(t, 0, grams_tenths))
        units_milli = round(rate * step_min * 1000)
        if units_milli > 0:
            insulin.append(Bolus(t, 0, "automated", units_milli))
    return {"cgm": cgm, "insulin": insulin, "carbs": carbs}
