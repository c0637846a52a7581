"""``verify-vault``: every value a read of the vault can return is checked against the ledger.

A read finds batches through the vault's index (``vault.db``: ``batches``) and opens their
blobs; so for every accepted ``data.commit`` in the chain store (in log order), this checks:

- the index row exists and *every* column a read depends on equals what the commit says
  (patient, stream, uploader, seq, start and end hours, count, salted root, custody, trust,
  ciphertext hash) or where the ledger put it (the commit's transaction hash and log index,
  status "committed"): an edited row is caught, not only a missing one;
- the blob exists and its SHA-256 is the committed ciphertext hash;
- with ``decrypt``, a custodial batch opens under its wrapped data key (AES-GCM: the key
  wrapping and the KEK are authenticated with the batch's identifiers as associated data) and
  its salted leaves give the committed root. A self-custody batch's wrapped key is the
  patient's to open: it is checked up to the hash;
- and no committed row exists that no accepted commit names (a forged or duplicated row
  would be returned by reads).

And every accepted ``zk.day`` (a salted Poseidon commitment of a day's CGM slots, issue 19)
must be the commitment of the readings of the batches it covers (node/zkcheck.py): a day
committed from other readings is a finding naming the patient and the day; a day whose
readings cannot be opened (her key erased, a batch in her own custody) is listed as not
checkable.

Erased batches (an ``erase`` transaction destroyed them) are reported as such, not as damage.
Every damaged item is reported, not only the first: :class:`VaultIntegrityError` carries them
all. Damaged input (an envelope that does not decode, a row of the wrong types) is a finding,
never a traceback.

``verify_vault_folder`` runs the same on a folder without starting the node, writing
nothing (read-only SQLite, or a private copy where the folder is read-only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import codec
from ..crypto import sha256
from ..errors import GlucoledgerError, NotFoundError
from ..ledger import merkle
from ..ledger.tx import SignedTx
from ..sqlitetx import integrity_problems, readonly_copy
from ..state.access import erased_key
from .chainstore import ChainStore, StoredTx
from .verify import Finding, IntegrityError, short

__all__ = ["VaultIntegrityError", "VaultReport", "vault_expected", "verify_vault",
           "verify_vault_folder"]

#: Damaged input shows up as these when decoding values of the wrong shape.
_DAMAGE = (GlucoledgerError, KeyError, TypeError, ValueError, AttributeError, IndexError)

#: Row column -> the data.commit body field it must equal.
_FROM_BODY = ("patient", "stream", "uploader", "seq", "start", "end", "count", "root",
              "custody", "trust", "ct")


@dataclass(frozen=True, slots=True)
class VaultReport:
    batches: int
    decrypted: int
    self_custody: int
    seconds: float
    #: Batches destroyed by an ``erase`` transaction: (ciphertext hash, erasing tx hash).
    erased: tuple[tuple[bytes, bytes], ...] = ()
    #: ``zk.day`` commitments recomputed from the batches' readings and found equal
    zk_days: int = 0
    #: one sentence per ``zk.day`` that could not be checked (erased, self-custody...)
    zk_unchecked: tuple[str, ...] = ()

    def describe_erasures(self) -> list[str]:
        return [f"batch {ct.hex()[:16]} erased by transaction {tx.hex()[:16]}"
                for ct, tx in self.erased]


class VaultIntegrityError(IntegrityError):
    """verify-vault found damage: ``findings`` names every damaged item."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(findings[0])
        self.findings = tuple(findings)
        lines = "; ".join(f.describe() for f in findings)
        text = f"{len(findings)} damaged item(s) in the vault: {lines}"
        if any(f.kind != "erasure" for f in findings):  # (an erasure is finished, not restored)
            text += "; restore the vault (vault.db and blobs/) from a backup or another node"
        self.args = (text,)


