"""Rejoining a consortium from nothing: the genesis file, the member's keys, one peer.

A member whose folder is empty, lost or damaged rebuilds it from:

- the consortium's genesis file (every founding member signed its envelope: the root of trust);
- its own keys (``master.key``, ``wallet/``, ``member.txt``, ``tls/``: a backup of the folder
  that ``consortium keys`` made, or the damaged folder itself), and the research side files
  sealed under that master key when the backup holds them (``research.key``, on which every
  pseudonym the member released depends, ``research-profiles.bin`` and
  ``research-released.bin``, node/research_store.py);
- one peer's control URL, or a block export file (``consortium export``) carried offline.

``restore_folder`` writes the folder (keys, ``node.json``, ``genesis.json``) and moves a
damaged ``chain.db`` aside, never deleting it. ``rejoin`` then fetches the peer's blocks up to
its final checkpoint and stores them only after ``blockexport.import_blocks`` verified them:
block 0 is the genesis file's envelope, every block re-derives to its header, and the final
checkpoint is cosigned by the threshold of the members in force at its height. The log may
have been compacted long ago: nothing is read from it here; the started node follows the log
from the imported block's cut (or fetches more blocks from peers).

Off-chain data (each organization's vault of encrypted readings) is not on the ledger and is
not restored here: it comes from the organization's own backup.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..errors import InputError, StorageError
from ..files import atomic_write
from .blockexport import import_blocks
from .control import fetch_blocks
from .genesis_file import Genesis, member_of
from .keystore import load_master_key
from .research_store import KEY_FILE, PROFILES_FILE, RELEASED_FILE, ResearchStore
from .service import Node, NodeConfig

__all__ = ["rejoin", "restore_folder"]

_KEY_FILES = ("master.key", "member.txt")
#: Copied when present; checked under the backup's master key before anything is written.
_SIDE_FILES = (KEY_FILE, PROFILES_FILE, RELEASED_FILE)


def restore_folder(data_dir: Path, genesis: Genesis, orderer_url: str,
                   keys_from: Path | None = None) -> str:
    """Make ``data_dir`` a member folder of ``genesis``'s chain with the member's own keys.

    Raises InputError when the keys are missing or are not a member's of this genesis (a
    member added later by governance is checked against the imported state instead).
    Returns the member's name.
    """
    data_dir = Path(data_dir)
    src = data_dir if keys_from is None else Path(keys_from)
    try:
        master: bytes | None = load_master_key(src)
    except StorageError:
        master = None  # no key: refused below, naming what the backup lacks
    if master is not None:
        damaged_side = ResearchStore(src, master).damaged()
        if damaged_side:  # refused before anything is written
            raise InputError(f"{' '.join(damaged_side)} (The research side files are not on "
                             "the ledger: a peer cannot restore them. Restore them from the "
                             "backup of this member's folder made with this master key.)")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if keys_from is not None and Path(keys_from).resolve() != data_dir.resolve():
        for name in _KEY_FILES:
            if not (src / name).is_file():
                raise InputError(f"{src} holds no {name}: pass the backup of the member's "
                                 "folder made after `glucoledger consortium keys`")
            shutil.copy2(src / name, data_dir / name)
        for name in _SIDE_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, data_dir / name)
        for sub in ("wallet", "tls"):
            if (src / sub).is_dir():
                shutil.copytree(src / sub, data_dir / sub, dirs_exist_ok=True)
    name, wallet = member_of(data_dir)
    founder = next((m for m in genesis.members if m.name == name), None)
    if founder is not None and founder.node.key != wallet.load("node").public:
        raise InputError(f"the node key in {data_dir} is not {name}'s key in the genesis "
                         "file: restore the right member's keys")
    genesis.envelope()  # a genesis that is not fully signed is refused here
    damaged = data_dir / "chain.db"
    if damaged.exists():
        aside = data_dir / f"chain.db.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(damaged) + suffix)
            if part.exists():
                part.rename(Path(str(aside) + suffix))
    NodeConfig(genesis.chain, name, orderer_url).save(data_dir)
    atomic_write(data_dir / "genesis.json", genesis.to_json().encode())
    if genesis.trust_bundle() and (data_dir / "tls").is_dir():
        atomic_write(data_dir / "tls" / "trust.pem", genesis.trust_bundle())
    return name


def rejoin(data_dir: Path, *, peer: str | None = None, export: bytes | None = None) -> int:
    """Fetch blocks from ``peer`` (a control URL) or take ``export``; verify and store them.

    Raises ConsistencyError / MalformedError (nothing stored) or OrderingError (the peer is
    unreachable). Returns the number of blocks stored.
    """
    if (peer is None) == (export is None):
        raise ValueError("rejoin from exactly one of a peer URL or an export")
    with Node(Path(data_dir), workers=1) as node:
        if export is None:
            export = fetch_blocks(str(peer), node.store.height(), node.node_key,
                                  tls=Path(data_dir) / "tls")
        return import_blocks(node, export)
