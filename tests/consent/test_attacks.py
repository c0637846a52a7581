"""Table-driven attack suite on audited reads: each attempt is denied or refused, audited, and
releases nothing; a valid read right after it still works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from glucoledger.crypto import generate
from glucoledger.ledger.tx import Signature, SignedTx, Transaction, sign
from glucoledger.node.access import AccessDeniedError, AccessRefusedError
from glucoledger.state.access import access_key, released_count
from glucoledger.state.accounts_model import patient_policy
from glucoledger.state.consent import DENY_REASONS, Request

from .conftest import DAY, Care


@dataclass(frozen=True)
class Attack:
    name: str
    make: Callable[[Care], bytes]  # sets up, returns the envelope to read with
    error: type
    code: str


def _no_grant(c: Care) -> bytes:
    return c.request(c.endo).raw


def _other_patient(c: Care) -> bytes:
    c.grant(c.nurse)
    return c.request(c.nurse, patient=c.bob).raw


def _unknown_patient(c: Care) -> bytes:
    c.grant(c.nurse)
    return c.access.request(c.nurse.id, c.nurse.keys, Request(c.rosa.id, ("cgm",), "raw")).raw


def _revoked(c: Care) -> bytes:
    g = c.grant(c.nurse)
    assert c.submit(c.alice, "consent.revoke", {"grant": g}).ok
    c.clock.advance(1000)  # a block after the revocation
    return c.request(c.nurse).raw


def _expired(c: Care) -> bytes:
    c.grant(c.nurse, valid_until=c.clock.ms + 1000)
    c.clock.advance(2000)
    return c.request(c.nurse).raw


def _not_yet_valid(c: Care) -> bytes:
    c.grant(c.nurse, valid_from=c.clock.ms + DAY)
    return c.request(c.nurse).raw


def _stream_not_granted(c: Care) -> bytes:
    c.grant(c.nurse, streams=("cgm",))
    return c.request(c.nurse, streams=("cgm", "insulin")).raw


def _raw_under_summary(c: Care) -> bytes:
    c.grant(c.endo, view="summary")
    return c.request(c.endo, view="raw").raw


def _outside_window(c: Care) -> bytes:
    c.grant(c.nurse, window={"from": c.clock.ms - 10 * DAY, "to": c.clock.ms - 5 * DAY})
    return c.request(c.nurse, window={"last_days": 2}).raw


def _tiny_summary_window(c: Care) -> bytes:
    """A summary grantee asks for two seconds around one reading (the FHIR start/end leak)."""
    c.grant(c.endo, view="summary")
    t = c.readings["cgm"][len(c.readings["cgm"]) // 2].time_ms
    return c.request(c.endo, view="summary", window={"from": t - 1000, "to": t + 1000}).raw


def _shifted_summary_window(c: Care) -> bytes:
    """A whole day's length, but shifted five minutes off midnight (differencing)."""
    c.grant(c.endo, view="summary")
    start = c.clock.ms - c.clock.ms % DAY - 3 * DAY + 300_000
    return c.request(c.endo, view="summary", window={"from": start, "to": start + DAY}).raw


def _forged(c: Care) -> bytes:
    """Mallory signs an access request on the nurse's account with her own key."""
    c.grant(c.nurse)
    mallory = generate()
    tx = Transaction(c.node.chain, "access",
                     {"request": Request(c.alice.id, ("cgm",), "raw").to_value()},
                     c.nurse.id, c.node.next_nonce(c.nurse.id))
    return sign(tx, [mallory]).raw


def _bad_signature(c: Care) -> bytes:
    c.grant(c.nurse)
    stx = c.request(c.nurse)
    sig = bytearray(stx.sigs[0].sig)
    sig[3] ^= 1
    return SignedTx.create(stx.tx, [Signature(stx.sigs[0].key, bytes(sig))]).raw


def _replayed(c: Care) -> bytes:
    c.grant(c.nurse)
    stx = c.request(c.nurse)
    c.access.read(stx.raw)  # the genuine read
    return stx.raw  # captured and sent again


def _altered_request(c: Care) -> bytes:
    """The nurse's signed request, re-pointed at another patient: the signature breaks."""
    c.grant(c.nurse)
    stx = c.request(c.nurse)
    body = {"request": {**stx.tx.body["request"], "patient": c.bob.id}}
    tx = Transaction(stx.tx.chain, "access", body, stx.tx.account, stx.tx.nonce)
    return SignedTx.create(tx, list(stx.sigs)).raw


