"""A local etcd cluster for development and tests: n members on 127.0.0.1, one machine.

Not for production (no TLS, short Raft timers for fast failover in tests). Everything lives
under ``base_dir``: ``member-<i>/`` data directories, ``member-<i>.log`` logs, and
``cluster.json``, the state file (names, ports, pids), so that another process (the CLI's
``down``) can stop exactly the processes this one started and nothing else.

Raises ClusterError (an OrderingError) when etcd is missing, will not start or stay healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from glucoledger.errors import OrderingError
from glucoledger.ordering._gateway import TlsFiles

__all__ = ["ClusterError", "EtcdCluster", "find_etcd"]

_HOST = "127.0.0.1"
_STATE = "cluster.json"
#: Raft timers (ms) shorter than etcd's defaults (100/1000) so tests see failover quickly.
_HEARTBEAT_MS = 50
_ELECTION_MS = 500


class ClusterError(OrderingError):
    code = "etcd_cluster"


def find_etcd() -> str:
    """Path of the etcd server binary, or ClusterError saying how to install it."""
    path = shutil.which("etcd") or (
        "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None
    )
    if path is None:
        raise ClusterError(
            "etcd is not installed: run `apt-get install etcd-server` (Debian/Ubuntu) "
            "or put the etcd binary on PATH"
        )
    return path


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: str
    log: str
    pid: int | None = None
    #: TLS: the trust bundle, this member's certificate and key ("": plain HTTP).
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: The CAs whose client certificates this member accepts ("": the trust bundle). A
    #: consortium gives each member its own organization's CA alone: etcd takes a client
    #: certificate's CommonName as the etcd user, so a CA trusted here can issue etcd's root.
    client_ca: str = ""

    @property
    def scheme(self) -> str:
        return "https" if self.tls_ca else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{_HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{_HOST}:{self.peer_port}"

    def tls_args(self) -> list[str]:
        """etcd flags: TLS with client and peer certificate authentication."""
        if not self.tls_ca:
            return []
        return ["--cert-file", self.tls_cert, "--key-file", self.tls_key,
                "--client-cert-auth", "--trusted-ca-file", self.client_ca or self.tls_ca,
                "--peer-cert-file", self.tls_cert, "--peer-key-file", self.tls_key,
                "--peer-client-cert-auth", "--peer-trusted-ca-file", self.tls_ca]

    def urlopen_context(self) -> ssl.SSLContext | None:
        if not self.tls_ca:
            return None
        return TlsFiles(self.tls_ca, self.tls_cert, self.tls_key).context()


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; another process may take one before etcd binds it, in
    which case start() fails loudly and can simply be retried."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((_HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    """Start, stop, kill and restart the members of a local etcd cluster."""

    def __init__(self, n: int, base_dir: Path, base_port: int | None = None,
                 tls: Sequence[TlsFiles] | None = None,
                 client_cas: Sequence[str] | None = None) -> None:
        """``tls``: one TlsFiles per member (its certificate, the trust bundle): the members
        then speak TLS to clients and peers and require certificates from both.
        ``client_cas``: one file per member, the CAs its client port accepts (default: the
        trust bundle; a consortium: each organization's own CA, ``devcluster.up``)."""
        if n < 1:
            raise ValueError("a cluster needs at least one member")
        self.n = n
        self.base_dir = Path(base_dir)
        ports = (
            [base_port + k for k in range(2 * n)] if base_port is not None else _free_ports(2 * n)
        )
        self.token = f"glucoledger-{os.getpid()}-{time.time_ns()}"
        self.members = [
            _Member(
                name=f"m{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=str(self.base_dir / f"member-{i}"),
                log=str(self.base_dir / f"member-{i}.log"),
            )
            for i in range(n)
        ]
        if tls is not None:
            if len(tls) != n:
                raise ValueError("one TLS identity per member")
            for m, t in zip(self.members, tls, strict=True):
                m.tls_ca, m.tls_cert, m.tls_key = t.ca, t.cert or "", t.key or ""
        if client_cas is not None:
            if tls is None or len(client_cas) != n:
                raise ValueError("one client CA file per member, with TLS")
            for m, ca in zip(self.members, client_cas, strict=True):
                m.client_ca = ca
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- state file ----------------------------------------------------------------------------

    @classmethod
    def load(cls, base_dir: Path) -> EtcdCluster:
        """The cluster described by ``base_dir/cluster.json`` (written by start())."""
        path = Path(base_dir) / _STATE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ClusterError(f"no readable cluster state at {path}: {exc}") from exc
        cluster = cls.__new__(cls)
        cluster.n = len(state["members"])
        cluster.base_dir = Path(base_dir)
        cluster.token = state["token"]
        cluster.members = [_Member(**m) for m in state["members"]]
        cluster._procs = {}
        return cluster

    def _save(self) -> None:
        state = {"token": self.token, "members": [asdict(m) for m in self.members]}
        tmp = self.base_dir / (_STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.base_dir / _STATE)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def url(self) -> str:
        """``etcd://host:port,...`` for EtcdOrderer.from_url."""
        return "etcd://" + ",".join(f"{_HOST}:{m.client_port}" for m in self.members)

    def url_for(self, tls_dir: Path | None, member: int | None = None) -> str:
        """The orderer URL a node uses: over TLS with the identity in ``tls_dir``; every
        member, or only ``member`` (a consortium node speaks to its own organization's)."""
        url = self.url if member is None else f"etcd://{_HOST}:{self.members[member].client_port}"
        return url + (f"?tls={tls_dir}" if tls_dir is not None else "")

    def start(self) -> None:
        """Start every member (a new cluster, or the existing data dirs) and record the pids."""
        find_etcd()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.n):
            self._spawn(i)
        self._save()

    def _spawn(self, i: int) -> None:
        m = self.members[i]
        fresh = not Path(m.data_dir).exists()
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        args = [
            find_etcd(),
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new" if fresh else "existing",
            "--heartbeat-interval", str(_HEARTBEAT_MS),
            "--election-timeout", str(_ELECTION_MS),
            "--logger", "zap",
            *m.tls_args(),
        ]  # fmt: skip
        with open(m.log, "ab") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill the cluster
            )
        self._procs[i] = proc
        m.pid = proc.pid

    def _is_ours(self, i: int) -> bool:
        """Whether member i's recorded pid is still the etcd we started (pids get reused)."""
        m = self.members[i]
        if m.pid is None:
            return False
        proc = self._procs.get(i)
        if proc is not None:
            return proc.poll() is None
        try:
            cmdline = Path(f"/proc/{m.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return m.data_dir.encode() in cmdline and any(c.endswith(b"etcd") for c in cmdline[:1])

    def _signal(self, i: int, sig: signal.Signals) -> None:
        m = self.members[i]
        if m.pid is not None and self._is_ours(i):
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.pid, sig)

    def _reap(self, i: int, timeout: float) -> bool:
        """Wait for member i to exit; True when it did."""
        m = self.members[i]
        proc = self._procs.get(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return True
            elif not self._is_ours(i):
                return True
            time.sleep(0.02)
        return m.pid is None or not self._is_ours(i)

    def kill_member(self, i: int) -> None:
        """SIGKILL member i, as a crash would."""
        self._signal(i, signal.SIGKILL)
        self._reap(i, 5.0)
        self._procs.pop(i, None)
        self.members[i].pid = None
        self._save()

    def restart_member(self, i: int) -> None:
        """Start member i again on its data dir (killing it first if it still runs)."""
        if self._is_ours(i):
            self.kill_member(i)
        self._spawn(i)
        self._save()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the members this cluster started (SIGKILL after ``timeout``).

        Followers go first: a leader stopped while its followers stop too waits out a
        leadership transfer (seconds); a leader left alone skips it.
        """
        leader = self.leader(timeout=0.5)
        order = [i for i in range(self.n) if i != leader]
        phases = [order] + ([[leader]] if leader is not None else [])
        for phase in phases:
            for i in phase:
                self._signal(i, signal.SIGTERM)
            for i in phase:
                if not self._reap(i, timeout):
                    self._signal(i, signal.SIGKILL)
                    self._reap(i, 2.0)
                self._procs.pop(i, None)
                self.members[i].pid = None
        if self.base_dir.exists():
            self._save()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- health --------------------------------------------------------------------------------

    def member_healthy(self, i: int, timeout: float = 1.0) -> bool:
        """etcd's /health: the member is up and the cluster has a leader (quorum)."""
        m = self.members[i]
        try:
            with urllib.request.urlopen(
                m.client_url + "/health", timeout=timeout, context=m.urlopen_context()
            ) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def leader(self, timeout: float = 1.0) -> int | None:
        """Index of the member that is leader now, as the members themselves report it."""
        for i, m in enumerate(self.members):
            if m.pid is None:
                continue
            request = urllib.request.Request(
                m.client_url + "/v3/maintenance/status", data=b"{}", method="POST"
            )
            try:
                with urllib.request.urlopen(
                    request, timeout=timeout, context=m.urlopen_context()
                ) as resp:
                    status = json.loads(resp.read())
            except (OSError, ValueError, urllib.error.URLError):
                continue
            member_id = status.get("header", {}).get("member_id")
            if member_id is not None and status.get("leader") == member_id:
                return i
        return None

    def wait_healthy(self, timeout: float = 30.0, members: list[int] | None = None) -> None:
        """Wait until every running member (or those listed) reports healthy."""
        wanted = (
            members
            if members is not None
            else [i for i in range(self.n) if self.members[i].pid is not None]
        )
        deadline = time.monotonic() + timeout
        while True:
            dead = [i for i in wanted if i in self._procs and self._procs[i].poll() is not None]
            if dead:
                logs = ", ".join(self.members[i].log for i in dead)
                raise ClusterError(f"etcd member(s) {dead} exited; see {logs}")
            sick = [i for i in wanted if not self.member_healthy(i)]
            if not sick:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"etcd member(s) {sick} not healthy after {timeout}s; see "
                    + ", ".join(self.members[i].log for i in sick)
                )
            time.sleep(0.1)
