"""The node's trust cache: it spares work, never changes a result, and is the only memo.

No module keeps a process-wide memo: two caches (two nodes in one process) know nothing of
each other, and ``crypto`` verifies every time it is asked.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from glucoledger import crypto
from glucoledger.bench.trustcache import _PlainDict
from glucoledger.crypto import ed25519, keys
from glucoledger.errors import MalformedError, SignatureError
from glucoledger.ledger import tx as txmod
from glucoledger.ledger.trust import TrustCache, _Bounded
from glucoledger.ledger.tx import Transaction, sign


def _tx(nonce: int = 0) -> Transaction:
    return Transaction("c/h", "t.x", {"n": nonce}, bytes(32), nonce)


@pytest.fixture
def count_verifies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each Ed25519 verification ``crypto.keys`` asks libsodium for (through the module,
    not the class: a compiled ``PublicKey``'s methods cannot be replaced)."""
    seen: list[bytes] = []
    real = ed25519.verify

    def counting(public: bytes, data: bytes, signature: bytes) -> None:
        seen.append(signature)
        real(public, data, signature)

    monkeypatch.setattr(ed25519, "verify", counting)
    return seen


def test_no_process_wide_memo_left() -> None:
    for name in ("note_verified", "forget_verified", "_VERIFIED"):
        assert not hasattr(keys, name) and not hasattr(keys.PublicKey, name)
    for name in ("signed_here", "forget_signed", "_CANONICAL", "_SIGNED_HERE"):
        assert not hasattr(txmod, name)


def test_crypto_verifies_every_time(count_verifies: list[bytes]) -> None:
    k = crypto.generate()
    sig = k.sign("tx", b"m")
    k.public.verify("tx", b"m", sig)
    k.public.verify("tx", b"m", sig)
    assert len(count_verifies) == 2


def test_memo_keeps_successes_only(count_verifies: list[bytes]) -> None:
    trust = TrustCache()
    k = crypto.generate()
    sig = k.sign("tx", b"m")
    trust.verify(k.public, "tx", b"m", sig)
    trust.verify(k.public, "tx", b"m", sig)
    assert len(count_verifies) == 1
    bad = sig[:-1] + bytes([sig[-1] ^ 1])
    for _ in range(2):
        with pytest.raises(SignatureError):
            trust.verify(k.public, "tx", b"m", bad)
    assert len(count_verifies) == 3  # a failure is checked again each time
    with pytest.raises(SignatureError):  # the memo is per (key, context, message, signature)
        trust.verify(k.public, "other", b"m", sig)
    with pytest.raises(SignatureError):
        trust.verify(crypto.generate().public, "tx", b"m", sig)


def test_two_nodes_share_nothing(count_verifies: list[bytes]) -> None:
    a, b = TrustCache(), TrustCache()
    k = crypto.generate()
    stx = a.sign_tx(_tx(), [k])
    assert a.signed_here(stx.raw) and not b.signed_here(stx.raw)
    b.check_signatures(stx)
    assert len(count_verifies) == 1  # b checked for itself; a signed, so it need not
    a.check_signatures(stx)
    assert len(count_verifies) == 1


def test_sign_tx_gives_the_same_bytes_as_sign() -> None:
    k = crypto.generate()
    assert TrustCache().sign_tx(_tx(3), [k]).raw == sign(_tx(3), [k]).raw


def test_decode_once_and_refusals_not_cached() -> None:
    # Observed through what the cache holds and hands back, not by patching SignedTx.decode:
    # the compiled build (setup.py) binds that call at compile time.
    trust = TrustCache()
    stx = sign(_tx(), [crypto.generate()])
    first = trust.decode(stx.raw)
    assert trust.decode(stx.raw) is first and first == stx and first.tx_hash == stx.tx_hash
    assert trust.sizes()["decoded"] == 1
    for _ in range(2):
        with pytest.raises(MalformedError):
            trust.decode(stx.raw + b"\x00")
    assert trust.sizes()["decoded"] == 1
    assert trust.decode(stx.raw) is first


