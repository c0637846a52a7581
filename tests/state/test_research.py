"""Research contracts, applied directly on a Replica (no Node): studies, consent, withdrawal,
releases, the privacy budget and credit. Every refusal has its code and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger import crypto
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.ledger.log import encode_cut, encode_tx_entry
from glucoledger.ledger.tx import SignedTx, Transaction, sign
from glucoledger.node.genesis_file import Genesis, Member
from glucoledger.state import Replica
from glucoledger.state.accounts_model import account_id, patient_policy, single_key_policy
from glucoledger.state.research import credit_of, load_study, release_key, rgrant_key

CHAIN = "test/research"
DAY = 86_400_000
T0 = 1_767_225_600_000


@dataclass
class Acct:
    id: bytes
    keys: list[crypto.PrivateKey]
    nonce: int = 1


class Net:
    """Three member organizations (threshold 2), a research sponsor, a node, patients."""

    def __init__(self, rules: int = 2) -> None:
        self.orgs = [crypto.generate() for _ in range(3)]
        self.nodes = [crypto.generate() for _ in range(3)]
        members = tuple(Member(f"org-{i}", self.orgs[i].public,
                               NoteVerifier(f"org-{i}", self.nodes[i].public)) for i in range(3))
        g = Genesis(CHAIN, 2, members, {}, rules=rules)
        for i in range(3):
            g = g.sign(f"org-{i}", self.nodes[i])
        self.replica = Replica(CHAIN)
        self.time = T0
        assert self.run([g.envelope()]) == ["ok"]
        self.org0 = Acct(account_id("organization", single_key_policy(self.orgs[0].public)),
                         [self.orgs[0]], 0)
        self.node0 = Acct(account_id("node", single_key_policy(self.nodes[0].public)),
                          [self.nodes[0]], 0)
        key = crypto.generate()
        self.sponsor = self.create("organization", single_key_policy(key.public), [key],
                                   sponsor=self.org0)
        self.patients = []
        for _ in range(4):
            k1, k2, kt = crypto.generate(), crypto.generate(), crypto.generate()
            policy = patient_policy(k1.public, k2.public, kt.public)
            self.patients.append(self.create("patient", policy, [k1, k2, kt]))

    def run(self, envelopes: list[bytes]) -> list[str]:
        for e in envelopes:
            self.replica.feed(0, encode_tx_entry(e))
        block = self.replica.feed(0, encode_cut(self.replica.next_height, self.time))
        assert block is not None
        return [r.code for r in block.results]

    def create(self, kind: str, policy: dict[str, Any], keys: list[crypto.PrivateKey],
               sponsor: Acct | None = None) -> Acct:
        aid = account_id(kind, policy)
        body: dict[str, Any] = {"kind": kind, "policy": policy}
        if sponsor:
            body["sponsor"] = sponsor.id
        signers = keys + (sponsor.keys if sponsor else [])
        assert self.run([sign(Transaction(CHAIN, "account.create", body, aid, 0),
                              signers).raw]) == ["ok"]
        return Acct(aid, keys)

    def tx(self, who: Acct, type_: str, body: dict[str, Any],
           extra: list[crypto.PrivateKey] | None = None, nonce: int | None = None) -> SignedTx:
        stx = sign(Transaction(CHAIN, type_, body, who.id, who.nonce if nonce is None else nonce),
                   who.keys[:1] + (extra or []))
        return stx

    def send(self, who: Acct, type_: str, body: dict[str, Any],
             extra: list[crypto.PrivateKey] | None = None) -> tuple[str, bytes]:
        stx = self.tx(who, type_, body, extra)
        before = self.replica.state.snapshot()
        code = self.run([stx.raw])[0]
        if code == "ok":
            who.nonce += 1
        else:  # a refused transaction changes nothing
            assert self.replica.state.snapshot() == before
        return code, stx.tx_hash

    @property
    def state(self) -> Any:
        return self.replica.state


def terms(**over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "protocol": "GL-2026-01", "ethics": "IRB 2026-117", "purpose": "nocturnal hypoglycaemia "
        "patterns in adults on CGM", "streams": ["cgm", "insulin"], "fields": ["age", "sex"],
        "period": {"from": T0 - 60 * DAY, "to": T0 + 365 * DAY},
        "forms": ["records", "aggregate"], "k": 2, "budget": 1_000_000, "retention_days": 730,
        "contact": "dpo@uni.example", "credit": {"rate": 3, "terms": "reported yearly"}}
    t.update(over)
    return t


@pytest.fixture
def net() -> Net:
    return Net()


def _study(net: Net, **over: Any) -> bytes:
    code, sid = net.send(net.sponsor, "study.register", terms(**over), [net.orgs[0], net.orgs[1]])
    assert code == "ok"
    return sid


def _consent(net: Net, p: Acct, sid: bytes, **over: Any) -> bytes:
    body = {"study": sid, "streams": ["cgm"], "fields": ["age"], "until": T0 + 90 * DAY}
    body.update(over)
    code, gid = net.send(p, "research.consent", body)
    assert code == "ok", code
    return gid


def test_register_needs_sponsor_and_consortium_threshold(net: Net) -> None:
    assert net.send(net.sponsor, "study.register", terms())[0] == "insufficient_signatures"
    assert net.send(net.sponsor, "study.register", terms(), [net.orgs[2]])[0] == \
        "insufficient_signatures"
    assert net.send(net.patients[0], "study.register", terms(),
                    [net.orgs[0], net.orgs[1]])[0] == "not_organization"
    assert net.send(net.sponsor, "study.register", terms(k=1), [net.orgs[0], net.orgs[1]])[0] \
        == "malformed"
    assert net.send(net.sponsor, "study.register", terms(streams=["dna"]),
                    [net.orgs[0], net.orgs[1]])[0] == "malformed"
    sid = _study(net)
    rec = load_study(net.state, sid)
    assert rec["sponsor"] == net.sponsor.id and rec["status"] == "open"
    assert rec["scope_version"] == 1 and rec["spent"] == 0
    # replaying the accepted envelope is refused on the sponsor's nonce
    stale = net.tx(net.sponsor, "study.register", terms(), [net.orgs[0], net.orgs[1]],
                   nonce=net.sponsor.nonce - 1)
    assert net.run([stale.raw]) == ["bad_nonce"]


def test_consent_may_narrow_never_widen(net: Net) -> None:
    sid = _study(net)
    p = net.patients[0]
    for over, code in (({"streams": ["carbs"]}, "bad_scope"),
                       ({"fields": ["region"]}, "bad_scope"),
                       ({"until": T0 - 1}, "bad_scope"),
                       ({"study": bytes(32)}, "unknown_study")):
        body = {"study": sid, "streams": ["cgm"], "fields": [], "until": T0 + DAY, **over}
        assert net.send(p, "research.consent", body)[0] == code
    assert net.send(net.sponsor, "research.consent", {"study": sid, "streams": ["cgm"],
                    "fields": [], "until": T0 + DAY})[0] == "not_patient"
    gid = _consent(net, p, sid)
    g = net.state.get(rgrant_key(gid))
    assert g["streams"] == ["cgm"] and g["fields"] == ["age"] and g["status"] == "active"


def test_release_picks_participants_withdrawal_excludes_later_and_keeps_earlier(net: Net) -> None:
    sid = _study(net)
    grants = [_consent(net, p, sid) for p in net.patients[:3]]
    code, r1 = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    assert code == "ok"
    rel = net.state.get(release_key(r1))
    assert [p["grant"] for p in rel["participants"]] == grants
    net.time += DAY
    assert net.send(net.patients[0], "research.withdraw", {"grant": grants[0]})[0] == "ok"
    assert net.send(net.patients[0], "research.withdraw", {"grant": grants[0]})[0] == \
        "already_withdrawn"
    assert net.send(net.patients[1], "research.withdraw", {"grant": grants[0]})[0] == \
        "not_your_grant"
    code, r2 = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    assert code == "ok"
    assert [p["grant"] for p in net.state.get(release_key(r2))["participants"]] == grants[1:]
    # the ledger keeps which releases held her data: the one before, not the one after
    assert net.state.get(rgrant_key(grants[0]))["releases"] == [r1]
    assert net.state.get(rgrant_key(grants[1]))["releases"] == [r1, r2]
    # below k participants: refused, nothing recorded
    assert net.send(net.patients[1], "research.withdraw", {"grant": grants[1]})[0] == "ok"
    assert net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})[0] \
        == "too_few_participants"


def test_widening_amendment_needs_reconsent_narrowing_does_not(net: Net) -> None:
    sid = _study(net)
    grants = [_consent(net, p, sid) for p in net.patients[:2]]
    narrower = terms(streams=["cgm"], budget=500_000)
    assert net.send(net.sponsor, "study.amend", {"study": sid, "terms": narrower})[0] == \
        "insufficient_signatures"
    assert net.send(net.sponsor, "study.amend", {"study": sid, "terms": narrower},
                    [net.orgs[0], net.orgs[2]])[0] == "ok"
    assert load_study(net.state, sid)["scope_version"] == 1
    code, r = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    assert code == "ok" and len(net.state.get(release_key(r))["participants"]) == 2
    wider = terms(streams=["cgm"], fields=["age", "sex", "region"], budget=500_000)
    assert net.send(net.sponsor, "study.amend", {"study": sid, "terms": wider},
                    [net.orgs[0], net.orgs[2]])[0] == "ok"
    assert load_study(net.state, sid)["scope_version"] == 2
    assert net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})[0] \
        == "too_few_participants"
    again = [_consent(net, p, sid) for p in net.patients[:2]]
    assert net.state.get(rgrant_key(grants[0]))["status"] == "replaced"
    code, r = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    assert [p["grant"] for p in net.state.get(release_key(r))["participants"]] == again


@pytest.mark.parametrize("rules", [2, 3])
def test_a_new_purpose_needs_reconsent_from_rule_set_3(rules: int) -> None:
    """The sponsor rewrites what participants were told (the purpose, protocol, ethics
    approval, credit terms, a lower rate): from rule set 3 every grant stops counting until
    she consents again. Under rule set 2 (chains founded before) the amendment kept every
    grant counting, and the next release held her data for a purpose she never read; such a
    chain replays as it did. A new contact or a higher rate asks nothing."""
    net = Net(rules)
    sid = _study(net)
    for p in net.patients[:2]:
        _consent(net, p, sid)

    def amend(**over: Any) -> int:
        assert net.send(net.sponsor, "study.amend", {"study": sid, "terms": terms(**over)},
                        [net.orgs[0], net.orgs[2]])[0] == "ok"
        return int(load_study(net.state, sid)["scope_version"])

    assert amend(contact="privacy@uni.example") == 1
    assert amend(contact="privacy@uni.example", credit={"rate": 5, "terms": "reported yearly"}
                 ) == 1
    repurposed = amend(contact="privacy@uni.example", purpose="insurance risk scoring",
                       credit={"rate": 5, "terms": "reported yearly"})
    code = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})[0]
    if rules == 2:
        assert (repurposed, code) == (1, "ok")
        return
    assert (repurposed, code) == (2, "too_few_participants")
    for p in net.patients[:2]:
        _consent(net, p, sid)
    assert net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})[0] \
        == "ok"
    for over in ({"protocol": "GL-2026-02"}, {"ethics": "IRB 2027-001"},
                 {"credit": {"rate": 5, "terms": "none"}},
                 {"credit": {"rate": 1, "terms": "reported yearly"}}):
        base = {"contact": "privacy@uni.example", "purpose": "insurance risk scoring",
                "credit": {"rate": 5, "terms": "reported yearly"}}
        before = int(load_study(net.state, sid)["scope_version"])
        assert amend(**{**base, **over}) == before + 1, over
        amend(**base)  # back: a change again (so each case starts from the same words)


def test_close_ends_releases_and_consent(net: Net) -> None:
    sid = _study(net, forms=["aggregate"])
    for p in net.patients[:2]:
        _consent(net, p, sid)
    assert net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})[0] \
        == "form_not_allowed"
    other = net.patients[3]
    assert net.send(other, "study.close", {"study": sid})[0] == "not_sponsor"
    assert net.send(net.sponsor, "study.close", {"study": sid})[0] == "ok"
    assert net.send(net.sponsor, "research.release", {"study": sid, "form": "aggregate",
                    "statistic": "gmi", "epsilon": 1000})[0] == "study_closed"
    assert net.send(other, "research.consent", {"study": sid, "streams": ["cgm"],
                    "fields": [], "until": T0 + DAY})[0] == "study_closed"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 400_000), min_size=1, max_size=8))
def test_budget_spent_is_the_sum_and_a_query_past_it_is_refused(costs: list[int]) -> None:
    net = Net()
    sid = _study(net, budget=1_000_000)
    for p in net.patients[:2]:
        _consent(net, p, sid)
    spent = 0
    for eps in costs:
        code, _ = net.send(net.sponsor, "research.release", {
            "study": sid, "form": "aggregate", "statistic": "mean_glucose", "epsilon": eps})
        if spent + eps <= 1_000_000:
            assert code == "ok"
            spent += eps
        else:
            assert code == "budget_exhausted"
        assert load_study(net.state, sid)["spent"] == spent


def test_manifest_credits_each_day_once_and_only_from_a_node(net: Net) -> None:
    sid = _study(net)
    grants = [_consent(net, p, sid) for p in net.patients[:2]]
    _, rel = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    day = T0 // DAY - 3
    body = {"release": rel, "manifest": b"\x01" * 32, "root": b"\x02" * 32, "rows": 10,
            "days": [[grants[0], [day, day + 1]]]}
    assert net.send(net.sponsor, "research.manifest", body)[0] == "not_node"
    assert net.send(net.node0, "research.manifest",
                    {**body, "days": [[grants[0], [T0 // DAY + 5]]]})[0] == "bad_days"
    assert net.send(net.node0, "research.manifest",
                    {**body, "days": [[bytes(32), [day]]]})[0] == "bad_days"
    assert net.send(net.node0, "research.manifest", body)[0] == "ok"
    assert net.send(net.node0, "research.manifest", body)[0] == "manifest_exists"
    assert credit_of(net.state, grants[0]) == {"days": [day, day + 1], "credits": 6}
    net.time += DAY
    _, rel2 = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    assert net.send(net.node0, "research.manifest", {**body, "release": rel2, "days": [
        [grants[0], [day + 1, day + 2]], [grants[1], [day]]]})[0] == "ok"
    assert credit_of(net.state, grants[0]) == {"days": [day, day + 1, day + 2], "credits": 9}
    assert credit_of(net.state, grants[1])["credits"] == 3
    # no transaction type moves credit
    from glucoledger.state import REGISTRY
    assert not [t for t in REGISTRY if "transfer" in t or "credit" in t]


@pytest.mark.parametrize("rules", [1, 2])
def test_only_the_sponsors_node_attests_its_release(rules: int) -> None:
    """Audit F5: any member's node attested (and credited days for) any pending release.
    On a rule set 2 chain only the node of the organization serving the sponsor (here org-0,
    which vouched for the sponsor) may; a rule set 1 chain replays as it always did."""
    net = Net(rules)
    sid = _study(net)
    grants = [_consent(net, p, sid) for p in net.patients[:2]]
    _, rel = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    node1 = Acct(account_id("node", single_key_policy(net.nodes[1].public)), [net.nodes[1]], 0)
    day = T0 // DAY - 3
    body = {"release": rel, "manifest": b"\x01" * 32, "root": b"\x02" * 32, "rows": 10,
            "days": [[grants[0], [day]]]}
    if rules == 1:
        assert net.send(node1, "research.manifest", body)[0] == "ok"
        return
    assert net.send(node1, "research.manifest", body)[0] == "not_releasing_node"
    assert credit_of(net.state, grants[0])["credits"] == 0
    # a node the sponsor itself runs (its own node account) attests too
    own = crypto.generate()
    mine = net.create("node", single_key_policy(own.public), [own], sponsor=net.sponsor)
    mine.nonce = 0
    assert net.send(mine, "research.manifest", body)[0] == "ok"
    assert net.send(net.node0, "research.manifest", body)[0] == "manifest_exists"


def test_a_list_as_grant_id_is_refused_not_raised(net: Net) -> None:
    """Audit F5: ``d[0] in grants`` with a list raised TypeError and halted every node."""
    sid = _study(net)
    grants = [_consent(net, p, sid) for p in net.patients[:2]]
    _, rel = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    body = {"release": rel, "manifest": b"\x01" * 32, "root": b"\x02" * 32, "rows": 1}
    for days in ([[[], []]], [[{}, []]], [[[grants[0]], []]], [[grants[0], {}]], [grants[0]]):
        assert net.send(net.node0, "research.manifest", {**body, "days": days})[0] == "bad_days"


def test_consent_follows_her_multisig_policy_and_studies_start_on_time(net: Net) -> None:
    from glucoledger.state.accounts_model import make_policy

    k1, k2 = crypto.generate(), crypto.generate()
    policy = make_policy([(k1.public, {"default": 1, "grant": 1, "cosigners": 1}),
                          (k2.public, {"default": 1, "grant": 1, "cosigners": 1})],
                         {"default": 1, "grant": 2, "cosigners": 2})
    both = net.create("patient", policy, [k1, k2])
    sid = _study(net, period={"from": T0 + 10 * DAY, "to": T0 + 100 * DAY})
    body = {"study": sid, "streams": ["cgm"], "fields": [], "until": T0 + 50 * DAY}
    assert net.send(both, "research.consent", body)[0] == "insufficient_signatures"
    assert net.send(both, "research.consent", body, [k2])[0] == "ok"
    _consent(net, net.patients[0], sid)
    assert net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})[0] \
        == "not_started"
    net.time += 10 * DAY
    code, rel = net.send(net.sponsor, "research.release", {"study": sid, "form": "records"})
    assert code == "ok" and len(net.state.get(release_key(rel))["participants"]) == 2
    # a malformed body is refused as such, whatever the field
    for bad in ({"study": sid}, {"study": sid, "form": "everything"},
                {"study": sid, "form": "aggregate", "statistic": "gmi", "epsilon": 0},
                {"study": b"short", "form": "records"}):
        assert net.send(net.sponsor, "research.release", bad)[0] == "malformed"
