"""A one-command local consortium: n etcd members and n member nodes on 127.0.0.1.

``up(base, n)`` creates, under ``base``: ``etcd/`` (``ordering.cluster.EtcdCluster``),
``node-<i>/`` member folders (keys, node.json, genesis.json, chain.db, status.json,
control.json, node.log), ``genesis.json`` (threshold n // 2 + 1) and ``consortium.json``, the
record of every process started (pid, folder). ``down(base)`` stops exactly those: a pid is
signalled only while ``/proc/<pid>/cmdline`` still names its folder (pids get reused).

For development and tests: ``up(..., tls=True)`` (the CLI's default) runs etcd with TLS and
client and peer certificate authentication (``crypto.tls``): etcd member i is organization
i's, its peer port accepts every member's CA and its client port organization i's alone, so
node i speaks to etcd member i only; and etcd auth with one user and role per member
(``ordering.etcd_rbac``: each writes only its own keys); ``node-0/etcd-admin`` holds etcd's
root and makes that node revoke removed members. The control ports stay on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import GlucoledgerError, InputError
from ..files import atomic_write
from ..ordering.cluster import EtcdCluster
from ..ordering.etcd import EtcdOrderer, TlsFiles
from ..ordering.etcd_rbac import EtcdAdmin, client_identity, user_name, write_account
from ..state.accounts import NEW_ACCESS_RECORDS, NEW_RULES
from .genesis_file import Genesis, Member, create_member, init_member, member_of
from .service import etcd_chain_key

__all__ = ["down", "node_alive", "patience", "start_node", "stop_node", "up", "wait_controls"]

_STATE = "consortium.json"
#: Children started by this process, kept so they are reaped (and never garbage-collected
#: while running); `down` from another process works from the recorded pids instead.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CLUSTERS: dict[Path, EtcdCluster] = {}


def patience(seconds: float) -> float:
    """``seconds`` stretched for a slow or busy machine: times
    ``GLUCOLEDGER_TIMEOUT_SCALE`` when set, else times the load per core (at least 1, at
    most 10), so start-up waits fail on a hung process, not on a shared 2-core machine."""
    raw = os.environ.get("GLUCOLEDGER_TIMEOUT_SCALE")
    try:
        scale = float(raw) if raw else os.getloadavg()[0] / (os.cpu_count() or 1)
    except (ValueError, OSError):
        scale = 1.0
    return seconds * min(max(scale, 1.0), 10.0)


def _node_cmd(data: Path, port: int = 0, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "glucoledger", "node", "--data", str(data), "--port", str(port),
            *extra]


def start_node(data: Path, env: dict[str, str] | None = None, port: int = 0,
               extra: Sequence[str] = ()) -> int:
    """Start ``glucoledger node`` on ``data`` in its own session (control endpoint on
    ``port``, 0: any free one; ``extra`` options such as ``--tls``); return its pid."""
    with open(data / "node.log", "ab") as out:
        proc = subprocess.Popen(_node_cmd(data, port, extra), stdin=subprocess.DEVNULL,
                                stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=env or dict(os.environ))
    _CHILDREN[proc.pid] = proc
    return proc.pid


def node_alive(pid: int, data: Path) -> bool:
    """Whether ``pid`` is still the node we started on ``data`` (checked in /proc)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return str(data).encode() in cmdline and b"node" in cmdline


def stop_node(pid: int, data: Path, sig: signal.Signals = signal.SIGTERM,
              timeout: float = 10.0) -> None:
    if not node_alive(pid, data):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node_alive(pid, data):
        time.sleep(0.05)
    if node_alive(pid, data):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(5)


