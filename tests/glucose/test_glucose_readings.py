from __future__ import annotations

import json
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.errors import InputError, MalformedError, OutOfRangeError
from glucoledger.glucose.ingest import parse_jsonl
from glucoledger.glucose.readings import (
    MAX_BATCH,
    Basal,
    Batch,
    Bolus,
    Carbs,
    CgmReading,
    DeviceSettings,
    Note,
    SmbgReading,
    format_time,
    parse_batch,
    record_from_value,
)

NOW = 1_793_516_400_000  # 2026-11-01T07:00:00Z
NOW_TEXT = "2026-11-01T07:00:00+00:00"
MIN = 60_000


def cgm(i: int, value: object = 120, **extra: Any) -> dict[str, Any]:
    return {"time": NOW - (10 - i) * 5 * MIN, "value": value, **extra}


def good_cgm(n: int = 3) -> list[dict[str, Any]]:
    return [cgm(i) for i in range(n)]


# (name, stream, items, units, error type, text the message must contain)
REFUSALS: list[tuple[str, str, list[Any], str, type[InputError], str]] = [
    ("below 39", "cgm", [cgm(0), cgm(1, 38)], "mg/dL", OutOfRangeError, "below the CGM range"),
    ("above 500", "cgm", [cgm(0, 501)], "mg/dL", OutOfRangeError, "above the CGM range"),
    ("mmol above range", "cgm", [cgm(0, 30.0)], "mmol/L", OutOfRangeError, "above the CGM range"),
    # A sensor LOW/HIGH is stored (tests/glucose/test_censored.py); these are malformed ones.
    ("LOW limit too high", "cgm", [cgm(0, 60, flag="LOW")], "mg/dL", OutOfRangeError,
     "LOW must carry the sensor's limit"),
    ("HIGH limit too low", "cgm", [cgm(0, "HIGH", limit=240)], "mg/dL", OutOfRangeError,
     "HIGH must carry the sensor's limit"),
    ("flag contradicts", "cgm", [cgm(0, "HIGH", flag="LOW")], "mg/dL", OutOfRangeError,
     "contradicts"),
    ("unknown flag", "cgm", [cgm(0, 100, flag="???")], "mg/dL", OutOfRangeError,
     "not LOW or HIGH"),
    ("LOW meter", "smbg", [{"time": NOW, "value": "LO"}], "mg/dL", OutOfRangeError,
     "only a CGM reading"),
    (
        "future",
        "cgm",
        [{"time": NOW + 6 * MIN, "value": 100}],
        "mg/dL",
        OutOfRangeError,
        "in the future",
    ),
    (
        "duplicate",
        "cgm",
        [cgm(0), cgm(1), cgm(1, 130)],
        "mg/dL",
        OutOfRangeError,
        "duplicate time: item #1",
    ),
    ("unknown units", "cgm", good_cgm(), "mg/L", MalformedError, "unknown glucose units"),
    ("item units", "cgm", [cgm(0, units="mmol/dL")], "mg/dL", MalformedError, "unknown glucose"),
    ("unknown stream", "ketones", good_cgm(), "mg/dL", MalformedError, "unknown stream"),
    ("value wrong type", "cgm", [cgm(0, [120])], "mg/dL", MalformedError, "must be a number"),
    ("fractional mg/dL", "cgm", [cgm(0, 120.5)], "mg/dL", MalformedError, "not a whole number"),
    ("item not object", "cgm", [cgm(0), [1, 2]], "mg/dL", MalformedError, "must be an object"),
    ("missing value", "cgm", [{"time": NOW}], "mg/dL", MalformedError, "missing field 'value'"),
    ("missing time", "cgm", [{"value": 100}], "mg/dL", MalformedError, "missing field 'time'"),
    (
        "naive time",
        "cgm",
        [{"time": "2026-11-01T07:00:00", "value": 1}],
        "mg/dL",
        MalformedError,
        "no UTC offset",
    ),
    ("bad trend", "cgm", [cgm(0, trend="Sideways")], "mg/dL", OutOfRangeError, "trend"),
    ("too large", "cgm", [cgm(0)] * (MAX_BATCH + 1), "mg/dL", MalformedError, "the limit is"),
    ("empty", "cgm", [], "mg/dL", OutOfRangeError, "empty"),
    (
        "unset clock",
        "cgm",
        [{"time": 1_000, "value": 100}],
        "mg/dL",
        OutOfRangeError,
        "clock looks unset",
    ),
    ("smbg range", "smbg", [{"time": NOW, "value": 700}], "mg/dL", OutOfRangeError, "20..600"),
    (
        "note too long",
        "notes",
        [{"time": NOW, "text": "x" * 2001}],
        "mg/dL",
        OutOfRangeError,
        "2001 characters",
    ),
    (
        "note control",
        "notes",
        [{"time": NOW, "text": "a\x00b"}],
        "mg/dL",
        MalformedError,
        "control characters",
    ),
    (
        "bolus too big",
        "insulin",
        [{"time": NOW, "type": "bolus", "kind": "normal", "insulin": 150}],
        "mg/dL",
        OutOfRangeError,
        "bolus (mU)",
    ),
    (
        "extended no duration",
        "insulin",
        [{"time": NOW, "type": "bolus", "kind": "extended", "insulin": 2}],
        "mg/dL",
        MalformedError,
        "duration",
    ),
    (
        "suspend with rate",
        "insulin",
        [{"time": NOW, "type": "basal", "kind": "suspend", "rate": 1, "duration_min": 30}],
        "mg/dL",
        OutOfRangeError,
        "suspend",
    ),
    ("negative carbs", "carbs", [{"time": NOW, "grams": -5}], "mg/dL", OutOfRangeError, "negative"),
    (
        "schedule not at 0",
        "settings",
        [
            {
                "time": NOW,
                "basal_schedule": [[30, 1]],
                "carb_ratios": [[0, 10]],
                "sensitivities": [[0, 50]],
                "targets": [[0, 100, 120]],
            }
        ],
        "mg/dL",
        OutOfRangeError,
        "minute 0",
    ),
]


