"""Every user path of the README, on a fresh folder, as a person types it: real processes only.

No Python call between the commands: each step is ``python -m glucoledger ...`` in a
subprocess, and what one step prints (a grant id, a reading's time) is what the next step is
given, as a person would copy it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HOUR_MS = 3_600_000


def gl(*args: str, data: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200",
           "GLUCOLEDGER_DATA": str(data), "TZ": "Europe/Paris"}
    return subprocess.run([sys.executable, "-m", "glucoledger", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False,
                          input=stdin if stdin is not None else "")


def ok(*args: str, data: Path) -> str:
    r = gl(*args, data=data)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stdout


def test_a_patient_from_creation_to_verified_erasure(tmp_path: Path) -> None:
    d = tmp_path / "clinic"
    ok("init", data=d)
    ok("account", "create", "rosa", "--kind", "trusted", data=d)
    ok("account", "create", "alice", "--kind", "patient", "--trusted", "rosa", data=d)
    ok("account", "create", "dr-lee", "--kind", "clinician", data=d)
    accounts = json.loads(ok("account", "list", "--json", data=d))
    kinds = {a["name"]: a["kind"] for a in accounts}
    assert kinds.items() >= {"alice": "patient", "rosa": "trusted",
                             "dr-lee": "clinician"}.items()

    # Her sensor: registered, bound to her, listed with her name.
    ok("device", "register", "--serial", "CGM-0001", "--model", "CGM-G7", data=d)
    ok("device", "bind", "--serial", "CGM-0001", "--patient", "alice", data=d)
    devices = json.loads(ok("device", "list", "--patient", "alice", "--json", data=d))
    assert [(x["serial"], x["patient"], x["status"]) for x in devices] == [
        ("CGM-0001", "alice", "active")]

    # Six hours of readings, every 5 minutes, ending 25 hours ago: before her last local
    # midnight, so inside "the last 14 days" of a summary (14 whole local days, ending there)
    end = int(time.time() * 1000) // 300_000 * 300_000 - 25 * HOUR_MS + 437  # not a round second
    times = [end - k * 300_000 for k in range(72)][::-1]
    lines = [json.dumps({"stream": "cgm", "time": t, "value": 100 + (i % 40)})
             for i, t in enumerate(times)]
    src = tmp_path / "sensor.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = ok("ingest", str(src), "--patient", "alice", "--device", "CGM-0001", data=d)
    assert "72 readings of alice from CGM-0001" in out.replace("\n", " ")

    # Consent, then reads in every format.
    out = ok("grant", "--patient", "alice", "--to", "dr-lee", "--view", "raw", "--last-days",
             "30", data=d)
    assert "alice granted dr-lee raw access" in out
    listed = json.loads(ok("grants", "--patient", "alice", "--json", data=d))
    assert [(g["to"], g["view"], g["status"]) for g in listed] == [("dr-lee", "raw", "active")]
    grant_id = listed[0]["grant"]
    assert grant_id in out  # what `grant` prints is what `grants` lists

    raw = tmp_path / "raw.json"
    ok("read", "--as", "dr-lee", "--patient", "alice", "--view", "raw", "--format", "json",
       "--out", str(raw), data=d)
    records = json.loads(raw.read_text())
    assert [r["time_ms"] for r in records] == times
    assert [r["mgdl"] for r in records] == [100 + (i % 40) for i in range(72)]
    summary = ok("read", "--as", "dr-lee", "--patient", "alice", "--view", "summary",
                 "--format", "csv", data=d)
    (row,) = list(csv.DictReader(io.StringIO(summary)))
    assert float(row["time in range %"]) == 100.0
    table = ok("read", "--as", "dr-lee", "--patient", "alice", "--view", "raw", data=d)
    assert "72 readings of alice" in table

    # Exact times, in local ISO (Paris), then one reading proven by its ISO time.
    lo = datetime.fromtimestamp(times[10] / 1000, UTC).isoformat()
    hi = datetime.fromtimestamp((times[12] + 1) / 1000, UTC).isoformat()
    listing = json.loads(ok("readings", "--patient", "alice", "--from", lo, "--to", hi,
                            "--format", "json", data=d))
    assert [r["time_ms"] for r in listing] == times[10:13]
    iso = listing[1]["time"]
    assert iso.endswith(("+01:00", "+02:00"))  # local time of Europe/Paris, with its offset
    assert round(datetime.fromisoformat(iso).timestamp() * 1000) == times[11]
    proof = tmp_path / "proof.json"
    ok("prove-reading", "--patient", "alice", "--time", iso, "--out", str(proof), data=d)
    vkey = ok("checkpoint", "--vkey", data=d).strip()
    out = ok("verify-proof", str(proof), "--node-key", vkey, data=d)
    assert "valid" in out and str(100 + 11) in out
    proof2 = tmp_path / "proof2.json"
    ok("prove-reading", "--patient", "alice", "--time", str(times[11]), "--out", str(proof2),
       data=d)
    assert proof2.read_bytes() == proof.read_bytes()

    # The clinician's report and FHIR export, through the grant.
    report = tmp_path / "alice.html"
    ok("report", "--patient", "alice", "--as", "dr-lee", "--days", "14", "--out", str(report),
       data=d)
    assert "<html" in report.read_text().lower()
    fhir = tmp_path / "alice.fhir.json"
    ok("export-fhir", "alice", "--as", "dr-lee", "--out", str(fhir), data=d)
    bundle = json.loads(fhir.read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
    # Times to the millisecond: every reading's effectiveDateTime is its exact time.
    effective = sorted(
        datetime.fromisoformat(e["resource"]["effectiveDateTime"]).timestamp() * 1000
        for e in bundle["entry"] if "effectiveDateTime" in e["resource"])
    assert [round(t) for t in effective] == times
    assert all(e["resource"]["effectiveDateTime"].count(".") == 1 for e in bundle["entry"]
               if "effectiveDateTime" in e["resource"])

    # Revoke by a short unique prefix, as git does; the next read is denied (exit 4).
    out = ok("revoke", "--patient", "alice", "--grant", grant_id[:6], data=d)
    assert "revoked grant" in out and "dr-lee" in out
    r = gl("read", "--as", "dr-lee", "--patient", "alice", "--view", "raw", data=d)
    assert r.returncode == 4 and "Traceback" not in r.stderr, r.stderr
    trail = json.loads(ok("audit", "--patient", "alice", "--json", data=d))
    assert any(e["who"] == "dr-lee" and e["outcome"].startswith("denied") for e in trail)
    assert any(e["who"] == "dr-lee" and e["outcome"] == "granted" for e in trail)

    # Erasure asks; without a terminal it refuses and changes nothing.
    r = gl("erase", "--patient", "alice", "--stream", "cgm", data=d)
    assert r.returncode == 2 and "--yes" in r.stderr, r.stderr
    assert "72" in ok("readings", "--patient", "alice", "--from", str(times[0]), "--to",
                      str(end + 1), data=d)
    out = ok("erase", "--patient", "alice", "--stream", "cgm", "--yes", data=d)
    assert "erased 1 batch of alice's cgm" in out
    listing = json.loads(ok("readings", "--patient", "alice", "--from", str(times[0]), "--to",
                            str(end + 1), "--format", "json", data=d))
    assert listing == []

    # Her sensor is lost: she revokes it; it is listed as revoked and its uploads refused.
    out = ok("device", "revoke", "--serial", "CGM-0001", "--patient", "alice", data=d)
    assert "revoked CGM-0001" in out
    devices = json.loads(ok("device", "list", "--patient", "alice", "--json", data=d))
    assert [(x["serial"], x["status"]) for x in devices] == [("CGM-0001", "revoked")]
    r = gl("ingest", str(src), "--patient", "alice", "--device", "CGM-0001", data=d)
    assert r.returncode not in (0, 2) and "Traceback" not in r.stderr, r.stderr
    assert "CGM-0001" in r.stderr and "revoked" in r.stderr, r.stderr

    # The operator's end of day: a checkpoint kept, and everything verified against it.
    kept = tmp_path / "kept.txt"
    ok("checkpoint", "--out", str(kept), data=d)
    out = ok("verify", "--from-checkpoint", str(kept), data=d)
    assert "OK" in out and "consistent with your checkpoint" in out


def test_key_recovery_from_the_command_line(tmp_path: Path) -> None:
    d = tmp_path / "clinic"
    ok("init", data=d)
    ok("account", "create", "rosa", "--kind", "trusted", data=d)
    ok("account", "create", "dr-lee", "--kind", "clinician", data=d)
    ok("account", "create", "alice", "--kind", "patient", "--trusted", "rosa", data=d)
    before = ok("account", "show", "alice", data=d)
    # The wrong cosigner is refused, and nothing changes (no key replaced in the wallet).
    r = gl("account", "recover", "--patient", "alice", "--trusted", "dr-lee", data=d)
    assert r.returncode not in (0, 2) and "Traceback" not in r.stderr, r.stderr
    assert ok("account", "show", "alice", data=d) == before
    out = ok("account", "recover", "--patient", "alice", "--trusted", "rosa", "--lost", "2",
             data=d)
    assert "key 2 of alice replaced" in out
    after = ok("account", "show", "alice", data=d)
    assert after != before
    # Key 1 (kept) still signs for her: a grant goes through.
    ok("grant", "--patient", "alice", "--to", "dr-lee", data=d)


def test_erase_asks_on_a_terminal_and_only_the_word_goes_on(tmp_path: Path) -> None:
    import pty

    d = tmp_path / "clinic"
    ok("init", data=d)
    ok("account", "create", "rosa", "--kind", "trusted", data=d)
    ok("account", "create", "alice", "--kind", "patient", "--trusted", "rosa", data=d)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GLUCOLEDGER_DATA": str(d)}

    def erase_typing(answer: str) -> subprocess.CompletedProcess[str]:
        master, slave = pty.openpty()
        try:
            os.write(master, answer.encode())
            return subprocess.run([sys.executable, "-m", "glucoledger", "erase", "--patient",
                                   "alice", "--stream", "cgm"], stdin=slave,
                                  capture_output=True, text=True, env=env, timeout=300,
                                  check=False)
        finally:
            os.close(master)
            os.close(slave)

    r = erase_typing("yes\n")
    assert r.returncode == 2 and "Type erase to go on" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr
    trail = json.loads(ok("audit", "--patient", "alice", "--json", data=d))
    assert not [e for e in trail if e["event"] == "erasure"]
    r = erase_typing("erase\n")
    assert r.returncode == 0 and "erased 0 batches of alice's cgm" in r.stdout, r.stderr
    trail = json.loads(ok("audit", "--patient", "alice", "--json", data=d))
    assert [e["who"] for e in trail if e["event"] == "erasure"] == ["alice"]