def create_consortium(base: Path, n: int, url: str | EtcdCluster,
                      chain: str = "glucoledger/consortium", threshold: int | None = None,
                      members: list[Member] | None = None, *, rules: int = NEW_RULES,
                      access_records: int = NEW_ACCESS_RECORDS) -> list[Path]:
    """Member folders and a signed genesis, initialized against the etcd cluster ``url``
    (a cluster started with TLS: each member's orderer URL names its own TLS folder).
    ``rules``, ``access_records``: the chain's versions (state/accounts.py; new chains are
    founded on the newest, older ones are for tests of a chain founded before them)."""
    folders = [base / f"node-{i}" for i in range(n)]
    if members is None:
        members = [create_member(f, f"org-{i}") for i, f in enumerate(folders)]
    genesis = Genesis(chain, threshold or n // 2 + 1, tuple(members), {},
                      access_records=access_records, rules=rules)
    for f in folders:
        name, wallet = member_of(f)
        genesis = genesis.sign(name, wallet.load("node"))
    (base / "genesis.json").write_text(genesis.to_json())
    tls = isinstance(url, EtcdCluster) and url.members[0].tls_ca != ""
    for i, f in enumerate(folders):
        # each node speaks to its own organization's etcd member (member i is node-i's),
        # the only one that accepts its client certificate
        node_url = url if isinstance(url, str) else (url.url_for(f / "tls", i) if tls
                                                     else url.url_for(None))
        if tls:  # the bundle must exist before the first TLS connection
            (f / "tls" / "trust.pem").write_bytes(genesis.trust_bundle())
        orderer = EtcdOrderer.from_url(node_url, etcd_chain_key(chain),
                                       writer=member_of(f)[0])
        try:
            init_member(f, genesis, node_url, orderer)
        finally:
            orderer.close()
    return folders


def _ready(folder: Path) -> str | None:
    """The node's control URL once it serves and knows who the members are (it derived the
    genesis block) or has stopped with a reason (its status says why); else None."""
    try:
        url = str(json.loads((folder / "control.json").read_text())["url"])
        status = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if status.get("refusing") or status.get("members_known"):
        return url
    return None


def wait_controls(folders: list[Path], timeout: float = 30.0) -> list[str]:
    """Wait until every node in ``folders`` is ready (``_ready``); ``timeout`` is scaled by
    ``patience``. Raises GlucoledgerError naming the nodes that are not."""
    limit = patience(timeout)
    deadline = time.monotonic() + limit
    while True:
        urls = [_ready(f) for f in folders]
        if all(urls):
            return [u for u in urls if u]
        if time.monotonic() > deadline:
            late = ", ".join(str(f) for f, u in zip(folders, urls, strict=True) if not u)
            raise GlucoledgerError(f"nodes not ready after {limit:.0f} s (no control endpoint "
                                   f"or no genesis block yet): {late}; see their node.log")
        time.sleep(0.1)


def up(base: Path, n: int = 3, base_port: int | None = None,
       tls: bool = False, *, rules: int = NEW_RULES,
       access_records: int = NEW_ACCESS_RECORDS) -> dict[str, Any]:
    """Start the consortium; ``base_port``: etcd uses base_port.. base_port+2n-1 and the
    nodes' control endpoints the next n ports (default: any free ports). ``tls``: etcd
    speaks TLS only and requires client and peer certificates from a member CA.
    ``rules``, ``access_records``: the chain's versions (``create_consortium``)."""
    base = Path(base).resolve()
    if (base / _STATE).exists():
        raise InputError(f"{base} already holds a consortium: `glucoledger cluster down --dir "
                         f"{base}` first, or use another --dir")
    base.mkdir(parents=True, exist_ok=True)
    members = [create_member(base / f"node-{i}", f"org-{i}") for i in range(n)]
    ids = None
    if tls:
        bundle = b"".join(m.tls_ca for m in members)
        (base / "trust.pem").write_bytes(bundle)
        ids = [TlsFiles(str(base / "trust.pem"), str(base / f"node-{i}" / "tls" / "node.pem"),
                        str(base / f"node-{i}" / "tls" / "node.key")) for i in range(n)]
    # Each organization's etcd member takes client certificates from that organization's CA
    # alone (its peers from every member's): etcd takes a client certificate's CommonName as
    # its user, so a CA trusted there can issue etcd's root (docs/threat-model.md).
    own = [str(base / f"node-{i}" / "tls" / "ca.pem") for i in range(n)] if tls else None
    cluster = EtcdCluster(n, base / "etcd", base_port, ids, own)
    cluster.start()
    _CLUSTERS[base / "etcd"] = cluster
    nodes: list[dict[str, Any]] = []
    try:
        cluster.wait_healthy(patience(30))
        if tls:
            _rbac(base, cluster, [m.name for m in members])
        folders = create_consortium(base, n, cluster, members=members, rules=rules,
                                    access_records=access_records)
        for i, f in enumerate(folders):
            (f / "control.json").unlink(missing_ok=True)
            port = 0 if base_port is None else base_port + 2 * n + i
            nodes.append({"name": member_of(f)[0], "data": str(f), "port": port,
                          "pid": start_node(f, port=port)})
    except BaseException:  # nothing recorded yet for `down`: stop what was started here
        for node in nodes:
            stop_node(int(node["pid"]), Path(node["data"]))
        _CLUSTERS.pop(base / "etcd", None)
        cluster.stop()
        raise
    state = {"etcd": cluster.url, "etcd_dir": str(base / "etcd"), "nodes": nodes, "tls": tls}
    (base / _STATE).write_text(json.dumps(state, indent=2) + "\n")
    for node, url in zip(nodes, wait_controls(folders), strict=True):
        node["control"] = url
    (base / _STATE).write_text(json.dumps(state, indent=2) + "\n")
    return state


