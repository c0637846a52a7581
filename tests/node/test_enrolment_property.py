"""Property (issue 10): no sequence of calls by one organization yields a session for an
account it did not sponsor, so it never holds both sides of someone else's emergency.

The organization ``evil`` (opened by the operator) plays every enrolment call the node
offers, in any order hypothesis picks, with the results it gets back: open accounts of any
kind (naming any trusted party), set first passwords, issue one-time codes and redeem them,
and, as any account it has a session for, issue codes too (a patient invites her trusted
party). After each call, every account evil can log into must name evil as its sponsor;
a trusted party is let in only by a patient's code; the operator's people (``alice``, her
trusted party ``rosa``, ``dr-lee``, ``bo`` without a password, ``spare-tp`` whom no patient
names yet) never fall. Real node (ledger, SQLite, wallet), real Argon2id (cheap parameters).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from glucoledger.errors import GlucoledgerError
from glucoledger.node.accounts import Identity, create_account, identity
from glucoledger.node.enrolment import Enrolments, first_password, open_account
from glucoledger.node.people import Passwords
from glucoledger.node.service import Node

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
OPERATORS = ("alice", "rosa", "dr-lee", "bo", "bo-tp", "spare-tp")
KINDS = ("patient", "trusted", "clinician", "organization", "maker")


class World:
    def __init__(self, folder: Path) -> None:
        self.node = Node.init(folder, workers=1)
        create_account(self.node, "rosa", "trusted")
        create_account(self.node, "alice", "patient", trusted="rosa")
        create_account(self.node, "dr-lee", "clinician")
        create_account(self.node, "bo-tp", "trusted")
        create_account(self.node, "bo", "patient", trusted="bo-tp")  # no password yet
        create_account(self.node, "spare-tp", "trusted")  # opened, not yet named by anyone
        create_account(self.node, "evil", "organization")
        self.passwords = Passwords(self.node, CHEAP)
        for name in ("alice", "rosa", "dr-lee"):
            self.passwords.set(name, f"{name}-secret-password")
        self.enrol = Enrolments(self.node, CHEAP)
        self.counter = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Iterator[World]:
    """One node for every example (each run uses fresh account names), closed after them."""
    w = World(tmp_path_factory.mktemp("enrol") / "node")
    yield w
    w.node.close()


STEP = st.tuples(st.sampled_from(["open", "password", "code", "code_as", "login"]),
                 st.sampled_from(KINDS), st.integers(0, 12), st.integers(0, 12))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=10))
# The attacks the outside test found, spelled out (pool: OPERATORS, then evil's accounts):
# a clinician of its own, then rosa's password set or coded, then alice's.
@example(steps=[("open", "clinician", 0, 1), ("password", "trusted", 1, 0),
                ("code", "trusted", 1, 0), ("password", "patient", 0, 0),
                ("code", "patient", 3, 0), ("login", "patient", 3, 0)])
# Its own patient naming a trusted party opened by the operator, then inviting her.
@example(steps=[("open", "patient", 5, 1), ("code_as", "trusted", 5, 1)])
@example(steps=[("open", "patient", 4, 1), ("code_as", "trusted", 4, 1)])
# Its own patient (with its own trusted party) inviting someone else's trusted party.
@example(steps=[("open", "trusted", 0, 0), ("open", "patient", 6, 1),
                ("code_as", "trusted", 5, 1)])
# Its own trusted party, enrolled by the organization alone.
@example(steps=[("open", "trusted", 0, 0), ("password", "trusted", 6, 0),
                ("code", "trusted", 6, 0)])
def test_one_organization_never_gets_a_session_it_did_not_sponsor(world: World,
                                                                   steps: list[Any]) -> None:
    w = world
    evil = identity(w.node, "evil")
    run = next(w.counter)
    mine: list[str] = []  # accounts evil opened in this run
    known: dict[str, str] = {}  # passwords evil knows (it set them or chose them)
    sessions: dict[str, Identity] = {"evil": evil}
    names = list(OPERATORS)
    invited: set[str] = set()  # trusted parties let in by a patient's code

    def pick(i: int) -> str:
        pool = names + mine
        return pool[i % len(pool)]

    for op, kind, a, b in steps:
        try:
            if op == "open":
                name = f"r{run}-{len(mine)}"
                trusted = pick(a) if kind == "patient" else None
                pw = secrets.token_urlsafe(12) if kind != "trusted" and b % 2 else None
                open_account(w.node, w.passwords, w.enrol, evil, name, kind, trusted=trusted,
                             password=pw)
                mine.append(name)
                if pw:
                    known[name] = pw
            elif op == "password":
                target, pw = pick(a), secrets.token_urlsafe(12)
                first_password(w.passwords, w.enrol, evil, target, pw)
                known[target] = pw
            elif op in ("code", "code_as"):
                actor = evil if op == "code" else list(sessions.values())[b % len(sessions)]
                target, pw = pick(a), secrets.token_urlsafe(12)
                code = w.enrol.issue_code(actor, target, w.passwords, now=1e9)
                w.enrol.redeem(target, code, pw, w.passwords, now=1e9)
                known[target] = pw
                if actor.kind == "patient":
                    invited.add(target)
            else:
                target = pick(a)
                guess = known.get(target, f"{target}-secret-password-guess")
                sessions[target] = w.passwords.verify(target, guess)
        except GlucoledgerError:
            pass  # refused: the next step goes on from the same state
        for name in list(known):
            try:
                sessions[name] = w.passwords.verify(name, known[name])
            except GlucoledgerError:
                pass
        for name, ident in sessions.items():
            assert name not in OPERATORS, f"evil got a session for {name} via {steps}"
            assert name == "evil" or w.enrol.sponsor_of(name) == "evil", (name, steps)
            if ident.kind == "trusted":  # never by an organization alone
                assert name in invited, (name, steps)
