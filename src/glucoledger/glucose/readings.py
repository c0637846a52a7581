"""Device readings: frozen, validated records for each data stream, and batch parsing.

Streams (``STREAMS``) and the records they hold:

- ``cgm``      CgmReading      sensor glucose, whole mg/dL, 39..500, optional trend arrow,
                               optionally censored (LOW/HIGH: beyond the sensor's range)
- ``smbg``     SmbgReading     finger-stick (meter) glucose, whole mg/dL, 20..600
- ``insulin``  Bolus | Basal   insulin in milli-units (mU) and milli-units per hour
- ``carbs``    Carbs           carbohydrate in tenths of a gram
- ``settings`` DeviceSettings  pump/therapy schedules: (start minute of day, value) entries
- ``notes``    Note            free text, at most ``MAX_NOTE_CHARS`` characters

Invariants (every record, after construction):
- Frozen, slotted, and valid: the constructor raises ``MalformedError`` for a wrong type and
  ``OutOfRangeError`` for a value outside its range, so an instance that exists is valid.
- No floats anywhere: time is integer epoch milliseconds (UTC) plus the device's UTC offset
  in minutes (kept, never converted away, so "08:00 at home" stays 08:00); glucose is whole
  mg/dL (see ``units``); insulin is mU; carbs are tenths of a gram.
- ``to_value()`` returns ints, strs, lists and dicts only, ready for ``codec.encode``;
  ``from_value(v)`` is its inverse and validates exactly as the constructor does.
- Every record may carry an annex, ``ns``: None, or the canonical JSON text of an object
  (``annex.annex_text``, at most ``annex.MAX_ANNEX_CHARS`` characters) holding what the record's
  source
  document said besides the record (interop/nightscout.py: a Nightscout document's other
  fields, so it reads back as sent). Floats in it stay inside the text, never in CBOR. The
  record's own fields are the clinical value; the annex never replaces them. A record
  without an annex is stored without the ``ns`` key, so its encoding (and every hash over
  it) is what it was before annexes existed.

Batches: ``parse_batch`` turns the input form (what an uploader sends, where numbers may have
fractions and glucose may be in mmol/L) of one stream into a ``Batch`` of records sorted by
time. A batch is accepted whole or refused whole: the first bad item raises an ``InputError``
whose message names the item (index in the input and its time) and the reason.

Ranges follow the devices on the market: CGM sensors measure 40..400 mg/dL (Dexcom,
Guardian, Eversense; FreeStyle Libre up to 500), meters 20..600 mg/dL, pumps deliver at most
35 U/h basal and boluses of at most 100 U.

Censored readings (patient safety: a LOW is the most severe hypoglycemia a sensor can show,
so it is never refused and never dropped). A sensor that reads outside its measuring range
reports LOW or HIGH instead of a number. Such a reading is stored as a ``CgmReading`` with
``censored`` "low" or "high" and ``mgdl`` set to the sensor's limit (the value clinical
software such as Dexcom Clarity and LibreView uses for it in means: the rule of
glucose/metrics.py). Input forms (``parse_batch``, stream ``cgm``):

- ``"value": "LOW"`` / ``"HIGH"`` (text, any case): limit ``LOW_LIMIT_MGDL`` (40) or
  ``HIGH_LIMIT_MGDL`` (400), or the item's ``limit`` (the device's limit, in the item's units);
- ``"flag": "LOW"`` / ``"HIGH"`` with a numeric ``value``: that value is the limit;
- ``"value": 39``: the Dexcom LOW code, censored low at 39.

A censored low is always below 54 mg/dL and a censored high always above 250 mg/dL (the
limit must be 39..53 or 251..500), so every metric counts them in the most severe range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar, Final, TypeAlias

from ..errors import InputError, MalformedError, OutOfRangeError
from .annex import check_annex
from .units import normalize_units, parse_decimal, to_mgdl

__all__ = [
    "BASAL_KINDS",
    "BOLUS_KINDS",
    "CENSORED",
    "CENSORED_RANGE",
    "CGM_MAX_MGDL",
    "CGM_MIN_MGDL",
    "HIGH_LIMIT_MGDL",
    "LOW_LIMIT_MGDL",
    "MAX_BATCH",
    "MAX_CLOCK_SKEW_MS",
    "MAX_NOTE_CHARS",
    "STREAMS",
    "TRENDS",
    "Basal",
    "Batch",
    "Bolus",
    "Carbs",
    "CgmReading",
    "DeviceSettings",
    "Note",
    "Record",
    "SmbgReading",
    "check_unique_times",
    "format_time",
    "parse_batch",
    "parse_item",
    "parse_time",
    "record_from_value",
    "scaled",
]

STREAMS: Final = ("cgm", "smbg", "insulin", "carbs", "settings", "notes")
#: Dexcom / Nightscout trend directions.
TRENDS: Final = (
    "DoubleUp",
    "SingleUp",
    "FortyFiveUp",
    "Flat",
    "FortyFiveDown",
    "SingleDown",
    "DoubleDown",
    "NOT COMPUTABLE",
    "RATE OUT OF RANGE",
)
BOLUS_KINDS: Final = ("normal", "extended", "automated")
BASAL_KINDS: Final = ("scheduled", "temp", "suspend")

CGM_MIN_MGDL: Final = 39
#: The default sensor limits a text LOW / HIGH stands for (Dexcom G6/G7, Guardian, Libre's
#: lower limit; an item's ``limit`` overrides them, e.g. 500 for a FreeStyle Libre HI).
LOW_LIMIT_MGDL: Final = 40
HIGH_LIMIT_MGDL: Final = 400
#: The Dexcom LOW code: a numeric 39 means "below 40".
DEXCOM_LOW_CODE: Final = 39
CENSORED: Final = ("low", "high")
#: Limits a censored reading may carry: a low is below 54, a high above 250 (mg/dL).
CENSORED_RANGE: Final = {"low": (CGM_MIN_MGDL, 53), "high": (251, 500)}
CGM_MAX_MGDL: Final = 500
SMBG_MIN_MGDL: Final = 20
SMBG_MAX_MGDL: Final = 600
MAX_BATCH: Final = 10_000
MAX_NOTE_CHARS: Final = 2_000
#: How far in the future (past the caller's ``now_ms``) a device clock may run.
MAX_CLOCK_SKEW_MS: Final = 5 * 60_000
#: Earliest accepted time, 2000-01-01T00:00:00Z: earlier means an unset device clock.
MIN_TIME_MS: Final = 946_684_800_000
MAX_TIME_MS: Final = 4_102_444_800_000  # 2100-01-01
MAX_BOLUS_MILLI: Final = 100_000
MAX_BASAL_MILLI_PER_H: Final = 35_000
MAX_DURATION_MS: Final = 24 * 3_600_000
MAX_CARBS_TENTHS: Final = 5_000
MAX_SCHEDULE_ENTRIES: Final = 48

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- field checks


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(f"{what} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise OutOfRangeError(f"{what} {value} is outside {lo}..{hi}")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedError(f"{what} must be text, not {type(value).__name__}")
    return value


def _choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    text = _str(value, what)
    if text not in allowed:
        raise OutOfRangeError(f"{what} {text!r} is not one of {', '.join(allowed)}")
    return text


def _time(time_ms: object, tz_offset_min: object) -> None:
    _int(time_ms, "time_ms", -(1 << 63), 1 << 63)
    assert isinstance(time_ms, int)
    if time_ms < MIN_TIME_MS:
        raise OutOfRangeError("time is before 2000-01-01: the device clock looks unset; set it")
    if time_ms > MAX_TIME_MS:
        raise OutOfRangeError("time is after 2100-01-01: check the device clock")
    # UTC-12:00 .. UTC+14:00 are the offsets in use.
    _int(tz_offset_min, "tz_offset_min", -720, 840)


def format_time(time_ms: int, tz_offset_min: int = 0) -> str:
    """ISO 8601 text of an epoch-milliseconds time at a UTC offset, e.g.
    2026-11-01T08:05:00+01:00."""
    zone = timezone(timedelta(minutes=tz_offset_min))
    moment = (_EPOCH + timedelta(milliseconds=time_ms)).astimezone(zone)
    spec = "milliseconds" if time_ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec)


def parse_time(value: object) -> tuple[int, int | None]:
    """Parse an input time: epoch milliseconds (int) or ISO 8601 text with a UTC offset.

    Returns (time_ms, tz_offset_min), the offset being None for epoch milliseconds.
    Raises MalformedError for other types, unparsable text, or text without an offset
    (a time without an offset is ambiguous, so it is refused rather than guessed).
    """
    if isinstance(value, bool):
        raise MalformedError("time must be epoch milliseconds or ISO 8601 text, not a bool")
    if isinstance(value, int):
        return value, None
    if not isinstance(value, str):
        raise MalformedError(
            f"time must be epoch milliseconds or ISO 8601 text, not {type(value).__name__}"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedError(f"time {value!r} is not ISO 8601") from None
    offset = moment.utcoffset()
    if offset is None:
        raise MalformedError(f"time {value!r} has no UTC offset; add one, e.g. +01:00 or Z")
    if offset % timedelta(minutes=1):
        raise MalformedError(f"time {value!r} has an offset that is not whole minutes")
    return (moment - _EPOCH) // timedelta(milliseconds=1), offset // timedelta(minutes=1)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class CgmReading:
    """One sensor glucose value in whole mg/dL (39..500) with an optional trend direction.

    ``censored`` is None for a measured value, or "low"/"high" for a sensor LOW/HIGH, whose
    ``mgdl`` is then the sensor limit (39..53 for a low, 251..500 for a high).
    """

    time_ms: int
    tz_offset_min: int
    mgdl: int
    trend: str | None = None
    ns: str | None = None
    censored: str | None = None

    TYPE: ClassVar[str] = "cgm"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        _int(self.mgdl, "glucose (mg/dL)", -(1 << 63), 1 << 63)
        if not CGM_MIN_MGDL <= self.mgdl <= CGM_MAX_MGDL:
            side = "below" if self.mgdl < CGM_MIN_MGDL else "above"
            raise OutOfRangeError(
                f"glucose {self.mgdl} mg/dL is {side} the CGM range "
                f"{CGM_MIN_MGDL}..{CGM_MAX_MGDL} mg/dL; a sensor cannot report it"
            )
        if self.trend is not None:
            _choice(self.trend, "trend", TRENDS)
        if self.censored is not None:
            side = _choice(self.censored, "censored", CENSORED)
            lo, hi = CENSORED_RANGE[side]
            if not lo <= self.mgdl <= hi:
                raise OutOfRangeError(
                    f"a sensor {side.upper()} must carry the sensor's limit, {lo}..{hi} mg/dL, "
                    f"not {self.mgdl}"
                )

    def to_value(self) -> dict[str, Any]:
        return _record_value(self)

    @classmethod
    def from_value(cls, value: object) -> CgmReading:
        return cls(*_record_fields(value, cls))


@dataclass(frozen=True, slots=True)
class SmbgReading:
    """One meter (finger-stick) glucose value in whole mg/dL (20..600)."""

    time_ms: int
    tz_offset_min: int
    mgdl: int
    ns: str | None = None

    TYPE: ClassVar[str] = "smbg"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        _int(self.mgdl, "glucose (mg/dL)", SMBG_MIN_MGDL, SMBG_MAX_MGDL)

    def to_value(self) -> dict[str, Any]:
        return _record_value(self)

    @classmethod
    def from_value(cls, value: object) -> SmbgReading:
        return cls(*_record_fields(value, cls))


@dataclass(frozen=True, slots=True)
class Bolus:
    """A bolus of ``units_milli`` mU (1..100,000). ``duration_ms`` only for ``extended``."""

    time_ms: int
    tz_offset_min: int
    kind: str
    units_milli: int
    duration_ms: int | None = None
    ns: str | None = None

    TYPE: ClassVar[str] = "bolus"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        _choice(self.kind, "bolus kind", BOLUS_KINDS)
        _int(self.units_milli, "bolus (mU)", 1, MAX_BOLUS_MILLI)
        if self.kind == "extended":
            if self.duration_ms is None:
                raise MalformedError("an extended bolus needs a duration")
            _int(self.duration_ms, "bolus duration (ms)", 60_000, MAX_DURATION_MS)
        elif self.duration_ms is not None:
            raise MalformedError(f"a {self.kind} bolus has no duration; only extended ones do")

    def to_value(self) -> dict[str, Any]:
        return _record_value(self)

    @classmethod
    def from_value(cls, value: object) -> Bolus:
        return cls(*_record_fields(value, cls))


@dataclass(frozen=True, slots=True)
class Basal:
    """A basal segment: ``rate_milli_u_per_h`` (0..35,000 mU/h) for ``duration_ms`` (<= 24 h).

    ``suspend`` means delivery stopped, so its rate must be 0.
    """

    time_ms: int
    tz_offset_min: int
    kind: str
    rate_milli_u_per_h: int
    duration_ms: int
    ns: str | None = None

    TYPE: ClassVar[str] = "basal"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        _choice(self.kind, "basal kind", BASAL_KINDS)
        _int(self.rate_milli_u_per_h, "basal rate (mU/h)", 0, MAX_BASAL_MILLI_PER_H)
        _int(self.duration_ms, "basal duration (ms)", 1, MAX_DURATION_MS)
        if self.kind == "suspend" and self.rate_milli_u_per_h != 0:
            raise OutOfRangeError("a suspend has rate 0; use kind 'temp' for a reduced rate")

    def to_value(self) -> dict[str, Any]:
        return _record_value(self)

    @classmethod
    def from_value(cls, value: object) -> Basal:
        return cls(*_record_fields(value, cls))


@dataclass(frozen=True, slots=True)
class Carbs:
    """Carbohydrate eaten, in tenths of a gram (1..5,000, i.e. 0.1..500 g)."""

    time_ms: int
    tz_offset_min: int
    grams_tenths: int
    ns: str | None = None

    TYPE: ClassVar[str] = "carbs"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        _int(self.grams_tenths, "carbs (tenths of a gram)", 1, MAX_CARBS_TENTHS)

    def to_value(self) -> dict[str, Any]:
        return _record_value(self)

    @classmethod
    def from_value(cls, value: object) -> Carbs:
        return cls(*_record_fields(value, cls))


Schedule: TypeAlias = tuple[tuple[int, ...], ...]


def _schedule(value: object, what: str, ranges: tuple[tuple[str, int, int], ...]) -> Schedule:
    """A schedule: entries (start_minute, value...) starting at 0, strictly increasing, < 1440."""
    if not isinstance(value, (tuple, list)):
        raise MalformedError(f"{what} must be a list of entries, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_SCHEDULE_ENTRIES:
        raise OutOfRangeError(f"{what} has {len(value)} entries; 1..{MAX_SCHEDULE_ENTRIES} allowed")
    out: list[tuple[int, ...]] = []
    previous = -1
    for i, entry in enumerate(value):
        if not isinstance(entry, (tuple, list)) or len(entry) != 1 + len(ranges):
            raise MalformedError(
                f"{what} entry {i} must be [start_minute, {', '.join(r[0] for r in ranges)}]"
            )
        start = _int(entry[0], f"{what} entry {i} start minute", 0, 1439)
        if i == 0 and start != 0:
            raise OutOfRangeError(f"{what} must start at minute 0 (midnight), not {start}")
        if start <= previous:
            raise OutOfRangeError(f"{what} entry {i} starts at {start}, not after {previous}")
        previous = start
        items = [
            _int(item, f"{what} entry {i} {name}", lo, hi)
            for item, (name, lo, hi) in zip(entry[1:], ranges, strict=True)
        ]
        out.append((start, *items))
    return tuple(out)


_BASAL_SCHED: Final = (("rate (mU/h)", 0, MAX_BASAL_MILLI_PER_H),)
_RATIO_SCHED: Final = (("ratio (tenths of g per U)", 10, 1_500),)
_ISF_SCHED: Final = (("sensitivity (mg/dL per U)", 5, 1_000),)
_TARGET_SCHED: Final = (("low (mg/dL)", 60, 300), ("high (mg/dL)", 60, 300))


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """Therapy settings, each a day schedule of entries starting at minute 0, increasing.

    - ``basal_schedule``: (start_minute, rate mU/h)
    - ``carb_ratios``: (start_minute, tenths of a gram of carbs per unit), e.g. 100 = 10 g/U
    - ``sensitivities``: (start_minute, mg/dL per unit)
    - ``targets``: (start_minute, low mg/dL, high mg/dL), low <= high (a single target has
      low == high)
    """

    time_ms: int
    tz_offset_min: int
    basal_schedule: Schedule
    carb_ratios: Schedule
    sensitivities: Schedule
    targets: Schedule
    ns: str | None = None

    TYPE: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        # Normalise lists (from decoding) into tuples so the record stays hashable and frozen.
        object.__setattr__(
            self, "basal_schedule", _schedule(self.basal_schedule, "basal schedule", _BASAL_SCHED)
        )
        object.__setattr__(
            self, "carb_ratios", _schedule(self.carb_ratios, "carb ratios", _RATIO_SCHED)
        )
        object.__setattr__(
            self, "sensitivities", _schedule(self.sensitivities, "sensitivities", _ISF_SCHED)
        )
        object.__setattr__(self, "targets", _schedule(self.targets, "targets", _TARGET_SCHED))
        for start, low, high in self.targets:
            if low > high:
                raise OutOfRangeError(f"target at minute {start}: low {low} is above high {high}")

    def to_value(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "time_ms": self.time_ms,
            "tz_offset_min": self.tz_offset_min,
            "basal_schedule": [list(e) for e in self.basal_schedule],
            "carb_ratios": [list(e) for e in self.carb_ratios],
            "sensitivities": [list(e) for e in self.sensitivities],
            "targets": [list(e) for e in self.targets],
            **({} if self.ns is None else {"ns": self.ns}),
        }

    @classmethod
    def from_value(cls, value: object) -> DeviceSettings:
        return cls(*_record_fields(value, cls))


@dataclass(frozen=True, slots=True)
class Note:
    """Free text (1..MAX_NOTE_CHARS characters; no control characters but newline and tab)."""

    time_ms: int
    tz_offset_min: int
    text: str
    ns: str | None = None

    TYPE: ClassVar[str] = "note"

    def __post_init__(self) -> None:
        _time(self.time_ms, self.tz_offset_min)
        check_annex(self.ns)
        text = _str(self.text, "note text")
        if not 1 <= len(text) <= MAX_NOTE_CHARS:
            raise OutOfRangeError(
                f"note text is {len(text)} characters; 1..{MAX_NOTE_CHARS} allowed"
            )
        if any(ord(c) < 32 and c not in "\n\t" for c in text):
            raise MalformedError("note text holds control characters; only newline and tab")

    def to_value(self) -> dict[str, Any]:
        return _record_value(self)

    @classmethod
    def from_value(cls, value: object) -> Note:
        return cls(*_record_fields(value, cls))


Record: TypeAlias = CgmReading | SmbgReading | Bolus | Basal | Carbs | DeviceSettings | Note

_BY_TYPE: Final[dict[str, Any]] = {
    cls.TYPE: cls for cls in (CgmReading, SmbgReading, Bolus, Basal, Carbs, DeviceSettings, Note)
}
#: Which record types each stream may hold.
_STREAM_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "cgm": ("cgm",),
    "smbg": ("smbg",),
    "insulin": ("bolus", "basal"),
    "carbs": ("carbs",),
    "settings": ("settings",),
    "notes": ("note",),
}


#: Fields stored only when set, so records without them keep the encoding they always had.
_OPTIONAL: Final = ("ns", "censored")


def _fields(value: object, type_name: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Check a stored value is a dict of exactly ``type`` plus ``names`` (``ns`` and
    ``censored`` only when set: a record without them is stored without the key); return it."""
    if not isinstance(value, dict):
        raise MalformedError(f"a {type_name} record must be a map, not {type(value).__name__}")
    if value.get("type") != type_name:
        raise MalformedError(f"record type {value.get('type')!r} is not {type_name!r}")
    expected = {"type", *names}
    for name in _OPTIONAL:
        if name not in value:
            expected.discard(name)
        elif value[name] is None:
            raise MalformedError(f"{type_name} record: an absent {name!r} is stored "
                                 f"without {name!r}")
    if set(value) != expected:
        missing = sorted(expected - set(value))
        extra = sorted(set(value) - expected)
        raise MalformedError(f"{type_name} record: missing fields {missing}, unknown {extra}")
    return value