def test_envelopes_are_known_by_their_whole_bytes_and_kept_once() -> None:
    """The decoded and signed-here memos are keyed by the envelope's bytes: an equal copy
    (another object, as a log entry's slice is) is found, and any byte changed, appended or
    cut is a miss. The key is the entry's own ``raw``: no second copy of an envelope."""
    trust = TrustCache()
    k = crypto.generate()
    own = trust.sign_tx(_tx(), [k])
    foreign = sign(_tx(1), [k])
    seen = trust.decode(foreign.raw)
    copy = bytes(bytearray(foreign.raw))
    assert copy is not foreign.raw and trust.decode(copy) is seen
    assert trust.signed_here(bytes(bytearray(own.raw))) and not trust.signed_here(foreign.raw)
    for changed in (own.raw[:-1] + bytes([own.raw[-1] ^ 1]), own.raw + b"\x00", own.raw[:-1]):
        assert not trust.signed_here(changed)
    other = sign(_tx(2), [k])
    assert trust.decode(other.raw) is not seen and trust.decode(other.raw).tx_hash == other.tx_hash
    assert all(key is entry.raw for key, entry in trust._decoded._d.items())
    assert all(key in trust._decoded._d for key in trust._own._d)


def test_bounded_oldest_dropped() -> None:
    trust = TrustCache(limit=2)
    k = crypto.generate()
    envs = [trust.sign_tx(_tx(i), [k]) for i in range(3)]
    assert not trust.signed_here(envs[0].raw)
    assert trust.signed_here(envs[1].raw) and trust.signed_here(envs[2].raw)
    assert trust.sizes() == {"verified": 2, "signed": 2, "decoded": 2}
    trust.clear()
    assert trust.sizes() == {"verified": 0, "signed": 0, "decoded": 0}
    with pytest.raises(ValueError):
        TrustCache(limit=0)


def test_a_full_cache_drops_in_the_order_a_plain_dict_did() -> None:
    """``_Bounded`` is an OrderedDict for constant-time drops (bench.trustcache); what it
    keeps is what the plain dict before it kept: the same keys in the same order after any
    mix of new keys, repeated keys and drops."""
    ours, plain = _Bounded(5), _PlainDict(5)
    rng = random.Random(7)
    for step in range(400):
        key = bytes([rng.randrange(12)])  # few keys: repeats and drops both happen often
        ours.put(key, step)
        plain.put(key, step)
        assert list(ours._d.items()) == list(plain._d.items())
    assert len(ours) == 5


def test_add_signatures_own_only_if_the_first_was() -> None:
    trust = TrustCache()
    k1, k2 = crypto.generate(), crypto.generate()
    foreign = sign(_tx(), [k1])
    assert not trust.signed_here(trust.add_signatures(foreign, [k2]).raw)
    own = trust.sign_tx(_tx(1), [k1])
    both = trust.add_signatures(own, [k2])
    assert trust.signed_here(both.raw)
    both.check_signatures()


def test_results_never_depend_on_the_cache(tmp_path: Any) -> None:
    """The same log applied with a warm cache and with none gives the same results and the
    same state: the cache can only spare work."""
    from glucoledger import state as _state  # noqa: F401 - registers the handlers
    from glucoledger.bench.ledger import account_envelopes
    from glucoledger.node.service import Node
    from glucoledger.state.machine import Context, apply
    from glucoledger.state.store import State

    node = Node.init(tmp_path / "node", workers=1)
    chain, genesis_state = node.chain, node.store.load_state()
    node.close()
    good = account_envelopes(chain, 4)
    bad_sig = bytearray(good[1])
    bad_sig[-1] ^= 1
    log = [good[0], bytes(bad_sig), good[1], good[1], b"\xa0", good[2] + b"\x00", good[3]]
    warm = TrustCache()
    for env in good:
        warm.decode(env)
        warm.check_signatures(warm.decode(env))
    outcomes = []
    for trust in (None, warm):
        st = State(dict(genesis_state))
        results = []
        for i, env in enumerate(log):
            result, _ = apply(st, env, Context(chain, 1, 1_700_000_000_000, i, trust))
            results.append((result.code, result.message))
        outcomes.append((results, st.take_changes()))
    assert outcomes[0] == outcomes[1]
    codes = [c for c, _ in outcomes[0][0]]
    assert codes[0] == "ok" and codes[1] == "bad_signature" and codes[4] == "malformed"


def test_threads_share_one_cache_at_its_bound() -> None:
    """The node's HTTP threads and its syncing thread write one cache at once: evictions at
    the bound must not race (an unguarded pop of the oldest entry raised KeyError)."""
    import sys
    import threading

    trust = TrustCache(limit=8)
    k = crypto.generate()
    stxs = [sign(_tx(i), [k]) for i in range(64)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for _ in range(200):
                for stx in stxs[offset::4]:
                    trust.decode(stx.raw)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: without the lock this fails
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert trust.sizes()["decoded"] <= 8
