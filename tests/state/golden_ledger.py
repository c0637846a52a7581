"""A deterministic ledger of every transaction type, its refusals included, for golden tests.

``EXAMPLES`` holds one well-shaped wire body per transaction type (``test_bodies`` checks it
covers ``REGISTRY`` exactly). ``transactions`` signs, for each type, the example and variants
of it (each field dropped, replaced by a value of another type, an extra field) with fixed
Ed25519 keys (RFC 8032 signatures are deterministic), from the account kind that sends the
type, over a small world (genesis, organization, node, patient, clinician, maker). ``replay``
applies them with ``state.apply`` and returns every result (code and message, both hashed
into blocks) and a digest of the final state.

The expected results in tests/testdata/state/golden_results.json were written by the code
*before* the typed bodies (main at a59f1a5), with this module::

    PYTHONPATH=<old checkout>/src python -m tests.state.golden_ledger > golden_results.json

so a test that replays them with today's code shows that old ledgers replay to the same
results and the same state. Only glucoledger APIs both versions share are used here.

Types added since (``gov.rotate_tls``, ``gov.upgrade``, ``zk.day``, ``zk.disclose``,
``zk.withdraw``) replay
after those, so
the old part's results and state stay comparable; their own results, in
tests/testdata/state/golden_added.json, were written by the code that introduced them
(``python -m tests.state.golden_ledger --added``) and pin their refusals from then on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glucoledger import state as _state  # noqa: F401 - registers the handlers
from glucoledger.crypto import PrivateKey
from glucoledger.ledger.tx import SignedTx, Transaction, sign
from glucoledger.state.accounts_model import account_id, account_key, single_key_policy
from glucoledger.state.machine import REGISTRY, Context, apply
from glucoledger.state.store import State
from glucoledger.state.zkdays import SEALED_TO_BYTES

CHAIN = "golden/bodies"
GOLDEN = Path(__file__).parent.parent / "testdata" / "state" / "golden_results.json"
T0 = 1_700_000_000_000
HOUR = 3_600_000


def _key(n: int) -> PrivateKey:
    return PrivateKey.from_private_bytes("ed25519", bytes([n]) * 32)


class World:
    """The accounts of the golden ledger (fixed keys, so fixed ids)."""

    def __init__(self) -> None:
        self.org, self.node, self.patient = _key(1), _key(2), _key(3)
        self.clinician, self.maker, self.device = _key(4), _key(5), _key(6)
        self.ids = {
            "organization": account_id("organization", single_key_policy(self.org.public)),
            "node": account_id("node", single_key_policy(self.node.public)),
            "patient": account_id("patient", single_key_policy(self.patient.public)),
            "clinician": account_id("clinician", single_key_policy(self.clinician.public)),
            "maker": account_id("maker", single_key_policy(self.maker.public)),
        }
        self.keys = {"organization": self.org, "node": self.node, "patient": self.patient,
                     "clinician": self.clinician, "maker": self.maker}


def examples(w: World) -> dict[str, dict[str, Any]]:
    """One well-shaped body per transaction type (most are still refused by the state)."""
    p, c = w.ids["patient"], w.ids["clinician"]
    h32, h33 = b"\x11" * 32, b"\x22" * 32
    dev = w.device.public.to_value()
    terms = {"protocol": "P-1", "ethics": "IRB-1", "purpose": "study", "streams": ["cgm"],
             "fields": ["age"], "period": {"from": T0, "to": T0 + 100 * HOUR},
             "forms": ["records", "aggregate"], "k": 2, "budget": 1_000_000,
             "retention_days": 30, "contact": "pi@example.org",
             "credit": {"rate": 1, "terms": "one per day"}}
    scope = {"streams": ["cgm"], "view": "raw", "window": {"last_days": 14},
             "valid_from": T0, "valid_until": T0 + 1000 * HOUR, "purpose": "treatment",
             "alerts": False}
    return {
        "chain.genesis": {"orgs": [{"name": "org2", "policy": single_key_policy(w.org.public),
                                    "node": w.node.public.to_value()}], "threshold": 1},
        "account.create": {"kind": "patient",
                           "policy": single_key_policy(_key(9).public), "salt": b"s"},
        "account.update": {"policy": single_key_policy(w.patient.public)},
        "access": {"request": {"patient": p, "streams": ["cgm"], "view": "raw"}},
        "erase": {"streams": ["cgm"], "from": T0, "to": T0 + HOUR},
        "device.register": {"serial": "SN-1", "model": "G7", "key": dev},
        "device.bind": {"device": h32},
        "device.unbind": {"device": h32},
        "device.revoke": {"device": h32},
        "vault.custody": {"x25519": h33},
        "alert.rules": {"rules": None},
        "alert": {"patient": p, "rule": "low", "hour": T0 - T0 % HOUR, "id": h32},
        "firmware.release": {"model": "G7", "version": "1.2", "sha256": h32, "length": 10},
        "firmware.revoke": {"model": "G7", "version": "1.2"},
        "firmware.floor": {"model": "G7", "version": "1.0"},
        "multisig.propose": {"target": p, "type": "care.entry",
                             "body": {"kind": "note", "digest": h32, "effective": T0},
                             "expires": T0 + HOUR},
        "multisig.cosign": {"proposal": h32},
        "multisig.rule": {"proposer": c, "types": ["care.entry"]},
        "consent.grant": {"grantee": c, **scope},
        "consent.amend": {"grant": h32, "view": "summary"},
        "consent.revoke": {"grant": h32},
        "care.entry": {"kind": "note", "digest": h32, "effective": T0},
        "doc.version": {"patient": p, "doc": h32, "n": 2, "cts": [h33]},
        "emergency.request": {"patient": p, "hours": 2, "days": 7, "reason": "unconscious"},
        "emergency.approve": {"request": h32, "patient": p},
        "emergency.decline": {"request": h32, "patient": p},
        "emergency.end": {"grant": h32, "patient": p},
        "emergency.open": {"patient": p, "hours": 2, "days": 7, "reason": "unconscious"},
        "gov.member_add": {"name": "org3", "policy": single_key_policy(_key(10).public),
                           "node": _key(11).public.to_value()},
        "gov.member_remove": {"name": "org3"},
        "gov.rotate_key": {"name": "org", "node": _key(12).public.to_value()},
        "gov.threshold": {"threshold": 1},
        "gov.upgrade": {"rules": 2},
        "gov.rotate_tls": {"name": "org", "tls_ca": b"-----BEGIN CERTIFICATE-----\nMIIB\n"
                           b"-----END CERTIFICATE-----\n"},
        "zk.day": {"patient": p, "start": T0 - T0 % HOUR, "end": T0 - T0 % HOUR + HOUR,
                   "slots": 300, "per": 25, "commit": h32},
        "zk.disclose": {"claim": "tir>=70", "start": T0 - T0 % HOUR,
                        "end": T0 - T0 % HOUR + 24 * HOUR, "days": 1,
                        "to": b"\x01" + bytes(range(256)) + bytes(SEALED_TO_BYTES - 257)},
        "zk.withdraw": {"disclosure": h32},
        "anchor.record": {"height": 0, "size": 1, "root": h32, "chain_id": 1,
                          "tx_hash": h33, "block_number": 7},
        "data.commit": {"patient": p, "stream": "cgm", "start": T0 - T0 % HOUR,
                        "end": T0 - T0 % HOUR + HOUR, "count": 12, "root": h32, "ct": h33,
                        "uploader": h32, "seq": 1, "trust": "device-signed", "key": dev,
                        "sig": bytes(64), "custody": "node"},
        "study.register": terms,
        "study.amend": {"study": h32, "terms": terms},
        "study.close": {"study": h32},
        "research.consent": {"study": h32, "streams": ["cgm"], "fields": [], "until": T0 + HOUR},
        "research.withdraw": {"grant": h32},
        "research.release": {"study": h32, "form": "aggregate", "statistic": "mean_glucose",
                             "epsilon": 1000},
        "research.manifest": {"release": h32, "manifest": h32, "root": h33, "rows": 3,
                              "days": []},
    }


SENDER = {
    "chain.genesis": "organization", "gov.member_add": "organization",
    "gov.member_remove": "organization", "gov.rotate_key": "organization",
    "gov.threshold": "organization", "anchor.record": "organization",
    "gov.rotate_tls": "organization", "gov.upgrade": "organization", "zk.day": "node",
    "study.register": "organization", "study.amend": "organization",
    "study.close": "organization", "research.release": "organization",
    "alert": "node", "data.commit": "node", "research.manifest": "node",
    "access": "clinician", "emergency.request": "clinician", "emergency.open": "clinician",
    "multisig.propose": "clinician",
    "device.register": "maker", "firmware.release": "maker", "firmware.revoke": "maker",
    "firmware.floor": "maker",
}
#: What each field is replaced by in the variants: a value of every CBOR kind.
SUBSTITUTES: tuple[Any, ...] = (None, 0, -1, "x", b"\x00" * 32, [], {}, True)


def variants(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for name in body:
        yield {k: v for k, v in body.items() if k != name}
        for sub in SUBSTITUTES:
            yield {**body, name: sub}
    yield {**body, "zz": 1}
    yield body


def _world_setup(w: World) -> list[tuple[SignedTx, str | None]]:
    """Genesis and the four accounts (the ok path of chain.genesis and account.create)."""
    genesis = {"orgs": [{"name": "org", "policy": single_key_policy(w.org.public),
                         "node": w.node.public.to_value()}], "threshold": 1}
    out = [(sign(Transaction(CHAIN, "chain.genesis", genesis, w.ids["organization"], 0),
                 [w.node]), None)]
    for kind in ("patient", "clinician", "maker"):
        key = w.keys[kind]
        body: dict[str, Any] = {"kind": kind, "policy": single_key_policy(key.public)}
        signers = [key]
        if kind != "patient":
            body["sponsor"] = w.ids["organization"]
            signers.append(w.org)
        out.append((sign(Transaction(CHAIN, "account.create", body, w.ids[kind], 0), signers),
                    None))
    return out


def replay(types: list[str] | None = None) -> dict[str, Any]:
    """Apply the golden ledger of ``types`` (default: every registered type, in name order);
    every result per type and the final state's digest."""
    w = World()
    st = State()
    index = 0
    results: dict[str, list[list[str]]] = {"setup": []}

    def run(stx: SignedTx, bucket: str) -> None:
        nonlocal index
        result, _ = apply(st, stx.raw, Context(CHAIN, 1 + index // 50, T0 + index * 1000, index))
        results.setdefault(bucket, []).append([result.code, result.message])
        index += 1

    for stx, _ in _world_setup(w):
        run(stx, "setup")
    ex = examples(w)
    for ttype in sorted(REGISTRY) if types is None else types:
        sender = SENDER.get(ttype, "patient")
        acct, key = w.ids[sender], w.keys[sender]
        for body in variants(ex[ttype]):
            record = st.get(account_key(acct))
            nonce = 0 if record is None else record["nonce"]
            run(sign(Transaction(CHAIN, ttype, body, acct, nonce), [key]), ttype)
    snap = st.snapshot()
    digest = hashlib.sha256()
    for k in sorted(snap):
        digest.update(k.encode() + b"\x00" + bytes(snap[k]) + b"\x00")
    return {"results": results, "state": digest.hexdigest(), "count": index}


def golden_types() -> list[str]:
    """The types of golden_results.json (written before typed bodies), in replay order."""
    return sorted(t for t in json.loads(GOLDEN.read_text())["results"] if t != "setup")


def added_replay() -> dict[str, Any]:
    """The golden ledger, then the types added since: only the added types' results."""
    old = golden_types()
    got = replay(old + sorted(set(REGISTRY) - set(old)))
    return {t: r for t, r in got["results"].items() if t not in old and t != "setup"}


if __name__ == "__main__":
    out = added_replay() if sys.argv[1:] == ["--added"] else replay()
    json.dump(out, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")
