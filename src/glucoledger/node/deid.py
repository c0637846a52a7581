"""De-identification for research releases: pseudonyms, date shifts, Safe Harbor, k-anonymity.

Pure functions over values (no I/O); the study key is derived by node/research.py from the
node's research secret, which never leaves the node.

- Pseudonym: ``HMAC-SHA-256(study key, "pseudonym" || patient id)`` truncated to 128 bits.
  The study key is ``HMAC-SHA-256(node secret, "study" || study id)``: without the node's
  secret a pseudonym links neither to the account nor to the same person in another study.
- Date shift, per participant and study: back by 1..520 whole weeks (so the weekday and the
  clock time are kept) plus a jitter of -30..+29.999 s (so the clock time is kept within
  half a minute, and two studies' shifts of one person differ by more than a grid of
  sampling instants: no exact timestamp is shared). The jitter never moves a time across
  local midnight: the times within twice the jitter of the midnight it points to are
  squeezed, in order, toward it (``_held_in_day``), so the weekday (and the date) is exactly
  the shifted one, the order of times is kept, and even a time at midnight moves by an
  amount of its own. (Holding such times at the day's first or last millisecond, as an
  earlier version did, gave every study the same "00:00:00.000".) Times are written as
  local wall time without the UTC offset (an offset narrows the place).
- Safe Harbor (45 CFR 164.514(b)(2)): a release row is built from a whitelist of value
  fields per stream, so names, device serials and identifiers, free text (notes, the
  Nightscout annex with its ``enteredBy`` and device strings), exact dates of birth and
  locations below state level never enter it. Ages over 89 are reported as ``90+``.
  ``scan_identifiers`` re-checks a finished release against the identifiers the node knows.
- k-anonymity (Sweeney 2002): participants' quasi-identifiers are generalised along fixed
  ladders (age: 5-year band, 10-year band, 20-year band, suppressed; region: US state, census
  region, suppressed; sex and diabetes type: kept, suppressed) until every combination is
  shared by at least k participants. The check is repeated by pycanon (an independent
  implementation) before anything is released. Pseudonyms are stable within a study, so
  whoever holds several of its releases joins them by pseudonym: a participant released
  before is given her first row again (coarsened, never refined), and the joined view of
  every release of the study must be k-anonymous too (``joined``). Until 2026-12-05 each
  release was generalised on its own: a second release after new participants joined
  suppressed other fields than the first, and joining the two singled people out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..crypto.hashing import hmac_sha256
from ..errors import InputError
from ..glucose.readings import Basal, Bolus, Carbs, CgmReading, Record, SmbgReading

__all__ = ["CENSUS_REGION", "Profile", "date_shift_ms", "generalise", "joined", "k_of",
           "pseudonym", "record_row", "scan_identifiers", "shifted_local", "study_key"]

WEEK_MS: Final = 7 * 86_400_000
#: US census regions (the level above state); other countries: "non-US".
CENSUS_REGION: Final[dict[str, str]] = {
    **dict.fromkeys(("CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"), "Northeast"),
    **dict.fromkeys(("IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"),
                    "Midwest"),
    **dict.fromkeys(("DE", "DC", "FL", "GA", "MD", "NC", "SC", "VA", "WV", "AL", "KY", "MS",
                     "TN", "AR", "LA", "OK", "TX"), "South"),
    **dict.fromkeys(("AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR",
                     "WA"), "West"),
}
SEXES: Final = ("female", "male", "other")
TYPES: Final = ("T1D", "T2D", "other")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a participant tells the node at opt-in (kept on the node, never released as is)."""

    name: str
    birth_date: str  # YYYY-MM-DD
    sex: str
    state: str  # US state code (two letters) or a country name
    zip: str
    diabetes_type: str

    @classmethod
    def from_value(cls, v: Any) -> Profile:
        keys = ("name", "birth_date", "sex", "state", "zip", "diabetes_type")
        if not isinstance(v, Mapping) or set(v) != set(keys) or not all(
                isinstance(v[k], str) for k in keys):
            raise InputError(f"a research profile is text fields {', '.join(keys)}")
        try:
            datetime.strptime(v["birth_date"], "%Y-%m-%d")
        except ValueError:
            raise InputError("birth_date is YYYY-MM-DD") from None
        if v["sex"] not in SEXES or v["diabetes_type"] not in TYPES:
            raise InputError(f"sex is one of {', '.join(SEXES)}; diabetes_type one of "
                             f"{', '.join(TYPES)}")
        return cls(*(v[k] for k in keys))

    def to_value(self) -> dict[str, str]:
        return {"name": self.name, "birth_date": self.birth_date, "sex": self.sex,
                "state": self.state, "zip": self.zip, "diabetes_type": self.diabetes_type}

    def age_at(self, time_ms: int) -> int:
        born = datetime.strptime(self.birth_date, "%Y-%m-%d").date()
        today = datetime.fromtimestamp(time_ms / 1000, UTC).date()
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def study_key(secret: bytes, study: bytes) -> bytes:
    return hmac_sha256(secret, b"glucoledger:research-study\x00" + study)