def _where(t: StoredTx, height: int, tx_hash: bytes | None) -> dict[str, Any]:
    return {"height": height, "tx_index": t.idx,
            "tx_hash": None if tx_hash is None else tx_hash.hex()}


def verify_vault(store: ChainStore, vault: Any, *, decrypt: bool = True,
                 erased: Callable[[bytes], bytes | None] | None = None,
                 label: Callable[[bytes], str] | None = None) -> VaultReport:
    """Check the vault against every accepted ``data.commit``; raise VaultIntegrityError
    naming every damaged item, or return the report.

    ``erased(ct)`` names the ``erase`` transaction that destroyed a batch (None if none).
    ``label(id)``: the name a person reads for a patient or device (``Registry.label``);
    without it, ids are shown as their first 12 hex digits.
    """
    name_of = label or (lambda ident: f"id {ident.hex()[:12]}")
    from ..vault.batch import leaf_hashes
    from ..vault.store import BatchIntegrityError
    from .erasure import left_after_erasure
    from .zkcheck import ZkDayCheck

    def kek(patient: bytes) -> bytes | None:
        try:
            return vault.existing_kek(patient, "cgm")  # type: ignore[no-any-return]
        except GlucoledgerError:  # a damaged wrapped key: as good as destroyed here
            return None

    zk = ZkDayCheck(kek, name_of)

    start = time.perf_counter()
    n = opened = own = 0
    gone: list[tuple[bytes, bytes]] = []
    found: list[Finding] = []
    named: set[bytes] = set()

    def bad(what: str, expected: object, got: object, **where: Any) -> None:
        found.append(Finding("tamper", what, str(expected), str(got), **where))

    for height, _bhash, _header, _note in store.iter_blocks():
        for t in store.txs_of_block(height):
            if b"zk.day" in t.envelope:
                _zk_day(zk, t, height)
            if b"data.commit" not in t.envelope:
                continue
            try:
                if not t.decoded_result().ok:
                    continue
                stx = SignedTx.decode(t.envelope)
                if stx.tx.type != "data.commit":
                    continue
                body = stx.tx.body
                ct = bytes(body["ct"])
                name = (f"batch of patient {name_of(bytes(body['patient']))} stream "
                        f"{body['stream']} (uploader {name_of(bytes(body['uploader']))} seq "
                        f"{body['seq']})")
            except _DAMAGE as exc:
                bad("data.commit transaction", "an accepted commit that decodes",
                    getattr(exc, "message", None) or type(exc).__name__, height=height,
                    tx_index=t.idx)
                continue
            n += 1
            named.add(ct)
            zk.batch(t.idx, body)
            zk.unreadable(ct, "is damaged (see the other findings)")
            where = _where(t, height, stx.tx_hash)
            by = erased(ct) if erased is not None else None
            if by is not None:
                gone.append((ct, by))
                zk.unreadable(ct, f"was erased by transaction {by.hex()[:16]}")
                try:
                    left = left_after_erasure(vault, ct)
                except GlucoledgerError as exc:
                    left = exc.message
                if left is not None:
                    found.append(Finding(
                        "erasure", f"{name}, erased by transaction {by.hex()[:16]}",
                        "its row (wrapped key) and blob destroyed",
                        f"its {left} still in the vault: the erasure was interrupted; open "
                        "the node once (`glucoledger serve`, or any command that reads "
                        "data) to finish it", **where))
                continue
            try:
                row = vault.by_ct(ct)
            except NotFoundError:
                bad(f"vault row of {name}", "a batch row", "none", **where)
                continue
            except GlucoledgerError as exc:  # a damaged vault.db page
                bad(f"vault row of {name}", "a batch row", exc.message, **where)
                continue
            differs = [c for c in _FROM_BODY if getattr(row, c) != body[c]]
            if row.tx_hash != stx.tx_hash:
                differs.append("tx_hash")
            if row.tx_index != t.idx:
                differs.append("tx_index")
            if row.status != "committed":
                differs.append("status")
            if differs:
                bad(f"vault row of {name}: column(s) {', '.join(differs)}",
                    "the values of the ledger's data.commit",
                    ", ".join(f"{c}={_val(getattr(row, c))}" for c in differs), **where)
            try:
                blob = vault.blobs.get(ct)
            except GlucoledgerError:
                bad(f"blob of {name}", short(ct), "missing", **where)
                continue
            if sha256(blob) != ct:
                bad(f"blob of {name}", f"SHA-256 {short(ct)}", f"SHA-256 {short(sha256(blob))}",
                    **where)
                continue
            if body["custody"] == "self":
                own += 1
                zk.unreadable(ct, "is in the patient's own custody (its key is hers)")
                continue
            if decrypt and not differs:
                try:
                    salt_key, batch = vault.decrypt(row, blob)
                except BatchIntegrityError as exc:
                    bad(f"ciphertext of {name}", "an AES-GCM tag that verifies", exc.message,
                        **where)
                    continue
                except _DAMAGE as exc:
                    bad(f"ciphertext of {name}", "a batch that opens",
                        getattr(exc, "message", None) or type(exc).__name__, **where)
                    continue
                values = [r.to_value() for r in batch.items]
                if merkle.root_of(leaf_hashes(salt_key, values)) != body["root"]:
                    bad(f"contents of {name}", "the committed salted root", "another root",
                        **where)
                    continue
                opened += 1
                zk.opened(ct, batch.items)
            elif not decrypt:
                zk.unreadable(ct, "was not decrypted (run verify-vault with decryption)")
    for row in vault.batches():  # committed rows no accepted commit names
        if row.ct not in named:
            try:
                what = row.describe()
            except _DAMAGE:
                what = f"with blob name {short(row.ct) if isinstance(row.ct, bytes) else '?'}"
            bad(f"vault row {what}", "a row named by an accepted data.commit",
                "a row the ledger does not name (forged or duplicated)")
    for what, where, detail in zk.mismatches:
        bad(f"{what}: its Poseidon commitment",
            "the salted commitment of the readings its data.commit batches hold",
            f"{detail} (the zero-knowledge commitment and the SHA-256 ones do not open to "
            "the same readings)", **where)
    if found:
        raise VaultIntegrityError(found)
    return VaultReport(n, opened, own, time.perf_counter() - start, tuple(gone), zk.checked,
                       tuple(zk.unchecked))