def _record_value(record: Any) -> dict[str, Any]:
    """A record's stored form: ``type`` plus every dataclass field, as they are, except an
    absent ``ns`` (so records without an annex keep the encoding they always had)."""
    value = {name: getattr(record, name) for name in record.__match_args__}
    for name in _OPTIONAL:
        if name in value and value[name] is None:
            del value[name]
    value["type"] = record.TYPE
    return value


def _record_fields(value: object, cls: Any) -> list[Any]:
    """The constructor arguments of ``cls`` from its stored form (exactly its fields)."""
    names: tuple[str, ...] = cls.__match_args__
    v = _fields(value, cls.TYPE, names)
    return [v.get(name) for name in names]


def record_from_value(value: object) -> Record:
    """Decode any stored record by its ``type`` field. Raises MalformedError."""
    if not isinstance(value, dict) or value.get("type") not in _BY_TYPE:
        raise MalformedError("not a record: expected a map with a known 'type'")
    record: Record = _BY_TYPE[value["type"]].from_value(value)
    return record


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class Batch:
    """One validated upload of one stream: records sorted by time, no duplicate keys.

    ``start_ms``/``end_ms`` are the first and last record times (inclusive), ``count`` the
    number of records: the time range and count a ``data.commit`` transaction records.
    """

    stream: str
    items: tuple[Record, ...]
    start_ms: int
    end_ms: int
    count: int

    def to_value(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "items": [item.to_value() for item in self.items],
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "count": self.count,
        }

    @classmethod
    def from_value(cls, value: object) -> Batch:
        """Decode and re-validate a stored batch. Raises MalformedError/OutOfRangeError."""
        if not isinstance(value, dict) or set(value) != {
            "stream",
            "items",
            "start_ms",
            "end_ms",
            "count",
        }:
            raise MalformedError("a batch is a map of stream, items, start_ms, end_ms, count")
        stream = _choice(value["stream"], "stream", STREAMS)
        if not isinstance(value["items"], list):
            raise MalformedError("batch items must be a list")
        if len(value["items"]) > MAX_BATCH:  # as parse_batch; the state machine would refuse it
            raise MalformedError(f"{stream} batch has {len(value['items'])} items; the limit "
                                 f"is {MAX_BATCH}: split it")
        items = tuple(record_from_value(v) for v in value["items"])
        allowed = _STREAM_TYPES[stream]
        strays = sorted({r.TYPE for r in items} - set(allowed))
        if strays:  # a stream is a unit of consent: a grant of smbg releases smbg only
            raise MalformedError(f"a {stream} batch holds {' and '.join(allowed)} records, not "
                                 f"{', '.join(strays)}: send those in their own stream's batch")
        batch = _make_batch(stream, items)
        if batch != cls(stream, items, value["start_ms"], value["end_ms"], value["count"]):
            raise MalformedError("batch range, count or order does not match its items")
        return batch


