"""The one composition root: a node folder opened, and its services wired once.

Every edge (the command line, the HTTP API and portal, the benchmarks) opens a node with
:meth:`NodeServices.open` (or wraps a node it already holds with :meth:`NodeServices.of`)
and takes its services from here, typed, instead of wiring ``Node``, ``Vault`` and the
services itself. Invariants:

- one vault per opened node, shared by every service that reads or writes blobs (ingest,
  access, erasure, Nightscout), so an erasure is seen by every reader at once
  (``ErasureService(readers=[access])``);
- services are built on first use (a ``blocks`` command never opens the vault; a ``read``
  never starts the Nightscout pipeline), and closed in reverse order by :meth:`close`,
  which is idempotent;
- nothing here holds rules: the services are ``node/ingest.py``, ``node/access.py``,
  ``node/erasure.py`` and ``node/nightscout.py``; this module only builds them;
- ``commit_zk_days`` (``serve`` calls it) makes ingestion record each complete local day's
  ``zk.day`` commitment off the upload path (node/zkdaily.py); closed before ingest.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .service import Node

if TYPE_CHECKING:  # imported on first use: opening a node for `blocks` stays cheap
    from ..vault.store import Vault
    from .access import AccessService
    from .erasure import ErasureService
    from .ingest import IngestService
    from .nightscout import NightscoutService
    from .zkdaily import ZkDayCommitter

__all__ = ["NodeServices", "check_stored_blocks"]


def check_stored_blocks(node: Node) -> int:
    """Check the stored blocks as a consortium member does at start (``integrity.quick_check``:
    every header, link, signed checkpoint, envelope and result hashes to what this node
    signed) before anything is read from them; return the number of blocks.

    Raises IntegrityError (the CLI's exit 3) naming the first bad spot and pointing at
    ``verify``, which names them all. The state table is not re-derived here (``verify``
    does it). Reads only."""
    from .integrity import StoreDamagedError, quick_check
    from .verify import Finding, IntegrityError

    try:
        return quick_check(node.store, node.chain, node.verifier())
    except StoreDamagedError as exc:
        f = exc.finding
        raise IntegrityError(Finding(
            f.kind, f.what, f.expected, f.found, f.height,
            detail=f"the chain store in {node.data_dir} was altered ({f.describe()}): "
            f"nothing was read or changed; run `glucoledger verify --data {node.data_dir}` to "
            "list every bad spot, then restore chain.db from a backup or another node")
        ) from None


class NodeServices:
    """A node and its services. Use as a context manager, or call :meth:`close`."""

    def __init__(self, node: Node, *, owns_node: bool, fsync: bool = True,
                 max_group: int = 4096, read_cache: int | None = None) -> None:
        self.node = node
        self._owns_node = owns_node
        self._fsync, self._max_group, self._read_cache = fsync, max_group, read_cache
        self._mu = threading.Lock()
        self._vault: Vault | None = None
        self._ingest: IngestService | None = None
        self._access: AccessService | None = None
        self._erasure: ErasureService | None = None
        self._nightscout: NightscoutService | None = None
        self._zk_days: ZkDayCommitter | None = None
        self._closed = False

    @classmethod
    def open(cls, data_dir: Path, *, check: bool = True) -> NodeServices:
        """Open the node in ``data_dir`` (raises NotFoundError with the command to run if
        there is none); :meth:`close` closes it.

        ``check``: before any service reads, the stored blocks are checked as a consortium
        member checks them at start (``integrity.quick_check``: every header, link, signed
        checkpoint, envelope and result hashes to what the node signed), so a command never
        answers from an altered chain.db: IntegrityError (the CLI's exit 3) naming the first
        bad spot and pointing at ``verify``, which names them all. The state table is not
        re-derived here (``verify`` does it)."""
        node = Node(data_dir)
        if check:
            try:
                check_stored_blocks(node)
            except BaseException:
                node.close()
                raise
        return cls(node, owns_node=True)

    @classmethod
    def of(cls, node: Node, *, fsync: bool = True, max_group: int = 4096,
           read_cache: int | None = None) -> NodeServices:
        """Services over a node the caller opened and will close itself. The options are
        for benchmarks (``fsync=False`` measures without the disk flush; ``max_group`` is
        the ingest group-commit size; ``read_cache`` the records the access service's
        decrypted-batch cache holds); every other caller keeps the defaults."""
        return cls(node, owns_node=False, fsync=fsync, max_group=max_group,
                   read_cache=read_cache)

    @property
    def vault(self) -> Vault:
        with self._mu:
            if self._vault is None:
                from .ingest import open_vault

                vault = open_vault(self.node, fsync=self._fsync)
                try:
                    from .erasure import ErasureService

                    ErasureService(self.node, vault).finish()  # one a kill -9 interrupted
                except BaseException:
                    vault.close()
                    raise
                self._vault = vault
            return self._vault

    @property
    def ingest(self) -> IngestService:
        vault = self.vault
        with self._mu:
            if self._ingest is None:
                from .ingest import IngestService

                self._ingest = IngestService(self.node, vault, max_group=self._max_group)
            return self._ingest

    @property
    def access(self) -> AccessService:
        vault = self.vault
        with self._mu:
            if self._access is None:
                from .access import AccessService

                self._access = (AccessService(self.node, vault) if self._read_cache is None
                                else AccessService(self.node, vault, cache=self._read_cache))
            return self._access

    @property
    def erasure(self) -> ErasureService:
        vault, access = self.vault, self.access
        with self._mu:
            if self._erasure is None:
                from .erasure import ErasureService

                self._erasure = ErasureService(self.node, vault, readers=[access])
            return self._erasure

    @property
    def nightscout(self) -> NightscoutService:
        ingest, access = self.ingest, self.access
        with self._mu:
            if self._nightscout is None:
                from .nightscout import NightscoutService

                self._nightscout = NightscoutService(self.node, ingest, access)
            return self._nightscout

    def commit_zk_days(self, *, delay: float = 1.0) -> ZkDayCommitter:
        """From now on, each complete local day of CGM data that ingestion acknowledges gets
        its ``zk.day`` commitment, recorded by a worker thread (node/zkdaily.py)."""
        ingest, vault = self.ingest, self.vault
        with self._mu:
            if self._zk_days is None:
                from .zkdaily import ZkDayCommitter

                self._zk_days = ZkDayCommitter(self.node, vault, delay=delay)
                ingest.listeners.append(self._zk_days.arrived)
            return self._zk_days

    def close(self) -> None:
        """Close what was opened, last built first; the node too if :meth:`open` made it."""
        with self._mu:
            if self._closed:
                return
            self._closed = True
            ns, ingest, vault = self._nightscout, self._ingest, self._vault
            zk_days, self._zk_days = self._zk_days, None
            self._nightscout = self._ingest = self._vault = None
        try:
            if zk_days is not None:
                zk_days.close()
            if ns is not None:
                ns.close()
            if ingest is not None:
                ingest.close()
        finally:
            try:
                if vault is not None:
                    vault.close()
            finally:
                if self._owns_node:
                    self.node.close()

    def __enter__(self) -> NodeServices:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
