"""The state machine as a pure function: ``apply(state, typed transaction, ctx)`` with no
``Node``, no database, no clock. Bodies are built from the typed dataclasses declared beside
their handlers (``AccountCreate``, ``DataCommit``), and every result is a value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from glucoledger import codec, crypto, state  # noqa: F401 - importing state registers the handlers
from glucoledger.crypto import PrivateKey
from glucoledger.errors import MalformedError, RejectedError
from glucoledger.ledger.tx import SignedTx, Transaction, sign
from glucoledger.state.accounts import AccountCreate, ChainGenesis
from glucoledger.state.accounts_model import (
    _parsed_policy,
    account_id,
    account_key,
    account_kind,
    load_account,
    patient_policy,
    single_key_policy,
    validate_policy,
)
from glucoledger.state.data import DataCommit
from glucoledger.state.machine import REGISTRY, Context, apply
from glucoledger.state.store import State

CHAIN = "test/pure"
T = 1_700_000_000_000


def _ctx(i: int = 1) -> Context:
    return Context(CHAIN, 1, T, i)


def _genesis() -> tuple[State, PrivateKey, PrivateKey]:
    org, node = crypto.generate(), crypto.generate()
    g = ChainGenesis(({"name": "org", "policy": single_key_policy(org.public),
                       "node": node.public.to_value()},), 1)
    first = account_id("organization", g.orgs[0]["policy"])
    st = State()
    result, _ = apply(st, sign(Transaction(CHAIN, "chain.genesis", g.to_body(), first, 0),
                               [node]), Context(CHAIN, 0, T, 0))
    assert result.ok, result.message
    return st, org, node


def _patient(key: PrivateKey, **over: Any) -> SignedTx:
    b = AccountCreate("patient", single_key_policy(key.public))
    b = dataclasses.replace(b, **over)
    acct = account_id(b.kind, b.policy, b.salt)
    return sign(Transaction(CHAIN, "account.create", b.to_body(), acct, 0), [key])


def test_typed_bodies_are_in_the_registry() -> None:
    assert REGISTRY["account.create"].body is AccountCreate
    assert REGISTRY["data.commit"].body is DataCommit
    assert REGISTRY["chain.genesis"].body is ChainGenesis


def test_genesis_once_and_its_refusals() -> None:
    st, org, node = _genesis()
    g = ChainGenesis(({"name": "org2", "policy": single_key_policy(org.public),
                       "node": node.public.to_value()},), 1)
    again = sign(Transaction(CHAIN, "chain.genesis", g.to_body(), bytes(32), 0), [node])
    before = st.snapshot()
    assert apply(st, again, _ctx())[0].code == "genesis_exists"
    assert st.snapshot() == before
    for bad in (ChainGenesis(g.orgs, 0), ChainGenesis(g.orgs, 2), ChainGenesis((), 1)):
        stx = sign(Transaction(CHAIN, "chain.genesis", bad.to_body(), bytes(32), 0), [node])
        assert apply(State(), stx, _ctx())[0].code == "bad_genesis"


def test_account_create_ok_then_exists_and_refusals_change_nothing() -> None:
    st, _, _ = _genesis()
    k = crypto.generate()
    stx = _patient(k)
    result, _ = apply(st, stx, _ctx())
    assert result.ok
    record = st.get(account_key(stx.tx.account))
    assert record["kind"] == "patient" and record["nonce"] == 1
    before = st.snapshot()
    result, _ = apply(st, stx, _ctx(2))
    assert result.code == "exists"
    other = crypto.generate()
    bad_kind = _patient(other, kind="wizard")
    assert apply(st, bad_kind, _ctx(3))[0].code == "bad_kind"
    big_salt = _patient(other, salt=b"x" * 33)
    assert apply(st, big_salt, _ctx(4))[0].code == "malformed"
    assert st.snapshot() == before


def test_account_create_needs_a_genesis() -> None:
    result, _ = apply(State(), _patient(crypto.generate()), _ctx())
    assert result.code == "no_genesis"


def test_account_create_body_parse() -> None:
    k = crypto.generate()
    b = AccountCreate("patient", single_key_policy(k.public), b"s", b"", {"a": 1})
    assert AccountCreate.parse(b.to_body()) == b
    with pytest.raises(MalformedError):
        AccountCreate.parse({"kind": 1, "policy": {}})
    with pytest.raises(RejectedError) as err:
        AccountCreate.parse({"kind": "patient", "policy": {}, "extra": 1})
    assert err.value.code == "malformed"


def _commit_body(**over: Any) -> DataCommit:
    b = DataCommit(patient=bytes(32), stream="cgm", start=0, end=3_600_000, count=12,
                   root=bytes(32), ct=bytes(32), uploader=b"\x01" * 32, seq=1,
                   custody="node", trust="device-signed",
                   key=crypto.generate().public.to_value(), sig=bytes(64))
    return dataclasses.replace(b, **over)


def test_data_commit_body_parse_round_trip_and_refusals() -> None:
    b = _commit_body()
    assert DataCommit.parse(b.to_body()) == b
    for over, code in [({"stream": "cgmx"}, "malformed"), ({"count": 0}, "malformed"),
                       ({"start": 5}, "malformed"), ({"seq": 0}, "malformed"),
                       ({"custody": "bank"}, "malformed")]:
        with pytest.raises(RejectedError) as err:
            DataCommit.parse(_commit_body(**over).to_body())
        assert err.value.code == code
    with pytest.raises(MalformedError):
        DataCommit.parse(_commit_body(root=b"short").to_body() | {"root": "text"})
    missing = _commit_body().to_body()
    del missing["ct"]
    with pytest.raises(RejectedError):
        DataCommit.parse(missing)


def test_data_commit_from_the_node_account_pure() -> None:
    st, _, node = _genesis()
    node_acct = account_id("node", single_key_policy(node.public))

    def commit(b: dict[str, Any], seq: int = 1) -> str:
        stx = sign(Transaction(CHAIN, "data.commit", b, node_acct, seq), [node])
        return apply(st, stx, _ctx())[0].code

    before = st.snapshot()
    assert commit(_commit_body().to_body()) == "unknown_device"
    assert commit(_commit_body(stream="nope").to_body()) == "malformed"
    assert commit({"patient": bytes(32)}) == "malformed"
    # signed by a key that is not the node's: the node account's authorization refuses it
    stranger = sign(Transaction(CHAIN, "data.commit", _commit_body().to_body(), node_acct, 1),
                    [crypto.generate()])
    assert apply(st, stranger, _ctx())[0].code == "not_cosigner"
    assert st.snapshot() == before


_WRONG = {"chain": (7, b"c/h", None, ["c"]), "type": (7, b"t.x", None),
          "body": ([], b"", "x", None), "account": ("a" * 32, bytes(31), 7, None),
          "nonce": ("0", -1, True, None, b"\x00")}


@pytest.mark.parametrize(("field", "wrong"),
                         [(f, w) for f, ws in _WRONG.items() for w in ws])
def test_an_envelope_whose_fields_have_the_wrong_types_is_refused_as_malformed(
        field: str, wrong: object) -> None:
    """Whatever a decoded envelope holds, it is refused as malformed, with one message, in
    both builds (.ci/run runs this on the compiled one, where a constructor checks its
    declared types at the call and a TypeError would stop the node: "applying block failed
    unexpectedly"). The signature's key likewise."""
    key = crypto.generate()
    value: dict[str, Any] = {"chain": CHAIN, "type": "t.x", "body": {}, "account": bytes(32),
                             "nonce": 0}
    value[field] = wrong
    sig = {"a": "ed25519", "p": key.public.raw, "s": bytes(64)}
    raw = codec.encode({"tx": value, "sigs": [sig]})
    with pytest.raises(MalformedError, match=f"transaction {field}"):
        SignedTx.decode(raw)
    st = State()
    result, stx = apply(st, raw, _ctx())
    assert (result.ok, result.code, stx) == (False, "malformed", None)
    assert f"transaction {field}" in result.message and len(st) == 0


@pytest.mark.parametrize("key", [{"alg": 7, "pub": bytes(32)}, {"alg": "ed25519", "pub": None},
                                 {"alg": "p256", "pub": "x" * 33},
                                 {"alg": "p256", "pub": bytearray(33)}])
def test_a_public_key_of_the_wrong_types_is_refused_as_malformed(key: dict[str, Any]) -> None:
    with pytest.raises(MalformedError):
        crypto.PublicKey.from_value(key)
    with pytest.raises(MalformedError):
        crypto.PublicKey(key["alg"], key["pub"])


def test_an_account_signing_again_and_again_bumps_its_nonce_and_parses_its_policy_once(
) -> None:
    """Every account-signed transaction puts the next nonce in the signer's record; the
    record is then exactly the canonical encoding of the record with that nonce (only the
    nonce's bytes are replaced), and the policy is parsed at the account's first
    transaction only (its parse is kept by the policy's bytes, not the record's, which the
    nonce changes). A new policy is parsed once and is the one that authorizes."""
    st, _, _ = _genesis()
    k, k2 = crypto.generate(), crypto.generate()
    create = _patient(k, meta={"nonce": 7, "policy": "not this one"})  # the same key names
    assert apply(st, create, _ctx())[0].ok
    acct, key = create.tx.account, account_key(create.tx.account)
    before = _parsed_policy.cache_info()
    for nonce in range(1, 41):  # one- and two-byte nonces
        rules = sign(Transaction(CHAIN, "alert.rules", {"rules": None}, acct, nonce), [k])
        result, _ = apply(st, rules, _ctx(nonce + 1))
        assert result.ok, result.message
        record = st.get(key)
        assert record["nonce"] == nonce + 1 and record["meta"]["nonce"] == 7
        assert st.get_raw(key) == codec.encode(record)
    after = _parsed_policy.cache_info()
    assert after.misses - before.misses == 1  # 40 before the policy was kept by its bytes
    new_policy = single_key_policy(k2.public)
    update = sign(Transaction(CHAIN, "account.update", {"policy": new_policy}, acct, 41),
                  [k])
    assert apply(st, update, _ctx(50))[0].ok
    assert st.get(key)["policy"] == new_policy and st.get(key)["nonce"] == 42
    old_key = sign(Transaction(CHAIN, "alert.rules", {"rules": None}, acct, 42), [k])
    assert apply(st, old_key, _ctx(51))[0].code == "not_cosigner"
    new_key = sign(Transaction(CHAIN, "alert.rules", {"rules": None}, acct, 42), [k2])
    assert apply(st, new_key, _ctx(52))[0].ok
    assert st.get_raw(key) == codec.encode(st.get(key))
    loaded = load_account(st, acct)
    assert (loaded.kind, loaded.nonce, loaded.record) == ("patient", 43, st.get(key))
    loaded.record["nonce"] = 99  # a copy: the stored record and the next read keep 43
    assert loaded.record["nonce"] == 43 and st.get(key)["nonce"] == 43
    assert account_kind(st, acct) == "patient" and account_kind(st, bytes(32)) is None


def test_a_policy_key_equal_to_a_known_key_is_that_key_and_nothing_else_changes() -> None:
    """``validate_policy(policy, known)``: ``account.create`` passes its signers' keys, so the
    key id of a new account's own key is hashed once. The parse is the same as without them,
    and a value ``PublicKey.from_value`` refuses is refused the same way."""
    signer, other = crypto.generate().public, crypto.generate().public
    policy = codec.decode(codec.encode(patient_policy(signer, other, crypto.generate().public)))
    plain = validate_policy(policy)
    reused = validate_policy(policy, [other, signer])
    assert reused == plain
    assert reused[0][0].key is signer and reused[0][1].key is other
    assert reused[0][2].key is not signer and reused[0][2].key is not other
    for bad in ({"alg": "ed25519", "pub": bytearray(signer.raw)},   # not bytes
                {"alg": "ed25519", "pub": signer.raw, "x": 1},       # a field too many
                {"alg": "p256", "pub": signer.raw},                  # another algorithm
                {"pub": signer.raw, "a": "ed25519"}):                # the wrong field name
        wrong = {**policy, "cosigners": [{"key": bad, "w": {"default": 1}}]}
        with pytest.raises(MalformedError) as without:
            validate_policy(wrong)
        with pytest.raises(MalformedError) as with_known:
            validate_policy(wrong, [signer])
        assert str(with_known.value) == str(without.value)
