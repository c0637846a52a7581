"""Defence in depth for fail-stop replication: no handler raises anything but a refusal.

Every consortium node replays every transaction; a handler that raises an unexpected
exception halts every node at the same block, and again at every restart (audit F5:
``research.manifest`` with a list as a grant id). This test runs EVERY registered
transaction type's handler (``state.machine.REGISTRY``, its ``after`` hooks too) over a
populated state (a study with participants, a record-level release, a device, a grant...),
on both state rule sets,
with bodies whose values are replaced, at every depth, by values of other types (unhashable
lists and maps where bytes, text or integers are expected, nested lists, the largest and smallest
64-bit integers, byte strings of the wrong length, None, booleans) and asserts that each one is
refused (RejectedError or MalformedError, the codes ``apply`` records) and never raises
another exception. It calls the handlers directly, past ``apply``'s safety net for malformed
input, so the handlers themselves are held to it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoledger.errors import MalformedError, RejectedError
from glucoledger.ledger.tx import SignedTx, Transaction, sign
from glucoledger.state.accounts_model import account_id, account_key, single_key_policy
from glucoledger.state.devices import device_id
from glucoledger.state.machine import AFTER, REGISTRY, Context, apply
from glucoledger.state.store import State
from tests.builds import STATE_COMPILED

from .golden_ledger import CHAIN, HOUR, SENDER, T0, World, _key, _world_setup, examples

DAY = 86_400_000
#: Values put in place of a field or of a list element (each of another type, or of the
#: right type but out of every range).
SUBSTITUTES: tuple[Any, ...] = (
    None, True, 0, -1, (1 << 64) - 1, -(1 << 63), (1 << 63) - 1, "x", "", "x" * 600, b"",
    b"\x00" * 31, b"\x00" * 33, b"\x00" * 32, [], {}, [[]], [{}], [[[], []]], {"a": []},
    [b"\x00" * 32], [[b"\x00" * 32, [[]]]], [[{}, [1]]], 1.5,
)


def _paths(value: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    """Every position (map key or list index) inside ``value``, down to depth 4."""
    if depth > 4:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k), depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i), depth + 1)


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    out = list(value)
    out[head] = _replace(out[head], rest, new)
    return out


class Populated:
    """The golden world plus a study with two participants, a record-level release, a
    registered and bound device, a consent grant, an emergency request and a firmware."""

    def __init__(self, rules: int) -> None:
        self.w = w = World()
        self.state = State()
        self.index = 0
        setup = [stx for stx, _ in _world_setup(w)]
        if rules != 1:  # the same genesis on another state rule set (state/accounts.py)
            body = {**setup[0].tx.body, "rules": rules}
            setup[0] = sign(Transaction(CHAIN, "chain.genesis", body, w.ids["organization"], 0),
                            [w.node])
        for stx in setup:
            self._ok(stx)
        ex = examples(w)
        org, patient = w.ids["organization"], w.ids["patient"]
        self.study = self.run("study.register", ex["study.register"], org, [w.org])
        k7 = _key(7)
        p7 = account_id("patient", single_key_policy(k7.public))
        self.run("account.create", {"kind": "patient", "policy": single_key_policy(k7.public)},
                 p7, [k7])
        self.grants = [
            self.run("research.consent", {"study": self.study, "streams": ["cgm"], "fields": [],
                                          "until": T0 + 50 * HOUR}, pid, [key])
            for key, pid in ((w.patient, patient), (k7, p7))]
        self.release = self.run("research.release", {"study": self.study, "form": "records"},
                                org, [w.org])
        self.run("device.register", ex["device.register"], w.ids["maker"], [w.maker])
        self.device = device_id(w.ids["maker"], "SN-1")
        self.run("device.bind", {"device": self.device}, patient, [w.patient])
        self.grant = self.run("consent.grant", ex["consent.grant"], patient, [w.patient])
        self.emergency = self.run("emergency.request", ex["emergency.request"],
                                  w.ids["clinician"], [w.clinician])
        self.run("firmware.release", ex["firmware.release"], w.ids["maker"], [w.maker])
        self.ex = ex

    def _ok(self, stx: SignedTx) -> None:
        result, _ = apply(self.state, stx.raw, self.ctx())
        assert result.code == "ok", (stx.tx.type, result)
        self.index += 1

    def ctx(self) -> Context:
        return Context(CHAIN, 1 + self.index, T0 + self.index * 1000, self.index)

    def nonce(self, acct: bytes) -> int:
        rec = self.state.get(account_key(acct))
        return 0 if rec is None else int(rec["nonce"])

    def run(self, ttype: str, body: dict[str, Any], acct: bytes, keys: list[Any]) -> bytes:
        stx = sign(Transaction(CHAIN, ttype, body, acct, self.nonce(acct)), keys)
        self._ok(stx)
        return stx.tx_hash

    def bodies(self) -> dict[str, dict[str, Any]]:
        """Example bodies that name the objects of this state (so handlers go deep)."""
        ex = dict(self.ex)
        day = T0 // DAY
        ex["research.manifest"] = {"release": self.release, "manifest": b"\x11" * 32,
                                   "root": b"\x22" * 32, "rows": 1,
                                   "days": [[self.grants[0], [day]], [self.grants[1], [day]]]}
        ex["research.release"] = {"study": self.study, "form": "records"}
        ex["research.withdraw"] = {"grant": self.grants[0]}
        ex["study.close"] = {"study": self.study}
        ex["study.amend"] = {"study": self.study, "terms": ex["study.register"]}
        ex["research.consent"] = {**ex["research.consent"], "study": self.study}
        for t in ("device.bind", "device.unbind", "device.revoke"):
            ex[t] = {"device": self.device}
        ex["data.commit"] = {**ex["data.commit"], "uploader": self.device}
        ex["consent.amend"] = {**ex["consent.amend"], "grant": self.grant}
        ex["consent.revoke"] = {"grant": self.grant}
        for t in ("emergency.approve", "emergency.decline"):
            ex[t] = {**ex[t], "request": self.emergency}
        return ex


def _mutants(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in _paths(body):
        for sub in SUBSTITUTES:
            yield _replace(body, path, sub)


@pytest.fixture(scope="module", params=[1, 2], ids=["rules1", "rules2"])
def world(request: pytest.FixtureRequest) -> Populated:
    return Populated(request.param)


@pytest.mark.parametrize("ttype", sorted(REGISTRY))
def test_every_handler_refuses_type_substituted_bodies(world: Populated, ttype: str) -> None:
    w, st = world.w, world.state
    sender = SENDER.get(ttype, "patient")
    acct, key = w.ids[sender], w.keys[sender]
    body = world.bodies()[ttype]
    handler = REGISTRY[ttype].handler
    before = st.snapshot()
    crashes: list[str] = []
    for n, mutant in enumerate(_mutants(body)):
        try:
            stx = sign(Transaction(CHAIN, ttype, mutant, acct, world.nonce(acct)), [key])
        except MalformedError:
            continue  # not encodable: it never reaches a handler (a float, say)
        st.begin()
        try:
            handler(st, stx, world.ctx())
            for hook in AFTER.get(ttype, ()):
                hook(st, stx, world.ctx())
        except (RejectedError, MalformedError):
            pass
        except Exception as exc:  # noqa: BLE001 - the point of the test
            crashes.append(f"{ttype} mutant {n} {mutant!r:.300}: {type(exc).__name__}: {exc}")
        finally:
            st.rollback()
    assert st.snapshot() == before
    assert not crashes, "\n".join(crashes[:10])


def outcome_digest(rules: int) -> str:
    """A digest of what every handler does with every mutant of its body, on the given
    state rule set: the refusal's class, code and message (hashed into blocks), or the
    state it wrote. Two builds of the core must agree on it exactly."""
    world = Populated(rules)
    w, st = world.w, world.state
    digest = hashlib.sha256()
    for ttype in sorted(REGISTRY):
        acct, key = w.ids[SENDER.get(ttype, "patient")], w.keys[SENDER.get(ttype, "patient")]
        handler = REGISTRY[ttype].handler
        before = st.snapshot()
        for mutant in _mutants(world.bodies()[ttype]):
            try:
                stx = sign(Transaction(CHAIN, ttype, mutant, acct, world.nonce(acct)), [key])
            except MalformedError:
                continue
            st.begin()
            try:
                handler(st, stx, world.ctx())
                for hook in AFTER.get(ttype, ()):
                    hook(st, stx, world.ctx())
                after = st.snapshot()
                written = sorted((k, v) for k, v in after.items() if before.get(k) != v)
                outcome: Any = ["ok", written, sorted(set(before) - set(after))]
            except (RejectedError, MalformedError) as exc:
                outcome = [type(exc).__name__, exc.code, exc.message]
            except Exception as exc:  # noqa: BLE001 - the other test names it
                outcome = ["crash", type(exc).__name__, str(exc)]
            finally:
                st.rollback()
            digest.update(repr((ttype, outcome)).encode())
    return digest.hexdigest()


@pytest.mark.skipif(not STATE_COMPILED, reason="the same build on both sides: nothing to compare")
@pytest.mark.parametrize("rules", [1, 2])
def test_the_compiled_state_machine_answers_every_mutant_as_the_source_does(rules: int) -> None:
    """Every member replays every transaction, whichever build it installed: a compiled
    handler that refused a value the source accepts, or with other words, would fork the
    chain. The source's answers come from a process that imports it from ``src``."""
    root = Path(__file__).resolve().parents[2]
    code = ("from glucoledger.runtime import compiled_modules; "
            "assert not compiled_modules(), compiled_modules(); "
            "from tests.state.test_handler_fuzz import outcome_digest; "
            f"print(outcome_digest({rules}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    source = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True,
                            capture_output=True, text=True, timeout=600).stdout.strip()
    assert outcome_digest(rules) == source