def pseudonym(key: bytes, patient: bytes) -> str:
    return hmac_sha256(key, b"pseudonym\x00" + patient)[:16].hex()


def date_shift_ms(key: bytes, patient: bytes) -> int:
    """How far back this participant's times move in this study (see the module docs)."""
    d = int.from_bytes(hmac_sha256(key, b"shift\x00" + patient)[:8], "big")
    weeks = 1 + d % 520
    jitter = (d >> 16) % 60_000 - 30_000
    return weeks * WEEK_MS - jitter


DAY_MS: Final = 86_400_000


def _held_in_day(x: int, jitter: int) -> int:
    """Where ``jitter`` moves the time ``x`` ms after local midnight, held inside the day.

    Most times move by the jitter. The few within twice its size of the midnight it points
    to are squeezed, in order, into the room left: half a jitter to a whole one from it.
    So the date stays the shifted one, the order of times is kept, times a minute apart stay
    apart, and a time at midnight itself still moves by an amount of its own (half the
    jitter), never onto midnight, which every study would share."""
    a = abs(jitter)
    if jitter <= 0:
        if x >= 2 * a:
            return x - a
        return a // 2 + x * (a - a // 2) // (2 * a)
    r = DAY_MS - 1 - x  # the same, mirrored, before the next midnight
    if r >= 2 * a:
        return x + a
    return DAY_MS - 1 - (a // 2 + r * (a - a // 2) // (2 * a))


def shifted_local(time_ms: int, tz_offset_min: int, shift_ms: int) -> str:
    """Local wall time of ``time_ms`` moved back by ``shift_ms`` (whole weeks less a jitter
    under half a minute, as ``date_shift_ms`` makes it), the jitter held inside the day
    (``_held_in_day``)."""
    weeks = round(shift_ms / WEEK_MS)
    jitter = weeks * WEEK_MS - shift_ms
    local = time_ms + tz_offset_min * 60_000 - weeks * WEEK_MS  # same weekday, same clock
    day = local // DAY_MS * DAY_MS
    moved = day + _held_in_day(local - day, jitter)
    moment = datetime(1970, 1, 1) + timedelta(milliseconds=moved)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moved % 1000:03d}"


def record_row(pid: str, record: Record, shift_ms: int) -> dict[str, Any] | None:
    """The release row of one record, from a whitelist of value fields; None for a record
    kind that releases never carry (notes: free text; device settings)."""
    t = shifted_local(record.time_ms, record.tz_offset_min, shift_ms)
    if isinstance(record, CgmReading):
        return {"pid": pid, "stream": "cgm", "time": t, "mgdl": record.mgdl,
                "trend": record.trend or ""}
    if isinstance(record, SmbgReading):
        return {"pid": pid, "stream": "smbg", "time": t, "mgdl": record.mgdl}
    if isinstance(record, Bolus):
        return {"pid": pid, "stream": "insulin", "time": t, "kind": "bolus/" + record.kind,
                "units_milli": record.units_milli, "duration_ms": record.duration_ms or 0}
    if isinstance(record, Basal):
        return {"pid": pid, "stream": "insulin", "time": t, "kind": "basal/" + record.kind,
                "rate_milli_u_per_h": record.rate_milli_u_per_h,
                "duration_ms": record.duration_ms}
    if isinstance(record, Carbs):
        return {"pid": pid, "stream": "carbs", "time": t, "grams_tenths": record.grams_tenths}
    return None


