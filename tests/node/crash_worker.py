"""Appends transactions forever, printing each acknowledged transaction hash (for kill -9 tests)."""

from __future__ import annotations

import sys
from pathlib import Path

from glucoledger import crypto
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.service import Node
from glucoledger.state.accounts_model import account_id, single_key_policy


def main(folder: Path, batch: int) -> None:
    node = Node(folder, workers=1)
    print("ready", flush=True)
    while True:
        envs, hashes = [], []
        for _ in range(batch):
            k = crypto.generate()
            pol = single_key_policy(k.public)
            stx = sign(Transaction(node.chain, "account.create", {"kind": "patient", "policy": pol},
                                   account_id("patient", pol), 0), [k])
            envs.append(stx.raw)
            hashes.append(stx.tx_hash.hex())
        receipts = node.submit(envs)
        assert all(r.ok for r in receipts)
        sys.stdout.write("".join(f"ack {h}\n" for h in hashes))
        sys.stdout.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
