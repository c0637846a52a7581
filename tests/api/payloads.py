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


# --- the round-trip table: one real shape per uploader and document kind ---------------------
# Sources: xDrip+ NightscoutUploader (populateV1APIBGEntry, meter and calibration records:
# local time "yyyy-MM-dd'T'HH:mm:ss.SSSZ", no utcOffset); Loop NightscoutServiceKit
# (TempBasalNightscoutTreatment, CarbCorrectionNightscoutTreatment with absorptionTime in
# minutes, OverrideTreatment with correctionRange, "Z" times without milliseconds);
# AndroidAPS NSClient v1 (Bolus/Carbs/TherapyEvent/TemporaryTarget/ProfileSwitch toJson:
# date, utcOffset, isValid, pumpId/pumpType/pumpSerial, mmol BG checks, SMB amounts as
# float-widened doubles); a Nightscout Careportal note; Loop and AndroidAPS devicestatus;
# an AndroidAPS profile in mmol/L.


def local(ms: int, offset_min: int) -> str:
    """xDrip+'s local time text: 2026-11-01T08:05:00.000+0100."""
    from datetime import timedelta, timezone

    moment = datetime.fromtimestamp(ms / 1000, timezone(timedelta(minutes=offset_min)))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + moment.strftime("%z")


def loop_time(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def xdrip_local_entries(now_ms: int) -> list[dict[str, Any]]:
    t = now_ms - now_ms % 1000 - 2_400_000
    dev = "xDrip-DexcomG6"
    return [
        {"device": dev, "date": t, "dateString": local(t, 60), "sgv": 143, "delta": -1.527,
         "direction": "Flat", "type": "sgv", "filtered": 141176.47, "unfiltered": 139882,
         "rssi": 100, "noise": 1, "sysTime": local(t, 60)},
        {"device": dev, "date": t + 300_000, "dateString": local(t + 300_000, 60), "sgv": 39,
         "delta": 0, "direction": "NONE", "type": "sgv", "filtered": 0, "unfiltered": 0,
         "rssi": 100, "noise": 4, "sysTime": local(t + 300_000, 60)},
        {"device": dev, "type": "mbg", "date": t + 60_000, "dateString": local(t + 60_000, 60),
         "mbg": 151, "sysTime": local(t + 60_000, 60)},
        {"device": dev, "type": "cal", "date": t + 61_000,
         "dateString": local(t + 61_000, 60), "slope": 1000.7541, "intercept": -4521.3,
         "scale": 1, "sysTime": local(t + 61_000, 60)},
    ]


def loop_batch(now_ms: int) -> list[dict[str, Any]]:
    t = now_ms - now_ms % 1000 - 3_000_000
    return [
        {"eventType": "Temp Basal", "timestamp": loop_time(t), "created_at": loop_time(t),
         "enteredBy": "loop://iPhone", "temp": "absolute", "rate": 1.2, "absolute": 1.2,
         "duration": 30, "amount": 0.6, "reason": "", "automatic": True,
         "insulinType": "novolog", "syncIdentifier": "54656d70426173616c20312e32"},
        {"eventType": "Carb Correction", "timestamp": loop_time(t + 60_000),
         "created_at": loop_time(t + 60_000), "enteredBy": "loop://iPhone", "carbs": 45,
         "absorptionTime": 180, "foodType": "🌮", "userEnteredAt": loop_time(t + 60_000),
         "id": "2C5E3B7A-9D1F-4B86-A1C3-0F6E2D9B4A57",
         "syncIdentifier": "2C5E3B7A-9D1F-4B86-A1C3-0F6E2D9B4A57"},
        {"eventType": "Temporary Override", "timestamp": loop_time(t + 120_000),
         "created_at": loop_time(t + 120_000), "enteredBy": "loop://iPhone",
         "reason": "Running", "reasonDisplay": "🏃 Running", "duration": 3600,
         "durationType": "finite", "correctionRange": [140, 160],
         "insulinNeedsScaleFactor": 0.5,
         "syncIdentifier": "D0E5C0B6-1C1D-4F52-9D2F-7B0A6A2C9E11"},
    ]


def aaps_batch(now_ms: int) -> list[dict[str, Any]]:
    t = now_ms - now_ms % 1000 - 1_800_000
    common = {"isValid": True, "utcOffset": 60, "app": "AAPS",
              "enteredBy": "openaps://AndroidAPS"}
    return [
        {"eventType": "Meal Bolus", "insulin": 4.25, "carbs": 52, "created_at": iso(t),
         "date": t, "type": "NORMAL", "isSMB": False, "pumpId": 450982,
         "pumpType": "ACCU_CHEK_INSIGHT", "pumpSerial": "33013206",
         "notes": "pasta\r\nand salad", **common},
        {"eventType": "Correction Bolus", "insulin": 0.15000000596046448, "type": "SMB",
         "isSMB": True, "created_at": iso(t + 300_000), "date": t + 300_000,
         "pumpId": 450983, "pumpType": "ACCU_CHEK_INSIGHT", "pumpSerial": "33013206",
         **common},
        {"eventType": "Temp Basal", "created_at": iso(t + 301_000), "date": t + 301_000,
         "duration": 30, "durationInMilliseconds": 1_800_000, "isAbsolute": False,
         "percent": -30, "rate": 0.7, "type": "NORMAL", "pumpId": 450984,
         "pumpType": "ACCU_CHEK_INSIGHT", "pumpSerial": "33013206", **common},
        {"eventType": "BG Check", "glucose": 5.6, "glucoseType": "Finger", "units": "mmol",
         "created_at": iso(t + 302_000), "date": t + 302_000, **common},
        {"eventType": "Site Change", "created_at": iso(t + 303_000), "date": t + 303_000,
         "notes": "", "pumpId": 450985, **common},
        {"eventType": "Sensor Start", "created_at": iso(t + 304_000), "date": t + 304_000,
         **common},
        {"eventType": "Temporary Target", "duration": 60, "durationInMilliseconds": 3_600_000,
         "reason": "Activity", "targetBottom": 7.8, "targetTop": 7.8, "units": "mmol",
         "created_at": iso(t + 305_000), "date": t + 305_000, **common},
        {"eventType": "Profile Switch", "profile": "Weekday 90%",
         "originalProfileName": "Weekday", "profileJson": '{"dia":5,"units":"mmol"}',
         "timeshift": 0, "percentage": 90, "duration": 0, "originalDuration": 0,
         "created_at": iso(t + 306_000), "date": t + 306_000, **common},
    ]


def careportal_note(now_ms: int) -> dict[str, Any]:
    t = now_ms - now_ms % 1000 - 1_000_000
    return {"eventType": "Note", "notes": "Sensor warm-up\nfelt low at 3 am",
            "enteredBy": "mum", "created_at": iso(t), "utcOffset": -300}


def aaps_devicestatus(now_ms: int) -> dict[str, Any]:
    t = now_ms - 60_000
    return {"device": "openaps://samsung SM-G970F", "created_at": iso(t), "date": t,
            "uploaderBattery": 71, "isCharging": False, "app": "AAPS",
            "pump": {"clock": iso(t), "reservoir": 123.4, "battery": {"percent": 75},
                     "status": {"status": "normal", "timestamp": iso(t)},
                     "extended": {"Version": "3.2.0.4", "ActiveProfile": "Weekday",
                                  "BaseBasalRate": 0.85}},
            "openaps": {"suggested": {"temp": "absolute", "bg": 143, "tick": "-2",
                                      "eventualBG": 118, "targetBG": 100,
                                      "insulinReq": 0, "deliverAt": iso(t),
                                      "sensitivityRatio": 1.0, "COB": 0, "IOB": 1.234,
                                      "reason": "COB: 0, Dev: -13, BGI: -2.1, ISF: 2.8",
                                      "predBGs": {"IOB": list(range(143, 95, -1)),
                                                  "ZT": list(range(143, 71, -2))},
                                      "timestamp": iso(t)},
                        "iob": {"iob": 1.234, "basaliob": -0.12, "activity": 0.0123,
                                "time": iso(t)}},
            "uploader": {"battery": 71}, "configuration": {"insulin": 5, "smoothing": "EXP"}}


def aaps_profile(now_ms: int) -> dict[str, Any]:
    t = now_ms - now_ms % 1000 - 3_600_000

    def sched(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
        return [{"time": h, "timeAsSeconds": int(h[:2]) * 3600 + int(h[3:]) * 60, "value": v}
                for h, v in pairs]

    weekday = {"dia": 5, "carbratio": sched(("00:00", 10), ("06:00", 8.5)),
               "sens": sched(("00:00", 2.8)), "timezone": "Europe/Vienna",
               "basal": sched(("00:00", 0.85), ("06:00", 1.05), ("22:00", 0.7)),
               "target_low": sched(("00:00", 5.5)), "target_high": sched(("00:00", 6.5)),
               "units": "mmol"}
    return {"defaultProfile": "Weekday", "date": t, "created_at": iso(t),
            "startDate": iso(t), "mills": t, "units": "mmol", "enteredBy": "AndroidAPS",
            "store": {"Weekday": weekday, "Sick": dict(weekday, dia=6)}}


#: Real uploader payloads by collection: each must read back as it was sent.
ROUND_TRIP = [
    ("entries", xdrip_sgv), ("entries", xdrip_local_entries),
    ("treatments", loop_treatments), ("treatments", loop_batch),
    ("treatments", aaps_bolus), ("treatments", aaps_batch),
    ("treatments", careportal_note),
    ("devicestatus", loop_devicestatus), ("devicestatus", aaps_devicestatus),
    ("profile", aaps_profile),
]
