"""Alerts on incoming CGM readings: detect episodes, raise ``alert`` transactions, notify.

Episodes (``detect_episodes``, pure), after the International Consensus on CGM (Danne et al.,
Diabetes Care 2017) and on Time in Range (Battelino et al. 2019): an episode of a rule
("below 70 mg/dL", ...) starts when readings meet the rule for at least the rule's minutes
(15 by default) without a gap longer than that; it ends when readings fail the rule for at
least the same minutes. One alert per episode, at its start.

``AlertService.scan`` decrypts the patient's newly committed CGM batches (once each: the
``scanned`` table), runs her rules (state/alerts.py: defaults or hers), submits one ``alert``
transaction per new episode from the node's account, and for each accepted alert writes one
notification per recipient the machine recorded (grantees whose grant includes alerts) into
``<data>/outbox.db``, a table the HTTP server polls (``pending`` / ``mark_delivered``). The
exact time and glucose value live only there; the ledger holds the rule and the hour. A
recipient who reads her CGM under summary grants only (``state.consent.summary_only``) gets
what the ledger holds and no more: the rule and the hour, no value (``mgdl`` None), since a
value and a minute would be a raw reading her grant does not release.

``set_rules`` / ``rules`` are the patient's side: her ``alert.rules`` transaction (signed with
her custodial keys, sent through ``Node.send``) and the rules in force (hers or the defaults).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import codec, sqlitetx
from ..crypto import PrivateKey, tagged_hash
from ..glucose.readings import CgmReading
from ..ledger.tx import Transaction
from ..state.accounts_model import account_id, single_key_policy
from ..state.alerts import HOUR_MS, alert_key, rules_of
from ..state.consent import summary_only
from ..vault.store import Vault
from .service import Node

__all__ = ["AlertService", "Episode", "Notification", "detect_episodes", "rules", "set_rules"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, alert BLOB NOT NULL,
    recipient BLOB NOT NULL, patient BLOB NOT NULL, stream TEXT NOT NULL, rule TEXT NOT NULL,
    start_ms INTEGER NOT NULL, mgdl INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_recipient ON outbox(recipient, delivered);
CREATE TABLE IF NOT EXISTS scanned (ct BLOB PRIMARY KEY) WITHOUT ROWID;
"""
#: ``outbox.mgdl`` of a notification to a summary-only recipient: no value is stored (no CGM
#: reading is 0 mg/dL), and its ``start_ms`` is the hour, as on the ledger.
_WITHHELD = 0


def set_rules(node: Node, patient: bytes, keys: Sequence[PrivateKey],
              new_rules: list[dict[str, Any]] | None) -> None:
    """Replace the patient's alert rules (None: the consensus defaults). Raises RejectedError
    (``malformed`` naming the bad rule, ``unknown_account`` ...)."""
    node.send("alert.rules", {"rules": new_rules}, patient, keys)


def rules(node: Node, patient: bytes) -> list[dict[str, Any]]:
    """The rules in force for the patient: hers, or the defaults."""
    return rules_of(node.state, patient)


@dataclass(frozen=True, slots=True)
class Episode:
    rule: str
    start_ms: int
    end_ms: int | None  # None: still going at the last reading
    extreme_mgdl: int  # the lowest (below rules) or highest (above rules) reading


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    alert: bytes
    recipient: bytes
    patient: bytes
    rule: str
    start_ms: int  # the episode's start; its hour for a summary-only recipient
    mgdl: int | None  # the lowest or highest reading; None for a summary-only recipient


def _meets(rule: dict[str, Any], mgdl: int) -> bool:
    bound = int(rule["mgdl"])
    return mgdl < bound if rule["op"] == "below" else mgdl > bound