def _zk_day(zk: Any, t: StoredTx, height: int) -> None:
    """Hand an accepted ``zk.day`` to the check (damaged ones are the replay's findings)."""
    try:
        if not t.decoded_result().ok:
            return
        stx = SignedTx.decode(t.envelope)
    except _DAMAGE:
        return
    if stx.tx.type == "zk.day":
        zk.day(t.idx, stx.tx.body, _where(t, height, stx.tx_hash))


def _val(v: object) -> str:
    return short(v) if isinstance(v, bytes) else repr(v)


def verify_vault_folder(data_dir: Path, *, decrypt: bool = True) -> VaultReport:
    """``verify_vault`` on a node's folder without starting the node; writes nothing."""
    from ..vault.blobstore import FsBlobStore
    from ..vault.store import Vault
    from .keystore import load_master_key
    from .registry import Registry
    from .service import NodeConfig

    data_dir = Path(data_dir)
    config = NodeConfig.load(data_dir)
    master = load_master_key(data_dir)
    with readonly_copy(data_dir, ("chain.db", "vault.db", "orderer.db")) as folder:
        if not (data_dir / "vault.db").exists():
            found = _missing_vault(folder, data_dir, config)
            if found:
                raise VaultIntegrityError([Finding(
                    "tamper", "vault.db", "", "", detail=f"vault.db is missing from {data_dir} "
                    "but the ledger has committed batches (deleted or moved?)")])
            return VaultReport(0, 0, 0, 0.0)
        damaged = integrity_problems(folder / "vault.db")
        if damaged:
            raise VaultIntegrityError([Finding(
                "tamper", "vault.db", "", "", detail=f"{m}: restore vault.db from a backup")
                for m in damaged])
        store = ChainStore(folder / "chain.db", readonly=True)
        try:
            _check_ledger(store, config, data_dir, master, folder)
            vault = Vault(folder, master, config.chain, readonly=True,
                          blobs=FsBlobStore(data_dir / "blobs", fsync=False))
            try:
                def erased(ct: bytes) -> bytes | None:
                    raw = store.state_value(erased_key(ct))
                    if raw is None:
                        return None
                    return bytes(codec.decode_trusted(raw)["tx"])

                return verify_vault(store, vault, decrypt=decrypt, erased=erased,
                                    label=Registry(data_dir).label)
            finally:
                vault.close()
        finally:
            store.close()