@pytest.mark.parametrize(
    ("stream", "items", "units", "error", "reason"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals(
    stream: str, items: list[Any], units: str, error: type[InputError], reason: str
) -> None:
    with pytest.raises(error) as caught:
        parse_batch(stream, items, now_ms=NOW, units=units)
    message = caught.value.message
    assert type(caught.value) is error
    assert reason in message
    if (
        stream in ("cgm", "smbg", "insulin", "carbs", "settings", "notes")
        and items
        and len(items) <= MAX_BATCH
        and units in ("mg/dL", "mmol/L")
    ):
        # An item error names the item by index and, when the time parsed, by time.
        assert f"{stream} item #" in message
        bad = int(message.split("#")[1].split()[0].rstrip(":"))
        if isinstance(items[bad], dict) and isinstance(items[bad].get("time"), int):
            assert f" at {format_time(items[bad]['time'])}: " in message


def test_named_time_is_the_readings_time() -> None:
    with pytest.raises(OutOfRangeError) as caught:
        parse_batch(
            "cgm", [cgm(0), {"time": "2026-11-01T08:05:00+01:00", "value": 520}], now_ms=NOW
        )
    assert caught.value.message.startswith("cgm item #1 at 2026-11-01T08:05:00+01:00:")


def test_accepts_and_sorts() -> None:
    items = [cgm(3), cgm(1, 6.1, units="mmol/L"), cgm(2, 39, trend="Flat")]
    batch = parse_batch("cgm", items, now_ms=NOW)
    assert [r.time_ms for r in batch.items] == sorted(r.time_ms for r in batch.items)
    assert batch.count == 3 and batch.start_ms == NOW - 45 * MIN and batch.end_ms == NOW - 35 * MIN
    assert batch.items[0] == CgmReading(NOW - 45 * MIN, 0, 110, None)


def test_clock_skew_boundary() -> None:
    parse_batch("cgm", [{"time": NOW + 5 * MIN, "value": 100}], now_ms=NOW)


def test_bolus_and_basal_may_share_a_time() -> None:
    batch = parse_batch(
        "insulin",
        [
            {"time": NOW, "type": "bolus", "kind": "normal", "insulin": 1.25},
            {"time": NOW, "type": "basal", "kind": "temp", "rate": 0.4, "duration_min": 30},
        ],
        now_ms=NOW,
    )
    assert batch.items == (Basal(NOW, 0, "temp", 400, 30 * MIN), Bolus(NOW, 0, "normal", 1250))


RECORDS = [
    CgmReading(NOW, 60, 123, "FortyFiveUp"),
    CgmReading(NOW, -300, 39),
    SmbgReading(NOW, 0, 250),
    Bolus(NOW, 0, "extended", 3_500, 2 * 3_600_000),
    Bolus(NOW, 0, "automated", 50),
    Basal(NOW, 0, "suspend", 0, 30 * MIN),
    Carbs(NOW, 0, 455),
    DeviceSettings(NOW, 0, ((0, 800), (360, 1000)), ((0, 100),), ((0, 45),), ((0, 100, 120),)),
    Note(NOW, 0, "ate pizza\nfelt fine"),
    # With an annex (the source document's other fields, as canonical JSON text).
    CgmReading(NOW, 60, 123, "Flat", ns='{"c":"entries","f":{"delta":-1.5,"noise":1}}'),
    Bolus(NOW, 0, "normal", 4_250, ns='{"f":{"insulin":4.25,"pumpId":450982}}'),
    Carbs(NOW, 0, 520, ns='{"f":{"absorptionTime":180,"foodType":"🌮"}}'),
    DeviceSettings(NOW, 0, ((0, 800),), ((0, 100),), ((0, 45),), ((0, 100, 120),),
                   ns='{"f":{"store":{"Weekday":{"dia":5}}}}'),
    Note(NOW, 0, "Site Change", ns='{"o":["notes"]}'),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_value_round_trip(record: Any) -> None:
    value = codec.decode(codec.encode(record.to_value()))
    assert record_from_value(value) == record
    assert type(record).from_value(value) == record


@pytest.mark.parametrize(
    "value",
    [
        {"type": "cgm", "time_ms": NOW, "tz_offset_min": 0, "mgdl": 600, "trend": None},
        {"type": "cgm", "time_ms": NOW, "tz_offset_min": 0, "mgdl": 100},
        {"type": "cgm", "time_ms": NOW, "tz_offset_min": 0, "mgdl": "100", "trend": None},
        {"type": "cgm", "time_ms": NOW, "tz_offset_min": 900, "mgdl": 100, "trend": None},
        {"type": "dose", "time_ms": NOW},
        [1, 2],
    ],
)
def test_from_value_refuses(value: object) -> None:
    with pytest.raises(InputError):
        record_from_value(value)


def test_a_record_without_an_annex_keeps_its_encoding() -> None:
    """Records stored before annexes existed (and every record without one) encode as they
    always did: no ``ns`` key, so leaves, roots and ciphertext hashes do not change."""
    rec = CgmReading(NOW, 60, 123, "FortyFiveUp")
    assert codec.encode(rec.to_value()) == codec.encode(
        {"type": "cgm", "time_ms": NOW, "tz_offset_min": 60, "mgdl": 123, "trend": "FortyFiveUp"})
    assert "ns" not in Bolus(NOW, 0, "normal", 50).to_value()
    assert "ns" not in RECORDS[7].to_value()  # DeviceSettings writes its value by hand


@pytest.mark.parametrize(
    ("annex", "reason"),
    [
        (None, "stored without 'ns'"),
        (5, "must be text"),
        ('{"b":1,"a":2}', "not canonical"),
        ('{"a": 1}', "not canonical"),
        ('{"a":"\\u00e9"}', "not canonical"),
        ("[1,2]", "not a JSON object"),
        ('{"a":NaN}', "not JSON text"),
        ('{"a":1e400}', "out of range"),
        ('{"a":1', "not JSON text"),
        ("{}" + " " * 70_000, "characters"),
    ],
)
def test_from_value_refuses_a_bad_annex(annex: object, reason: str) -> None:
    value = {"type": "smbg", "time_ms": NOW, "tz_offset_min": 0, "mgdl": 100, "ns": annex}
    with pytest.raises(InputError) as caught:
        record_from_value(value)
    assert reason in caught.value.message


def test_parse_batch_keeps_an_items_annex() -> None:
    batch = parse_batch("carbs", [{"time": NOW, "grams": 12.5, "ns": '{"k":"x"}'}], now_ms=NOW)
    assert batch.items == (Carbs(NOW, 0, 125, ns='{"k":"x"}'),)
    with pytest.raises(MalformedError) as caught:
        parse_batch("carbs", [{"time": NOW, "grams": 1, "ns": "{ }"}], now_ms=NOW)
    assert caught.value.message.startswith("carbs item #0 at ")


def test_batch_round_trip() -> None:
    batch = parse_batch("cgm", good_cgm(5), now_ms=NOW)
    assert Batch.from_value(codec.decode(codec.encode(batch.to_value()))) == batch
    tampered = batch.to_value()
    tampered["count"] = 4
    with pytest.raises(MalformedError):
        Batch.from_value(tampered)


def test_jsonl() -> None:
    lines = [
        "# a comment",
        json.dumps(
            {
                "stream": "cgm",
                "time": "2026-11-01T08:05:00+01:00",
                "value": 123,
                "units": "mg/dL",
                "trend": "Flat",
            }
        ),
        json.dumps({"stream": "cgm", "time": NOW - 5 * MIN, "value": 6.5, "units": "mmol/L"}),
        "",
        json.dumps({"stream": "carbs", "time": NOW - 10 * MIN, "grams": 45}),
        json.dumps(
            {
                "stream": "insulin",
                "time": NOW - 10 * MIN,
                "type": "bolus",
                "kind": "normal",
                "insulin": 4.5,
            }
        ),
    ]
    batches = parse_jsonl(lines, NOW)
    assert [b.stream for b in batches] == ["cgm", "carbs", "insulin"]
    assert [r.mgdl for r in batches[0].items] == [117, 123]  # type: ignore[union-attr]
    assert batches[0].items[1].tz_offset_min == 60


@pytest.mark.parametrize(
    ("lines", "error", "reason"),
    [
        (["{not json"], MalformedError, "line 1: not valid JSON"),
        (["[1]"], MalformedError, "line 1: must be a JSON object"),
        (['{"time": 1}'], MalformedError, "line 1: missing or unknown stream"),
        (
            ["", json.dumps({"stream": "cgm", "time": NOW, "value": 20})],
            OutOfRangeError,
            "line 2 (cgm) at 2026-11-01T07:00:00+00:00: glucose 20 mg/dL is below",
        ),
    ],
)
def test_jsonl_refusals(lines: list[str], error: type[InputError], reason: str) -> None:
    with pytest.raises(error) as caught:
        parse_jsonl(lines, NOW)
    assert reason in caught.value.message


def test_a_received_batch_over_the_limit_is_refused_before_its_items_are_read() -> None:
    t0 = 1_700_000_000_000
    items = tuple(CgmReading(t0 + i * 60_000, 0, 120) for i in range(MAX_BATCH + 1))
    value = Batch("cgm", items, items[0].time_ms, items[-1].time_ms, len(items)).to_value()
    with pytest.raises(MalformedError, match=f"limit is {MAX_BATCH}"):
        Batch.from_value(value)
    value["items"] = value["items"][:MAX_BATCH]
    value.update(end_ms=items[MAX_BATCH - 1].time_ms, count=MAX_BATCH)
    assert Batch.from_value(value).count == MAX_BATCH
