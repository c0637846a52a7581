"""Alerts: the patient's rules on incoming CGM readings, and the ``alert`` contract.

Rules (``alertrules/<patient>``; the defaults until she sets her own, after the International
Consensus on Time in Range, Battelino et al. 2019, and Danne et al. 2017 for episodes)::

    urgent_low   below 54 mg/dL for at least 15 minutes   (level 2 hypoglycaemia)
    low          below 70 mg/dL for at least 15 minutes   (level 1 hypoglycaemia)
    high         above 250 mg/dL for at least 15 minutes  (level 2 hyperglycaemia)

- ``alert.rules`` (sent on the patient's account, action class ``default``): replace her
  rules (``{"rules": [...]}``) or restore the defaults (``{"rules": None}``).
- ``alert`` (sent by a node account with weight for its ``data`` class, like ``data.commit``;
  auth "self", no nonce: the alert id is the replay guard). Body ``{patient, rule, hour, id}``:
  which rule fired, the UTC hour the episode started in (as coarse as the batch ranges the
  ledger already holds; the exact time and values stay off the ledger, in the node's
  notification outbox), and an id the node derives from the episode (a second alert with
  the same id is refused as ``duplicate_alert``). The machine records the recipients: the
  grantees whose grant is active at the block's time, covers ``cgm`` and includes alerts.

Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import MalformedError
from ..ledger.tx import SignedTx
from .accounts_model import load_account
from .consent import grants_of
from .machine import Body, Context, authorize, body_field, register, require
from .store import State

__all__ = ["DEFAULT_RULES", "alert_key", "parse_rules", "recipients", "rules_of"]

DEFAULT_RULES: Final[tuple[dict[str, Any], ...]] = (
    {"name": "urgent_low", "op": "below", "mgdl": 54, "minutes": 15},
    {"name": "low", "op": "below", "mgdl": 70, "minutes": 15},
    {"name": "high", "op": "above", "mgdl": 250, "minutes": 15},
)
MAX_RULES: Final = 16
HOUR_MS: Final = 3_600_000


def alert_key(alert_id: bytes) -> str:
    return "alert/" + alert_id.hex()


def parse_rules(value: Any) -> list[dict[str, Any]]:
    """Validate a rule list. Raises MalformedError naming the bad rule."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RULES:
        raise MalformedError(f"rules is a list of 1 to {MAX_RULES} rules")
    names = set()
    for r in value:
        if not isinstance(r, dict) or set(r) != {"name", "op", "mgdl", "minutes"}:
            raise MalformedError("a rule is {name, op: below|above, mgdl, minutes}")
        if not isinstance(r["name"], str) or not 0 < len(r["name"]) <= 32:
            raise MalformedError("a rule's name is 1 to 32 characters")
        if r["op"] not in ("below", "above"):
            raise MalformedError(f"rule {r['name']}: op is 'below' or 'above'")
        if type(r["mgdl"]) is not int or not 39 <= r["mgdl"] <= 401:
            raise MalformedError(f"rule {r['name']}: mgdl is 39 to 401")
        if type(r["minutes"]) is not int or not 5 <= r["minutes"] <= 240:
            raise MalformedError(f"rule {r['name']}: minutes is 5 to 240")
        names.add(r["name"])
    if len(names) != len(value):
        raise MalformedError("two rules share a name")
    return [dict(r) for r in value]


def rules_of(state: State, patient: bytes) -> list[dict[str, Any]]:
    rules = state.get("alertrules/" + patient.hex())
    return [dict(r) for r in DEFAULT_RULES] if rules is None else list(rules)


def recipients(state: State, patient: bytes, time_ms: int) -> list[bytes]:
    """Grantees to notify: an active grant at ``time_ms`` covering cgm, with alerts."""
    out: list[bytes] = []
    for g in grants_of(state, patient):
        if g.alerts and g.active_at(time_ms) and "cgm" in g.streams and g.grantee not in out:
            out.append(g.grantee)
    return out


@dataclass(frozen=True, slots=True)
class AlertRules(Body):
    """The body of ``alert.rules``: ``{rules}`` (checked by ``parse_rules``) or None."""

    rules: Any

    @classmethod
    def parse(cls, body: dict[str, Any]) -> AlertRules:
        require(set(body) == {"rules"}, "malformed", "alert.rules takes {rules}")
        return cls(body["rules"])


@dataclass(frozen=True, slots=True)
class Alert(Body):
    """The body of ``alert``: patient, rule name, the whole UTC hour, a 32-byte id."""

    patient: bytes
    rule: str
    hour: int
    id: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Alert:
        require(set(body) == {"patient", "rule", "hour", "id"}, "malformed",
                "alert takes patient, rule, hour, id")
        patient = body_field(body, "patient", bytes)
        rule = body_field(body, "rule", str)
        hour = body_field(body, "hour", int)
        alert_id = body_field(body, "id", bytes)
        require(len(alert_id) == 32 and hour >= 0 and hour % HOUR_MS == 0, "malformed",
                "id is 32 bytes and hour a whole UTC hour (epoch ms)")
        return cls(patient, rule, hour, alert_id)


@register("alert.rules", body=AlertRules)
def _rules(state: State, stx: SignedTx, ctx: Context) -> None:
    """Set the patient's alert rules (or None: back to the defaults)."""
    acct = load_account(state, stx.tx.account)
    require(acct.kind == "patient", "not_patient", "alert rules belong to a patient")
    value = AlertRules.parse(stx.tx.body).rules
    if value is None:
        state.delete("alertrules/" + stx.tx.account.hex())
    else:
        state.put("alertrules/" + stx.tx.account.hex(), parse_rules(value))


@register("alert", action="data", auth="self", body=Alert)
def _alert(state: State, stx: SignedTx, ctx: Context) -> None:
    """A rule fired on incoming readings: record it and who is to be notified."""
    node = load_account(state, stx.tx.account)
    require(node.kind == "node", "not_node", "alerts are raised by a node account")
    authorize(node, stx, "data")
    b = Alert.parse(stx.tx.body)
    patient, rule, hour, alert_id = b.patient, b.rule, b.hour, b.id
    acct = load_account(state, patient)
    require(acct.kind == "patient", "not_patient", f"{patient.hex()[:16]} is not a patient")
    require(any(r["name"] == rule for r in rules_of(state, patient)), "unknown_rule",
            f"patient {patient.hex()[:16]} has no alert rule {rule!r}")
    require(alert_key(alert_id) not in state, "duplicate_alert",
            f"alert {alert_id.hex()[:16]} was already raised")
    state.put(alert_key(alert_id), {"patient": patient, "rule": rule, "hour": hour,
                                    "recipients": recipients(state, patient, ctx.time_ms),
                                    "height": ctx.height, "time": ctx.time_ms})