def vault_expected(data_dir: Path) -> bool:
    """Whether ``data_dir`` has, or ought to have, a vault to check: vault.db exists, or the
    node orders in its own log and its ledger committed batches (``logcheck``)."""
    from .service import NodeConfig

    data_dir = Path(data_dir)
    if (data_dir / "vault.db").exists():
        return True
    with readonly_copy(data_dir, ("chain.db",)) as folder:
        return bool(_missing_vault(folder, data_dir, NodeConfig.load(data_dir)))


def _missing_vault(folder: Path, data_dir: Path, config: Any) -> list[Any]:
    """``logcheck.check_vault_present`` on the stored state (``folder``: where chain.db is
    read); a consortium member holds only the batches uploaded through it."""
    from ..state.access import holds_batches
    from ..state.store import State
    from .logcheck import check_vault_present

    if config.orderer is not None:
        return []
    store = ChainStore(folder / "chain.db", readonly=True)
    try:
        state = State(store.load_state())
    finally:
        store.close()
    return check_vault_present(data_dir, holds_batches=holds_batches(state))


def _check_ledger(store: ChainStore, config: Any, data_dir: Path, master: Any,
                  folder: Path) -> None:
    """The vault is checked against the ledger's commits: the stored blocks must first be
    the ones this node signed (``integrity.quick_check``) and agree with the node's own
    ordered log (``logcheck``: embedded nodes; a member's etcd log is ``verify``'s), or the
    check would trust an altered chain.db. Raises IntegrityError pointing at ``verify``.
    ``folder``: where the (possibly copied) database files are read."""
    from ..ledger.checkpoint import NoteVerifier
    from ..ordering.embedded import EmbeddedOrderer
    from .integrity import StoreDamagedError, quick_check
    from .keystore import Wallet
    from .logcheck import check_chain, check_log

    for m in check_chain(store, config.chain):  # node.json of another chain
        raise IntegrityError(Finding("config", m.kind, "", "", detail=m.message))
    if config.orderer is None:
        log = folder / "orderer.db"
        orderer = EmbeddedOrderer(log, readonly=True) if log.exists() else None
        try:
            found = check_log(store, orderer, log_name="the ordered log (orderer.db)",
                              log_missing=orderer is None)
        finally:
            if orderer is not None:
                orderer.close()
        if found:
            raise IntegrityError(Finding("log", found[0].kind, "", "", detail=(
                f"{found[0].message}; the vault was not checked")))

    verifier = NoteVerifier(config.name, Wallet(data_dir, master).load("node").public)
    try:
        quick_check(store, config.chain, verifier)
    except StoreDamagedError as exc:
        raise IntegrityError(Finding(
            exc.finding.kind, exc.finding.what, exc.finding.expected, exc.finding.found,
            exc.finding.height, detail=f"chain.db in {data_dir} was altered "
            f"({exc.finding.describe()}), so the vault cannot be checked against it: run "
            f"`glucoledger verify --data {data_dir}` to list every bad spot, then restore "
            "chain.db from a backup or another node")) from None