def _rbac(base: Path, cluster: EtcdCluster, names: list[str],
          chain: str = "glucoledger/consortium") -> None:
    """Turn on etcd auth: ``root`` in ``node-0/etcd-admin`` (that node reconciles etcd's users
    with the member set, ``ConsortiumNode``), one user and role per member
    (``ordering.etcd_rbac``), each member's client identity in its ``tls/`` folder."""
    admin_dir = base / "node-0" / "etcd-admin"
    admin_dir.mkdir(parents=True, exist_ok=True)
    (admin_dir / "trust.pem").write_bytes((base / "trust.pem").read_bytes())
    client_identity(admin_dir, base / "node-0" / "tls", "etcd-admin")
    files = TlsFiles(str(admin_dir / "trust.pem"), str(admin_dir / "etcd-client.pem"),
                     str(admin_dir / "etcd-client.key"))
    first = EtcdAdmin([cluster.members[0].client_url], files)  # node-0's organization's
    try:
        first.enable(admin_dir)
    finally:
        first.close()
    admin = EtcdAdmin.from_folder(cluster.url_for(None, 0), admin_dir)
    try:
        for i, name in enumerate(names):
            tls_dir = base / f"node-{i}" / "tls"
            client_identity(tls_dir, tls_dir, name)
            write_account(tls_dir, user_name(name), admin.add_member(etcd_chain_key(chain),
                                                                     name))
    finally:
        admin.close()


def down(base: Path) -> list[str]:
    """Stop the nodes and etcd members recorded in ``base``; return what was stopped."""
    base = Path(base).resolve()
    try:
        state = json.loads((base / _STATE).read_text())
    except (OSError, ValueError):
        raise InputError(f"no consortium recorded in {base} (no readable {_STATE})") from None
    stopped = []
    for node in state["nodes"]:
        if node_alive(int(node["pid"]), Path(node["data"])):
            stop_node(int(node["pid"]), Path(node["data"]))
            stopped.append(f"node {node['name']} (pid {node['pid']})")
    cluster = _CLUSTERS.pop(Path(state["etcd_dir"]), None) or EtcdCluster.load(
        Path(state["etcd_dir"]))
    running = [(m.name, m.pid) for m in cluster.members if m.pid is not None]
    cluster.stop()
    stopped += [f"etcd {name} (pid {pid})" for name, pid in running]
    (base / _STATE).rename(base / (_STATE + ".down"))
    return stopped


def _cluster(state: dict[str, Any]) -> EtcdCluster:
    """The recorded etcd cluster: this process's, or the one its state file describes."""
    etcd_dir = Path(state["etcd_dir"])
    return _CLUSTERS.get(etcd_dir) or EtcdCluster.load(etcd_dir)


def _recorded(base: Path) -> tuple[Path, dict[str, Any]]:
    base = Path(base).resolve()
    try:
        return base, dict(json.loads((base / _STATE).read_text()))
    except (OSError, ValueError):
        raise InputError(f"no consortium recorded in {base} (no readable {_STATE})") from None


def _node(state: dict[str, Any], name: str) -> dict[str, Any]:
    for node in state["nodes"]:
        if node["name"] == name:
            return dict(node)
    raise InputError(f"no member {name!r} here; members: "
                     f"{', '.join(n['name'] for n in state['nodes'])}")


