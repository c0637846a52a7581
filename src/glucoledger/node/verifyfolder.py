"""``verify`` of a node folder without starting the node (works on a damaged store too).

Writes nothing: the chain store and the ordered log are opened read-only (in a read-only
folder, a private copy of the files is read instead, ``sqlitetx.readonly_copy``). Before the
replay (``verify.verify_store``): ``PRAGMA integrity_check`` of each SQLite file and every
wallet key must open under the master key. A missing log is a finding, never a new empty log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from ..ledger.checkpoint import NoteVerifier
from ..ordering.base import Orderer
from ..ordering.embedded import EmbeddedOrderer
from ..sqlitetx import integrity_problems, readonly_copy
from ..state.replica import precheck
from .chainstore import ChainStore
from .keystore import Wallet, load_master_key
from .service import _PARALLEL_MIN, NodeConfig, _pool_precheck
from .verify import Finding, IntegrityError, VerifyReport, verify_store

__all__ = ["verify_folder"]


def verify_folder(data_dir: Path, *, from_checkpoint: bytes | None = None,
                  node_keys: Sequence[NoteVerifier] | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  workers: int | None = None, need: int = 1) -> VerifyReport:
    """Verify a node's folder without starting the node (works on a damaged store too).

    Writes nothing: the store and the log are opened read-only (``readonly_copy``: in a
    read-only folder, a private copy of the files is read instead). A missing log is a
    finding, not a new empty log."""
    data_dir = Path(data_dir)
    config = NodeConfig.load(data_dir)
    wallet = Wallet(data_dir, load_master_key(data_dir))
    broken = wallet.damaged()
    if broken:
        raise IntegrityError(Finding(
            "tamper", "wallet", "", "", detail=f"the wallet keys {', '.join(broken)} in "
            f"{wallet.dir} do not open under the master key (altered, or sealed under another "
            "master key): restore them from a backup"))
    mine = [NoteVerifier(config.name, k.public) for k in wallet.node_keys()]  # rotated too
    keys = list(node_keys) if node_keys else mine
    n = workers if workers is not None else (os.cpu_count() or 1)
    with readonly_copy(data_dir, ("chain.db", "orderer.db")) as folder:
        for name in ("chain.db", "orderer.db"):
            damaged = integrity_problems(folder / name) if (folder / name).exists() else []
            if damaged:
                raise IntegrityError(Finding("tamper", name, "", "", detail="; ".join(damaged)
                                             + f": restore {name} from a backup"))
        store = ChainStore(folder / "chain.db", readonly=True)
        log_missing = not (folder / "orderer.db").exists()
        # A consortium member's log is the etcd cluster's (read only here); embedded: the
        # folder's orderer.db, opened read-only.
        orderer: Orderer | None = (
            config.open_orderer(data_dir) if config.orderer is not None else None
            if log_missing else EmbeddedOrderer(folder / "orderer.db", readonly=True))
        pool = ProcessPoolExecutor(n, mp_context=get_context("forkserver")) if n > 1 else None

        def check(envs: list[bytes]) -> list[bool | None]:
            if pool is None or len(envs) < _PARALLEL_MIN:
                return precheck(envs)
            step = max(64, len(envs) // (n * 2))
            return [ok for part in pool.map(_pool_precheck, [envs[k:k + step] for k in
                    range(0, len(envs), step)]) for ok in part]

        try:
            own = mine if need > 1 else keys
            return verify_store(store, config.chain, verifiers=own, orderer=orderer,
                                from_checkpoint=from_checkpoint, checkpoint_verifiers=keys,
                                prechecker=check, progress=progress, need=need,
                                log_missing=log_missing and config.orderer is None)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            store.close()
            if orderer is not None:
                orderer.close()
