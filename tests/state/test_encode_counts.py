"""Operation counts, not timings (issue 16, "each thing done once"): canonical CBOR encodes
per transaction on the commit path, counted by wrapping ``glucoledger.codec`` (the real
functions still run). A block header is encoded once (hashed, chained and stored from the
same bytes) and each result once (hashed into the header and stored)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.bench.ledger import account_envelopes
from glucoledger.ledger.block import BlockHeader, Result, encode_results, results_hash
from glucoledger.node.service import Node
from tests.builds import STATE_COMPILED


def _holds_policy(value: Any) -> bool:
    if isinstance(value, dict):
        return "cosigners" in value or any(_holds_policy(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_policy(v) for v in value)
    return False


def _count(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of each codec function; ``policy`` counts the encodes whose value holds an
    account policy (a map with ``cosigners``)."""
    counts: Counter[str] = Counter()
    for name in ("encode", "decode", "decode_trusted"):
        real = getattr(codec, name)

        def counting(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            counts[_name] += 1
            if _name == "encode" and _holds_policy(a[0]):
                counts["policy"] += 1
            return _real(*a, **k)

        monkeypatch.setattr(codec, name, counting)
    return counts


@pytest.mark.skipif(STATE_COMPILED, reason="the compiled state machine calls the codec from C")
def test_account_create_encodes_nothing_of_its_own_and_a_block_a_handful(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node.init(tmp_path / "node", workers=1)
    try:
        envs = account_envelopes(node.chain, 200)
        counts = _count(monkeypatch)
        assert all(r.ok for r in node.submit(envs[:100]))
        one_block = counts["encode"]
        counts.clear()
        assert all(r.ok for r in node.submit(envs[100:]))
        assert counts["encode"] == one_block  # the same work for the same block
        # The policy is never encoded: its bytes are taken from the envelope as they came
        # (``SignedTx.body_encoding``) and put in both the account id (a hash of kind,
        # policy and salt) and the account record by codec.encode_with, whose other
        # entries are scalars and an empty meta it writes itself; an "ok" result is a
        # constant (block.encode_results). So nothing is encoded per transaction; per
        # block: the header (once), the log cut entry, the frontier.
        assert counts["policy"] == 0, counts
        assert 1 <= counts["encode"] <= 4, counts
        assert counts["decode_trusted"] == 0, counts  # account.create reads no record
    finally:
        node.close()


def test_a_header_is_encoded_once_and_decoded_headers_hash_as_received() -> None:
    h = BlockHeader("c", 1, bytes(32), 5, 1, bytes(32), 1, bytes(32), bytes(32), 0)
    raw = h.encode()
    assert h.encode() is raw  # kept
    back = BlockHeader.decode(raw)
    assert back == h and back.encode() == raw
    assert back.hash() == h.hash()


def test_an_ok_result_is_encoded_as_a_constant() -> None:
    results = [Result("ok"), Result("bad_nonce", "x"), Result("ok")]
    items, digest = encode_results(results)
    assert items == tuple(codec.encode(r.to_value()) for r in results)
    assert digest == results_hash(results)
