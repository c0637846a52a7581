"""Real uploader payloads (shapes as xDrip+, Loop and AndroidAPS send them to Nightscout v1).

Field sets follow the uploaders' sources: xDrip+ ``NightscoutUploader.populateV1APIBGEntry``
(device, date, dateString, sgv, direction, type, filtered, unfiltered, rssi, noise,
sysTime, utcOffset); Loop's ``NightscoutUploader`` treatments (Temp Basal with temp/rate/
absolute/duration/amount, Correction Bolus with programmed/unabsorbed/type/automatic,
Carb Correction with absorptionTime/foodType, syncIdentifier, insulinType); AndroidAPS
``toJson`` for a bolus (pumpId, pumpType, pumpSerial, isSMB, isValid, type NORMAL); a Loop
devicestatus. Times are relative to ``now_ms`` so the clock-skew check passes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def xdrip_sgv(now_ms: int, n: int = 3) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        t = now_ms - (n - i) * 300_000
        out.append({"device": "xDrip-DexcomG6", "date": t, "dateString": iso(t),
                    "sgv": 110 + 4 * i, "delta": 4.0, "direction": "FortyFiveUp", "type": "sgv",
                    "filtered": 127000, "unfiltered": 127000, "rssi": 100, "noise": 1,
                    "sysTime": iso(t), "utcOffset": 60})
    return out


def loop_treatments(now_ms: int) -> list[dict[str, Any]]:
    t1, t2, t3 = now_ms - 1_800_000, now_ms - 1_500_000, now_ms - 1_200_000
    return [
        {"eventType": "Temp Basal", "timestamp": iso(t1), "created_at": iso(t1),
         "enteredBy": "loop://iPhone", "temp": "absolute", "rate": 0.45, "absolute": 0.45,
         "duration": 30, "amount": 0.225, "reason": "", "automatic": True,
         "insulinType": "humalog", "syncIdentifier": "4d2f7a6c1b0e4c5d"},
        {"eventType": "Correction Bolus", "timestamp": iso(t2), "created_at": iso(t2),
         "enteredBy": "loop://iPhone", "insulin": 0.35, "programmed": 0.35, "unabsorbed": 0,
         "type": "normal", "duration": 0, "automatic": True, "insulinType": "humalog",
         "syncIdentifier": "7a8b9c0d1e2f3a4b"},
        {"eventType": "Carb Correction", "timestamp": iso(t3), "created_at": iso(t3),
         "enteredBy": "loop://iPhone", "carbs": 24, "absorptionTime": 180, "foodType": "🍕",
         "userEnteredAt": iso(t3), "syncIdentifier": "c0ffee00c0ffee00"},
    ]


def aaps_bolus(now_ms: int) -> dict[str, Any]:
    t = now_ms - 900_000
    return {"eventType": "Correction Bolus", "insulin": 1.5, "created_at": iso(t), "date": t,
            "type": "NORMAL", "isSMB": False, "isValid": True, "pumpId": 4148,
            "pumpType": "ACCU_CHEK_INSIGHT", "pumpSerial": "33013206",
            "enteredBy": "openaps://AndroidAPS", "app": "AAPS", "utcOffset": 60}


def loop_devicestatus(now_ms: int) -> dict[str, Any]:
    t = now_ms - 120_000
    return {"device": "loop://iPhone", "created_at": iso(t),
            "pump": {"clock": iso(t), "pumpID": "123456", "manufacturer": "Insulet",
                     "model": "Eros", "reservoir": 124.5, "suspended": False,
                     "bolusing": False, "battery": {"percent": 70}},
            "uploader": {"name": "iPhone", "timestamp": iso(t), "battery": 84},
            "loop": {"name": "Loop", "version": "3.2.3", "timestamp": iso(t),
                     "iob": {"timestamp": iso(t), "iob": 1.23},
                     "cob": {"timestamp": iso(t), "cob": 12},
                     "predicted": {"startDate": iso(t), "values": list(range(100, 172))},
                     "enacted": {"timestamp": iso(t), "rate": 0.45, "duration": 30,
                                 "received": True}}}
