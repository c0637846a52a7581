"""``verify`` of a node folder without starting the node (works on a damaged store too).

Writes nothing: the chain store and the ordered log are opened read-only (in a read-only
folder, a private copy of the files is read instead, ``sqlitetx.readonly_copy``). Before the
replay (``verify.verify_store``): ``PRAGMA integrity_check`` of each SQLite file and every
wallet key must open under the master key. A missing log is a finding, never a new empty log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..ledger.checkpoint import NoteVerifier
from ..ordering.base import Orderer
from ..ordering.embedded import EmbeddedOrderer
from ..sqlitetx import integrity_problems, readonly_copy
from ..state.replica import precheck
from .chainstore import ChainStore
from .keystore import Wallet, load_master_key
from .pool import checking_pool
from .research_store import ResearchStore
from .service import _PARALLEL_MIN, NodeConfig, _pool_precheck
from .verify import Finding, IntegrityError, VerifyReport, verify_store

__all__ = ["side_file_findings", "verify_folder", "with_side_files"]


def side_file_findings(data_dir: Path, master: bytes) -> list[Finding]:
    """The sealed files beside the stores that reads depend on, checked under the master key
    without writing: the wallet's keys, and the research secret and profiles
    (node/research_store.py). One finding per damaged file, each saying what to restore."""
    wallet = Wallet(data_dir, master)
    out = [Finding("tamper", "wallet", "", "", detail=wallet.unopenable(name))
           for name in wallet.damaged()]
    out.extend(Finding("tamper", "research side file", "", "", detail=problem)
               for problem in ResearchStore(data_dir, master).damaged())
    return out


def with_side_files(side: list[Finding], run: Callable[[], VerifyReport]) -> VerifyReport:
    """``run()`` (a verify of the chain store), with the side files' findings ``side``
    listed after the store's own: IntegrityError names every damaged item, store first."""
    try:
        report = run()
    except IntegrityError as exc:
        if not side:
            raise
        raise IntegrityError(exc.finding, findings=[*exc.findings, *side],
                             unchecked=exc.unchecked) from None
    if side:
        raise IntegrityError(side[0], findings=side)
    return report


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
    master = load_master_key(data_dir)
    wallet = Wallet(data_dir, master)
    side = side_file_findings(data_dir, master)
    if any(f.what == "wallet" for f in side):  # the node keys may be among them
        raise IntegrityError(side[0], findings=side, unchecked=["the chain store and the log"])
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
        pool = checking_pool(n) if n > 1 else None

        def check(envs: list[bytes]) -> list[bool | None]:
            if pool is None or len(envs) < _PARALLEL_MIN:
                return precheck(envs)
            step = max(64, len(envs) // (n * 2))
            return [ok for part in pool.map(_pool_precheck, [envs[k:k + step] for k in
                    range(0, len(envs), step)]) for ok in part]

        try:
            own = mine if need > 1 else keys
            return with_side_files(side, lambda: verify_store(
                store, config.chain, verifiers=own, orderer=orderer,
                from_checkpoint=from_checkpoint, checkpoint_verifiers=keys,
                prechecker=check, progress=progress, need=need,
                log_missing=log_missing and config.orderer is None))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            store.close()
            if orderer is not None:
                orderer.close()