ATTACKS = [
    Attack("no grant", _no_grant, AccessDeniedError, "no_grant"),
    Attack("another patient's data", _other_patient, AccessDeniedError, "no_grant"),
    Attack("not a patient", _unknown_patient, AccessDeniedError, "unknown_patient"),
    Attack("revoked, a block later", _revoked, AccessDeniedError, "revoked"),
    Attack("expired grant", _expired, AccessDeniedError, "expired"),
    Attack("grant not yet valid", _not_yet_valid, AccessDeniedError, "not_yet_valid"),
    Attack("stream not granted", _stream_not_granted, AccessDeniedError, "stream_not_granted"),
    Attack("raw under a summary grant", _raw_under_summary, AccessDeniedError,
           "raw_under_summary"),
    Attack("outside the data window", _outside_window, AccessDeniedError, "outside_window"),
    Attack("summary of two seconds around a reading", _tiny_summary_window, AccessDeniedError,
           "not_whole_days"),
    Attack("summary of a day shifted off midnight", _shifted_summary_window,
           AccessDeniedError, "not_whole_days"),
    Attack("forged request (not the requester's key)", _forged, AccessRefusedError,
           "not_cosigner"),
    Attack("bad signature", _bad_signature, AccessRefusedError, "bad_signature"),
    Attack("replayed request", _replayed, AccessRefusedError, "bad_nonce"),
    Attack("request altered after signing", _altered_request, AccessRefusedError,
           "bad_signature"),
]


def test_every_deny_reason_is_attacked() -> None:
    assert {a.code for a in ATTACKS} >= set(DENY_REASONS)


def _log_size(c: Care) -> int:
    return c.node.store.tx_count()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_refused_audited_and_releases_nothing(care: Care, attack: Attack) -> None:
    env = attack.make(care)
    opened: list[bytes] = []
    real_open = care.vault.open
    care.vault.open = lambda row, **kw: opened.append(row.ct) or real_open(row, **kw)  # type: ignore[method-assign]
    before = _log_size(care)
    with pytest.raises(attack.error) as info:
        care.access.read(env)
    assert info.value.code == attack.code, info.value.message
    assert opened == []  # nothing was decrypted, so nothing could be released
    assert _log_size(care) == before + 1  # the attempt itself is in the log
    stx = SignedTx.decode(env)
    record = care.node.state.get(access_key(stx.tx_hash))
    if attack.error is AccessDeniedError:
        # audited in state with its reason, listing no batches
        assert record["decision"]["reason"] == attack.code
        assert released_count(record) == 0
        assert DENY_REASONS[attack.code] in info.value.message
    else:
        # refused by the machine: ordered with its reason, no state record (or only the
        # genuine earlier one, for a replay)
        rows = care.node.store.find_results([stx.tx_hash]).get(stx.tx_hash, [])
        assert any(r.decoded_result().code == attack.code for r in rows)
    # the node keeps serving: a legitimate read still works
    care.grant(care.nurse)
    assert care.access.read(care.request(care.nurse).raw).records


def test_emergency_without_trusted_party_is_refused(care: Care) -> None:
    body = {"patient": care.alice.id, "hours": 4, "days": 7, "reason": "unconscious in ED"}
    for keys in ([care.endo.keys[0]], [care.endo.keys[0], care.alice.keys[0]]):
        r = care.node.submit([care.node.build("emergency.open", body, care.endo.id,
                                              keys).raw])[0]
        assert r.result.code == "insufficient_signatures", r.result
    with pytest.raises(AccessDeniedError) as info:
        care.access.read(care.request(care.endo).raw)
    assert info.value.code == "no_grant"


def test_emergency_by_trusted_party_alone_is_refused(care: Care) -> None:
    body = {"patient": care.alice.id, "hours": 4, "days": 7, "reason": "no clinician"}
    r = care.node.submit([sign(Transaction(care.node.chain, "emergency.open", body, care.endo.id,
                                           care.node.next_nonce(care.endo.id)),
                               [care.rosa.keys[0]]).raw])[0]
    assert r.result.code == "insufficient_signatures"


def test_recovery_without_enough_cosigners_is_refused(care: Care) -> None:
    new = generate()
    policy = patient_policy(care.alice.keys[0].public, new.public, care.rosa.keys[0].public)
    for keys in ([care.alice.keys[0]], [care.rosa.keys[0]], [generate(), care.rosa.keys[0]]):
        r = care.node.submit([care.node.build("account.update", {"policy": policy},
                                              care.alice.id, keys).raw])[0]
        assert r.result.code in ("insufficient_signatures", "not_cosigner"), r.result
    assert care.alice.keys[1].public.key_id in care.node.account(care.alice.id).keys
