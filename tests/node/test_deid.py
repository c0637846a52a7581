"""De-identification, pure: pseudonyms and date shifts per study, the generalisation ladder."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from glucoledger.glucose.readings import CgmReading, Note
from glucoledger.node.deid import (
    Profile,
    date_shift_ms,
    generalise,
    k_of,
    pseudonym,
    record_row,
    study_key,
)

SECRET = bytes(range(32))
T = 1_767_225_600_000


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32), st.integers(0, 4_000_000_000_000))
def test_shift_keeps_weekday_and_minute_and_studies_differ(patient: bytes, s1: bytes,
                                                           s2: bytes, t: int) -> None:
    k1, k2 = study_key(SECRET, s1), study_key(SECRET, s2)
    shift = date_shift_ms(k1, patient)
    assert 7 * 86_400_000 - 30_000 < shift <= 520 * 7 * 86_400_000 + 30_000
    jitter = shift % (7 * 86_400_000)
    jitter = min(jitter, 7 * 86_400_000 - jitter)
    assert jitter <= 30_000  # weekday and clock time kept to within half a minute
    if s1 != s2:
        assert pseudonym(k1, patient) != pseudonym(k2, patient)
        assert date_shift_ms(k1, patient) != date_shift_ms(k2, patient)
    assert pseudonym(k1, patient) == pseudonym(study_key(SECRET, s1), patient)
    assert patient.hex()[:8] not in pseudonym(k1, patient)


def test_rows_are_whitelisted_and_notes_never_leave() -> None:
    r = CgmReading(T, 60, 123, "Flat", '{"enteredBy":"Ada"}')
    row = record_row("p1", r, 7 * 86_400_000)
    assert row == {"pid": "p1", "stream": "cgm", "time": "2025-12-25T01:00:00.000",
                   "mgdl": 123, "trend": "Flat"}
    assert datetime.fromisoformat(row["time"]).weekday() == 3  # 2026-01-01 was a Thursday
    assert record_row("p1", Note(T, 0, "Ada at 10027"), 0) is None


def test_generalise_reaches_k_and_pycanon_agrees() -> None:
    import pandas as pd

    people = {f"p{i}": Profile("n", f"19{40 + 7 * i}-01-01", ("female", "male")[i % 2],
                               ("NY", "MA", "TX", "CA", "FL", "WA", "OH")[i % 7], "10001", "T1D")
              for i in range(7)}
    for k in (2, 3, 7):
        table, _ = generalise(people, ["age", "sex", "region"], k, T)
        rows = list(table.values())
        assert k_of(rows, ["age", "region", "sex"]) >= k
        assert anonymity.k_anonymity(pd.DataFrame(rows), ["age", "region", "sex"]) >= k
    old = {"a": Profile("n", "1920-01-01", "female", "NY", "1", "T1D"),
           "b": Profile("n", "1921-06-01", "female", "NY", "1", "T1D")}
    table, levels = generalise(old, ["age"], 2, T)
    assert {r["age"] for r in table.values()} == {"90+"} and levels == {"age": 0}