def check_unique_times(batch: Batch) -> None:
    """Raise OutOfRangeError if two records of one type share a time (the batch is sorted)."""
    items = batch.items
    for i in range(1, len(items)):
        a, b = items[i - 1], items[i]
        if a.time_ms == b.time_ms and a.TYPE == b.TYPE:
            raise OutOfRangeError(f"duplicate time: two {a.TYPE} records at "
                                  f"{format_time(a.time_ms, a.tz_offset_min)}")


def _make_batch(stream: str, records: tuple[Record, ...]) -> Batch:
    if not records:
        raise OutOfRangeError(f"{stream} batch is empty; send at least one item")
    ordered = tuple(sorted(records, key=lambda r: (r.time_ms, r.TYPE)))
    return Batch(stream, ordered, ordered[0].time_ms, ordered[-1].time_ms, len(ordered))


def _get(item: dict[str, Any], name: str) -> Any:
    if name not in item:
        raise MalformedError(f"missing field {name!r}")
    return item[name]


def scaled(value: object, what: str, scale: int) -> int:
    """A non-negative input number in integer units of 1/scale (nearest, halves up): how
    insulin (1000), basal rates (1000) and carbs (10) are stored. Raises MalformedError
    (not a number) or OutOfRangeError (negative)."""
    number = parse_decimal(value, what)
    if number < 0:
        raise OutOfRangeError(f"{what} {value} is negative")
    return int((number * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _duration_ms(item: dict[str, Any], required: bool) -> int | None:
    if "duration_ms" in item:
        return _int(item["duration_ms"], "duration_ms", 0, MAX_DURATION_MS)
    if "duration_min" in item:
        return scaled(item["duration_min"], "duration_min", 60_000)
    if required:
        raise MalformedError("missing field 'duration_min' (or 'duration_ms')")
    return None


def _censor_word(value: object) -> str | None:
    """"low"/"high" for the text LOW/HIGH (also LO/HI, as FreeStyle Libre shows them)."""
    if isinstance(value, str):
        word = value.strip().upper()
        if word in ("LOW", "LO"):
            return "low"
        if word in ("HIGH", "HI"):
            return "high"
    return None


def _glucose(value: object, units: str, what: str) -> int:
    if _censor_word(value) is not None:
        raise OutOfRangeError(
            f"{what} is {str(value).strip().upper()}: only a CGM reading may be a sensor "
            "LOW/HIGH; give the number measured"
        )
    return to_mgdl(value, units)


def _cgm(item: dict[str, Any], time_ms: int, tz: int, units: str) -> CgmReading:
    """A CGM item as a reading; LOW/HIGH (text, flag or the Dexcom code 39) as a censored
    reading at the sensor's limit (see the module docstring)."""
    trend = item.get("trend")
    if trend == "NONE":  # Nightscout's "no arrow"
        trend = None
    value = _get(item, "value")
    flag = item.get("flag")
    if flag is not None and _censor_word(flag) is None:
        raise OutOfRangeError(f"flag {flag!r} is not LOW or HIGH")
    side = _censor_word(value) or _censor_word(flag)
    if side is None:
        mgdl = to_mgdl(value, units)
        censored = "low" if mgdl == DEXCOM_LOW_CODE else None
    elif _censor_word(value) is not None:
        if flag is not None and _censor_word(flag) != side:
            raise OutOfRangeError(f"value {value!r} contradicts flag {flag!r}")
        default = LOW_LIMIT_MGDL if side == "low" else HIGH_LIMIT_MGDL
        mgdl = to_mgdl(item["limit"], units) if "limit" in item else default
        censored = side
    else:
        mgdl, censored = to_mgdl(value, units), side
    ns = item.get("ns")
    return CgmReading(time_ms, tz, mgdl, trend, ns=ns, censored=censored)


def _glucose_schedule(value: object, units: str, what: str, width: int) -> list[list[Any]]:
    if not isinstance(value, list):
        raise MalformedError(f"{what} must be a list of entries")
    out: list[list[Any]] = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 1 + width:
            raise MalformedError(f"{what} entries must have {1 + width} elements")
        out.append([entry[0], *(_glucose(x, units, what) for x in entry[1:])])
    return out


def _scaled_schedule(value: object, what: str, scale: int) -> list[list[Any]]:
    if not isinstance(value, list):
        raise MalformedError(f"{what} must be a list of entries")
    out: list[list[Any]] = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            raise MalformedError(f"{what} entries must be [start_minute, value]")
        out.append([entry[0], scaled(entry[1], what, scale)])
    return out


def _parse_item(stream: str, item: dict[str, Any], time_ms: int, tz: int, units: str) -> Record:
    ns = item.get("ns")
    if stream == "cgm":
        return _cgm(item, time_ms, tz, units)
    if stream == "smbg":
        return SmbgReading(time_ms, tz, _glucose(_get(item, "value"), units, "reading"), ns=ns)
    if stream == "insulin":
        kind_of = _choice(_get(item, "type"), "insulin type", ("bolus", "basal"))
        kind = _get(item, "kind")
        if kind_of == "bolus":
            units_milli = scaled(_get(item, "insulin"), "bolus insulin (U)", 1000)
            return Bolus(time_ms, tz, kind, units_milli, _duration_ms(item, kind == "extended"),
                         ns=ns)
        rate = 0 if kind == "suspend" and "rate" not in item else _get(item, "rate")
        duration = _duration_ms(item, True)
        assert duration is not None
        return Basal(time_ms, tz, kind, scaled(rate, "basal rate", 1000), duration, ns=ns)
    if stream == "carbs":
        return Carbs(time_ms, tz, scaled(_get(item, "grams"), "carbs (g)", 10), ns=ns)
    if stream == "settings":
        return DeviceSettings(
            time_ms,
            tz,
            tuple(map(tuple, _scaled_schedule(_get(item, "basal_schedule"), "basal", 1000))),
            tuple(map(tuple, _scaled_schedule(_get(item, "carb_ratios"), "carb ratio", 10))),
            tuple(map(tuple, _glucose_schedule(_get(item, "sensitivities"), units, "isf", 1))),
            tuple(map(tuple, _glucose_schedule(_get(item, "targets"), units, "target", 2))),
            ns=ns,
        )
    return Note(time_ms, tz, _get(item, "text"), ns=ns)


def parse_item(stream: str, item: dict[str, Any], *, units: str = "mg/dL") -> Record:
    """One input item of ``stream`` (the form ``parse_batch`` takes) as a record: the checks
    ``parse_batch`` makes of each item, without those of a batch (clock, duplicates).

    Raises MalformedError or OutOfRangeError, as ``parse_batch`` would for the item.
    """
    if stream not in STREAMS:
        raise MalformedError(f"unknown stream {stream!r}; use one of {', '.join(STREAMS)}")
    if not isinstance(item, dict):
        raise MalformedError(f"item must be an object, not {type(item).__name__}")
    time_ms, offset = parse_time(_get(item, "time"))
    tz = item.get("tz_offset_min", 0) if offset is None else offset
    item_units = normalize_units(item.get("units", units))
    return _parse_item(stream, item, time_ms, tz, item_units)


def parse_batch(
    stream: str,
    items: list[dict[str, Any]],
    *,
    now_ms: int,
    units: str = "mg/dL",
    labels: Sequence[str] | None = None,
) -> Batch:
    """Validate one upload of ``stream`` and return it as a Batch, or refuse all of it.

    ``items`` are in the input form documented in docs/ingest-format.md: each has ``time``
    (epoch ms, or ISO 8601 text with an offset, which then sets ``tz_offset_min``), optional
    ``tz_offset_min``, and the stream's fields (``value`` for cgm/smbg in ``units``; ``type``,
    ``kind``, ``insulin`` (U) or ``rate`` (U/h), ``duration_min`` for insulin; ``grams``; settings
    schedules;
    ``text``). ``now_ms`` is the caller's clock; items more than 5 minutes after it are refused.
    An item's own ``units`` field overrides ``units`` for its glucose values; its ``ns``, if
    any, becomes the record's annex (glucose/annex.py). ``labels``, if
    given, names each item in error messages instead of "<stream> item #<index>" (``parse_jsonl``
    passes line numbers).

    Raises MalformedError (unknown stream or units, not a list, wrong types, missing fields,
    too many items) or OutOfRangeError (values outside range, LOW/HIGH outside CGM, future
    times, duplicate times, empty batch). Item errors name the item's index and time.
    """
    if stream not in STREAMS:
        raise MalformedError(f"unknown stream {stream!r}; use one of {', '.join(STREAMS)}")
    units = normalize_units(units)
    if not isinstance(items, list):
        raise MalformedError(f"{stream} batch must be a list of items")
    if len(items) > MAX_BATCH:
        raise MalformedError(
            f"{stream} batch has {len(items)} items; the limit is {MAX_BATCH}: split it"
        )
    records: list[Record] = []
    seen: dict[tuple[int, str], int] = {}
    for index, item in enumerate(items):
        at: tuple[int, int | None] | None = None  # the item's time, for a refusal's words
        try:
            if not isinstance(item, dict):
                raise MalformedError(f"item must be an object, not {type(item).__name__}")
            time_ms, offset = parse_time(_get(item, "time"))
            at = (time_ms, offset)
            tz = item.get("tz_offset_min", 0) if offset is None else offset
            item_units = normalize_units(item["units"]) if "units" in item else units
            record = _parse_item(stream, item, time_ms, tz, item_units)
            at = (record.time_ms, record.tz_offset_min)
            if record.time_ms > now_ms + MAX_CLOCK_SKEW_MS:
                raise OutOfRangeError(
                    f"time is {(record.time_ms - now_ms) // 1000} s in the future, more than "
                    f"the {MAX_CLOCK_SKEW_MS // 60_000} min allowed clock skew; check the "
                    "device clock"
                )
            key = (record.time_ms, record.TYPE)
            if key in seen:
                first = labels[seen[key]] if labels is not None else f"item #{seen[key]}"
                raise OutOfRangeError(f"duplicate time: {first} has the same {record.TYPE} time")
            seen[key] = index
        except InputError as exc:  # the words are made only for a refusal
            label = labels[index] if labels is not None else f"{stream} item #{index}"
            where = label if at is None else f"{label} at {_safe_time(*at)}"
            raise type(exc)(f"{where}: {exc.message}") from None
        records.append(record)
    return _make_batch(stream, tuple(records))


def _safe_time(time_ms: int, offset: int | None) -> str:
    try:
        return format_time(time_ms, offset or 0)
    except (OverflowError, ValueError):
        return f"time_ms={time_ms}"