def restart_etcd(base: Path) -> list[str]:
    """Restart every etcd member with the trust bundle the nodes have in force (their
    ``tls/trust.pem``, rewritten when a ``gov.rotate_tls`` or a removal takes effect): etcd
    3.4 reads its trusted CAs only at start. All members together (``node.tlsrotation``).
    Waits up to a minute for the nodes' bundles to agree (one has not reached the height
    yet), then refuses, changing nothing. The etcd member of an organization removed by
    governance (member i is ``node-i``'s) is first taken out of the Raft cluster by etcd's
    root (``EtcdAdmin.remove_etcd_member``) and stopped: its certificate's CA is no longer
    trusted, and it must neither hold a replica nor count toward quorum."""
    base, state = _recorded(base)
    cluster = _cluster(state)
    dropped: list[str] = []
    gone = set(state.get("etcd_removed", []))
    if state.get("tls"):
        keep = _in_force(state["nodes"])
        deadline = time.monotonic() + patience(60)
        while True:
            bundles = {(Path(n["data"]) / "tls" / "trust.pem").read_bytes() for n in keep
                       if (Path(n["data"]) / "tls" / "trust.pem").exists()}
            if len(bundles) == 1:
                break
            if time.monotonic() > deadline:
                raise InputError("the nodes do not hold the same trust bundle (one has not "
                                 "reached the rotation's height): check `glucoledger "
                                 "consortium status` on each and retry")
            time.sleep(0.2)
        atomic_write(base / "trust.pem", bundles.pop())
        removed = [i for i, n in enumerate(state["nodes"]) if n not in keep and i not in gone]
        if removed:
            admin = EtcdAdmin.from_folder(cluster.url_for(None, 0),
                                          base / "node-0" / "etcd-admin")
            try:
                for i in removed:
                    admin.remove_etcd_member(cluster.members[i].name)
                    cluster.kill_member(i)
                    gone.add(i)
                    dropped.append(f"removed etcd {cluster.members[i].name} of "
                                   f"{state['nodes'][i]['name']} from the cluster")
            finally:
                admin.close()
            state["etcd_removed"] = sorted(gone)
            atomic_write(base / _STATE, (json.dumps(state, indent=2) + "\n").encode())
    running = [i for i in range(cluster.n) if i not in gone]
    for i in running:
        cluster.restart_member(i)
    cluster.wait_healthy(patience(60), members=running)
    return dropped + [f"restarted etcd {cluster.members[i].name} (pid "
                      f"{cluster.members[i].pid})" for i in running]


def _in_force(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes of the members in force, as the most advanced node's status lists them: a
    removed member's node stops deriving (its etcd user is gone) and keeps an old bundle."""
    best: tuple[int, list[str]] | None = None
    for n in nodes:
        try:
            doc = json.loads((Path(n["data"]) / "status.json").read_text())
            seen = (int(doc["height"]), [str(m) for m in doc.get("members") or []])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if seen[1] and (best is None or seen[0] > best[0]):
            best = seen
    if best is None:
        return nodes
    return [n for n in nodes if n["name"] in best[1]]


def stop_member_node(base: Path, name: str) -> str:
    """Stop member ``name``'s node (SIGTERM)."""
    _, state = _recorded(base)
    node = _node(state, name)
    if node_alive(int(node["pid"]), Path(node["data"])):
        stop_node(int(node["pid"]), Path(node["data"]))
    return f"node {name} (pid {node['pid']})"


def start_member_node(base: Path, name: str) -> str:
    """Start member ``name``'s node again (after a rejoin); return its control URL."""
    base, state = _recorded(base)
    node = _node(state, name)
    if node_alive(int(node["pid"]), Path(node["data"])):
        raise InputError(f"{name}'s node runs already (pid {node['pid']})")
    folder = Path(node["data"])
    (folder / "control.json").unlink(missing_ok=True)
    pid = start_node(folder, port=int(node.get("port", 0)))
    url = wait_controls([folder])[0]
    for n in state["nodes"]:
        if n["name"] == name:
            n["pid"], n["control"] = pid, url
    atomic_write(base / _STATE, (json.dumps(state, indent=2) + "\n").encode())
    return url


def urls(base: Path, name: str) -> tuple[str, str]:
    """(orderer URL as member ``name`` uses it, its node's control URL)."""
    _, state = _recorded(base)
    node = _node(state, name)
    if not state.get("tls"):
        return str(state["etcd"]), str(node.get("control", ""))
    # its own organization's etcd member (member i is node-i's): the only one it may reach
    i = state["nodes"].index(node)
    cluster = _cluster(state)
    return cluster.url_for(Path(node["data"]) / "tls", i), str(node.get("control", ""))