def test_the_manifest_of_the_audit_is_refused_as_bad_days(world: Populated) -> None:
    """Audit F5: a grant id that is a list (unhashable) raised TypeError and halted every
    node; it is now refused with ``bad_days``."""
    body = {**world.bodies()["research.manifest"], "days": [[[], []]]}
    w = world.w
    stx = sign(Transaction(CHAIN, "research.manifest", body, w.ids["node"], 0), [w.node])
    st = world.state
    st.begin()
    try:
        with pytest.raises(RejectedError) as exc:
            REGISTRY["research.manifest"].handler(st, stx, world.ctx())
    finally:
        st.rollback()
    assert exc.value.code == "bad_days"


@pytest.mark.parametrize(("exc", "refused"), [
    (TypeError("unhashable type: 'list'"), True), (KeyError("k-4711"), True),
    (ValueError("v-4711"), True), (IndexError("i-4711"), True),
    (MemoryError(), False), (RecursionError("deep"), False), (RuntimeError("bug"), False),
])
def test_apply_refuses_deterministic_input_errors_and_stops_on_the_rest(
        exc: BaseException, refused: bool) -> None:
    """``apply``'s safety net: the deterministic exceptions malformed input causes become a
    ``malformed`` refusal (state rolled back, message naming only the class); MemoryError,
    RecursionError and anything else still stop the node."""
    from glucoledger.state.machine import TxType

    w = World()
    st = State()
    for stx, _ in _world_setup(w):
        apply(st, stx.raw, Context(CHAIN, 1, T0, 0))

    def boom(state: State, stx: SignedTx, ctx: Context) -> None:
        state.put("test/half-applied", 1)
        raise exc

    REGISTRY["test.boom"] = TxType("test.boom", "default", boom, "account", "")
    try:
        before = st.snapshot()
        stx = sign(Transaction(CHAIN, "test.boom", {}, w.ids["patient"], 1), [w.patient])
        if refused:
            result, _ = apply(st, stx.raw, Context(CHAIN, 2, T0, 1))
            assert result.code == "malformed"
            assert type(exc).__name__ in result.message and str(exc) not in result.message
        else:
            with pytest.raises(type(exc)):
                apply(st, stx.raw, Context(CHAIN, 2, T0, 1))
        assert st.snapshot() == before
    finally:
        del REGISTRY["test.boom"]