# --- quasi-identifiers ----------------------------------------------------------------------
def _age(age: int, level: int) -> str:
    if level >= 3:
        return "*"
    age = max(age, 0)  # a birth date after the release (kept before joins refused it): 0-4
    if age > 89:
        return "90+"
    width = (5, 10, 20)[level]
    lo = age - age % width
    return f"{lo}-{min(lo + width - 1, 89)}"


def _region(state: str, level: int) -> str:
    if level == 0:
        return state if state in CENSUS_REGION else "non-US"
    if level == 1:
        return CENSUS_REGION.get(state, "non-US")
    return "*"


_LADDERS: Final[dict[str, int]] = {"age": 3, "region": 2, "sex": 1, "diabetes_type": 1}


def _qi(profile: Profile, time_ms: int, fields: Sequence[str], levels: Mapping[str, int],
        granted: Collection[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in fields:
        lv = levels[f]
        if f not in granted:  # she did not consent to this field: suppressed for her
            out[f] = "*"
        elif f == "age":
            out[f] = _age(profile.age_at(time_ms), lv)
        elif f == "region":
            out[f] = _region(profile.state, lv)
        elif f == "sex":
            out[f] = profile.sex if lv == 0 else "*"
        else:
            out[f] = profile.diabetes_type if lv == 0 else "*"
    return out


def k_of(table: Iterable[Mapping[str, str]], fields: Sequence[str]) -> int:
    counts = Counter(tuple(row[f] for f in fields) for row in table)
    return min(counts.values()) if counts else 0


def _level_of(field: str, value: str) -> int:
    """The lowest level of ``field``'s ladder at which ``value`` (a released value) stands."""
    if value == "*":
        return _LADDERS[field]
    if field == "age":
        if value == "90+":
            return 0
        lo = int(value.split("-")[0])
        return next((lv for lv in range(3) if _age(lo, lv) == value), 2)
    if field == "region":
        return 0 if value in CENSUS_REGION else 1
    return 0


def _coarsen(field: str, value: str, level: int) -> str:
    """``value`` (already released for ``field``) at ``level`` of the ladder, or as it is if
    it stands higher: never finer than what was released."""
    level = max(level, _level_of(field, value))
    if level >= _LADDERS[field]:
        return "*"
    if field == "age":
        return value if value == "90+" else _age(int(value.split("-")[0]), level)
    if field == "region":
        return _region(value, level) if value in CENSUS_REGION else value
    return value


def joined(table: Mapping[str, Mapping[str, str]], fixed: Mapping[str, Mapping[str, str]],
           fields: Sequence[str]) -> list[dict[str, str]]:
    """What a holder of every release of a study knows, one row per pseudonym ever
    released: a released pseudonym's first row (``fixed``: the finest ever released about
    her; a field it lacks, ``*``), a new one's row of ``table``."""
    rows = {pid: {f: row.get(f, "*") for f in fields} for pid, row in fixed.items()}
    for pid, row in table.items():
        rows.setdefault(pid, {f: row[f] for f in fields})
    return [{"pid": pid, **row} for pid, row in sorted(rows.items())]


def generalise(profiles: Mapping[str, Profile], fields: Sequence[str], k: int, time_ms: int,
               granted: Mapping[str, Collection[str]] | None = None,
               fixed: Mapping[str, Mapping[str, str]] | None = None
               ) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    """Quasi-identifiers per pseudonym, generalised until k-anonymous; and the levels used.

    ``granted`` names, per pseudonym, the fields that participant consented to release (her
    research grant may narrow the study's); every other field is ``*`` for her, whatever
    the level. None: every field of ``fields`` for everyone.

    ``fixed``: the rows earlier releases of the study gave about their pseudonyms (each
    one's first). Pseudonyms are stable within a study, so a reader joins releases by them:
    a pseudonym released before gets her first row again, coarsened to the level if it
    stands lower, never refined (a field missing from it stays ``*``); and the search goes
    on until the joined view (``joined``: every pseudonym ever released) is k-anonymous
    too, not only this release. It may end short of k (a few newcomers unlike anyone
    released before): the caller checks and withholds.

    Greedy (a Datafly-like search, Sweeney 2002): while some combination is rarer than k,
    raise by one level the field whose step leaves the fewest participants in classes
    smaller than k (ties: the field with the most distinct values, then the order of
    ``_LADDERS``). Fully suppressed fields make every row alike, so this ends k-anonymous
    whenever there are at least k participants.
    """
    fields = [f for f in _LADDERS if f in fields]
    levels = dict.fromkeys(fields, 0)

    before = fixed or {}

    def row_at(pid: str, p: Profile, lv: Mapping[str, int]) -> dict[str, str]:
        mine = fields if granted is None else granted.get(pid, ())
        if pid not in before:
            return _qi(p, time_ms, fields, lv, mine)
        return {f: _coarsen(f, before[pid].get(f, "*"), lv[f]) if f in mine else "*"
                for f in fields}

    def table_at(lv: Mapping[str, int]) -> dict[str, dict[str, str]]:
        return {pid: row_at(pid, p, lv) for pid, p in profiles.items()}

    def small(rows: Iterable[Mapping[str, str]]) -> int:
        counts = Counter(tuple(row[f] for f in fields) for row in rows)
        return sum(c for c in counts.values() if c < k)

    def short(table: Mapping[str, Mapping[str, str]]) -> int:
        extra = small(joined(table, before, fields)) if before else 0
        return small(table.values()) + extra

    table = table_at(levels)
    while fields and short(table) > 0:
        open_fields = [f for f in fields if levels[f] < _LADDERS[f]]
        if not open_fields:
            break
        tries = {f: table_at({**levels, f: levels[f] + 1}) for f in open_fields}
        distinct = {f: len({row[f] for row in table.values()}) for f in open_fields}
        best = min(open_fields, key=lambda f: (short(tries[f]), -distinct[f]))
        levels[best] += 1
        table = tries[best]
    return table, levels


# --- Safe Harbor scan --------------------------------------------------------------------------
_ZIP = re.compile(r"\b\d{5}(?:-\d{4})?\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_PID = re.compile(r"[0-9a-f]{32}")
_DATE_OF_BIRTH = re.compile(r"\b(19|20)\d\d-\d\d-\d\d\b")


def scan_identifiers(rows: Iterable[Mapping[str, Any]], identifiers: Mapping[str, Iterable[str]]
                     ) -> list[str]:
    """Every Safe Harbor finding in ``rows``: the known identifiers by category (names,
    serials, account ids, zips, birth dates...), any email address or ZIP-like number in text,
    and any age value over 89 that is not ``90+``. A pseudonym (``pid``) is judged by its
    form (32 hex digits, the start of no identifier): its digits are a keyed hash, so a
    known ZIP or date appearing inside them by chance is no finding (it would otherwise
    withhold about one release in a few hundred). An empty list means none was found."""
    needles = [(cat, v.lower()) for cat, vals in identifiers.items() for v in vals if v]
    seen: dict[tuple[str, str, bool], list[str]] = {}  # most values repeat: judge each once

    def judge(key: str, text: str, is_text: bool) -> list[str]:
        if key == "pid":  # a keyed hash the node made: judged by its form, not its digits
            if not _PID.fullmatch(text):
                return ["field pid: not a pseudonym"]
            return [f"field pid: {cat}" for cat in dict.fromkeys(
                cat for cat, needle in needles if needle.startswith(text))]
        out = [f"field {key}: {cat}" for cat in dict.fromkeys(
            cat for cat, needle in needles if needle in text)]
        if is_text and key != "time" and (_ZIP.search(text) or _EMAIL.search(text)):
            out.append(f"field {key}: zip or email")
        if key == "age" and text not in ("*", "90+"):
            lead = text.split("-")[0]
            if not lead.isdecimal() or int(lead) > 89:
                out.append("exact age over 89")
        if key != "time" and _DATE_OF_BIRTH.search(text):
            out.append(f"field {key}: a date")
        return out

    found: list[str] = []
    for i, row in enumerate(rows):
        for key, value in row.items():
            text = str(value).lower()
            cache_key = (key, text, isinstance(value, str))
            verdict = seen.get(cache_key)
            if verdict is None:
                verdict = seen[cache_key] = judge(*cache_key)
            found.extend(f"row {i} {v}" if v.startswith("field") else f"row {i}: {v}"
                         for v in verdict)
    return found