def detect_episodes(readings: Iterable[CgmReading], rules: Sequence[dict[str, Any]]
                    ) -> list[Episode]:
    """Episodes of each rule in time-sorted ``readings`` (see the module docstring)."""
    ordered = sorted(readings, key=lambda r: r.time_ms)
    out: list[Episode] = []
    for rule in rules:
        span = rule["minutes"] * 60_000
        low = rule["op"] == "below"
        run_start: int | None = None
        out_since: int | None = None
        last_t: int | None = None
        in_episode, ep_start, extreme = False, 0, 0
        for r in ordered:
            if last_t is not None and r.time_ms - last_t > span:  # a data gap resets
                if in_episode:
                    out.append(Episode(rule["name"], ep_start, last_t, extreme))
                in_episode, run_start, out_since = False, None, None
            last_t = r.time_ms
            hit = _meets(rule, r.mgdl)
            if in_episode:
                if hit:
                    out_since = None
                    extreme = min(extreme, r.mgdl) if low else max(extreme, r.mgdl)
                else:
                    out_since = r.time_ms if out_since is None else out_since
                    if r.time_ms - out_since >= span:
                        out.append(Episode(rule["name"], ep_start, out_since, extreme))
                        in_episode, run_start = False, None
                continue
            if not hit:
                run_start = None
                continue
            if run_start is None:
                run_start, extreme = r.time_ms, r.mgdl
            extreme = min(extreme, r.mgdl) if low else max(extreme, r.mgdl)
            if r.time_ms - run_start >= span:
                in_episode, ep_start, out_since = True, run_start, None
        if in_episode:
            out.append(Episode(rule["name"], ep_start, None, extreme))
    out.sort(key=lambda e: (e.start_ms, e.rule))
    return out


class AlertService:
    def __init__(self, node: Node, vault: Vault) -> None:
        self.node = node
        self.vault = vault
        self.account = account_id("node", single_key_policy(node.node_key.public))
        self.path = node.data_dir / "outbox.db"
        self.db = sqlitetx.connect(self.path, schema="PRAGMA secure_delete=ON;\n" + _SCHEMA,
                                   what="the notification outbox")

    def close(self) -> None:
        self.db.close()

    def scan(self, patient: bytes) -> list[Notification]:
        """Run the patient's rules over her new CGM batches; return the notifications made."""
        done = {bytes(r[0]) for r in self.db.execute("SELECT ct FROM scanned")}
        rows = [r for r in self.vault.batches(patient, "cgm") if r.ct not in done]
        if not rows:
            return []
        readings: list[CgmReading] = []
        for row in rows:
            _salt, batch = self.vault.open(row)
            readings.extend(r for r in batch.items if isinstance(r, CgmReading))
        episodes = detect_episodes(readings, rules_of(self.node.state, patient))
        envelopes, ids = [], []
        for ep in episodes:
            alert_id = tagged_hash("alert-id", codec.encode(
                {"patient": patient, "rule": ep.rule, "start": ep.start_ms}))
            if alert_key(alert_id) in self.node.state:
                continue
            body = {"patient": patient, "rule": ep.rule,
                    "hour": ep.start_ms - ep.start_ms % HOUR_MS, "id": alert_id}
            envelopes.append(self.node.trust.sign_tx(
                Transaction(self.node.chain, "alert", body, self.account, 0),
                [self.node.node_key]).raw)
            ids.append((alert_id, ep))
        receipts = self.node.submit(envelopes) if envelopes else []
        made: list[tuple[Any, ...]] = []
        for (alert_id, ep), receipt in zip(ids, receipts, strict=True):
            if not receipt.ok:
                continue
            record = self.node.state.get(alert_key(alert_id))
            now = self.node.now_ms()
            for who in record["recipients"]:
                if summary_only(self.node.state, patient, who, now):
                    made.append((alert_id, who, patient, "cgm", ep.rule, record["hour"],
                                 _WITHHELD))
                else:
                    made.append((alert_id, who, patient, "cgm", ep.rule, ep.start_ms,
                                 ep.extreme_mgdl))
        with sqlitetx.transaction(self.db, self.path, "queueing alert notifications") as db:
            db.executemany("INSERT INTO outbox (alert, recipient, patient, stream, rule, "
                           "start_ms, mgdl) VALUES (?, ?, ?, ?, ?, ?, ?)", made)
            db.executemany("INSERT OR IGNORE INTO scanned VALUES (?)", [(r.ct,) for r in rows])
        return [n for n in self.pending() if any(n.alert == m[0] for m in made)]

    def pending(self, recipient: bytes | None = None) -> list[Notification]:
        """Undelivered notifications (for one recipient, or all), oldest first."""
        sql = ("SELECT id, alert, recipient, patient, rule, start_ms, mgdl FROM outbox "
               "WHERE delivered = 0")
        args: tuple[Any, ...] = ()
        if recipient is not None:
            sql += " AND recipient = ?"
            args = (recipient,)
        return [Notification(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3]), r[4], r[5],
                             None if r[6] == _WITHHELD else r[6])
                for r in self.db.execute(sql + " ORDER BY id", args)]

    def mark_delivered(self, ids: Sequence[int]) -> None:
        with sqlitetx.transaction(self.db, self.path, "marking notifications delivered") as db:
            db.executemany("UPDATE outbox SET delivered = 1 WHERE id = ?", [(i,) for i in ids])
