"""The proof system's tooling: circom 2 (WebAssembly build from npm), snarkjs and circomlib.

Proving calls snarkjs as a subprocess (issue 19 allows it); verification never does (it is
``groth16.py``, in Python). Everything the tools make lives OUTSIDE the repository, in
``$GLUCOLEDGER_ZK_HOME`` (default ``~/.cache/glucoledger-zk``):

    node_modules/                      circom2, snarkjs, circomlib at the pinned versions
    build/<profile>-<digest>/          the circuits compiled (r1cs, wasm)
    setup/<profile>-<digest>/          pot_NNNN.ptau (phase 1), <circuit>_NNNN.zkey (phase 2),
                                       day.zkey, claim.zkey and their *.vkey.json

``digest`` is the SHA-256 of the circuit source and the profile, so a changed circuit never
reuses an old key. The setup (``setup``) is Groth16's: a powers-of-tau ceremony (phase 1)
and one phase 2 per circuit. ``contribute`` adds a consortium member's secret contribution
to phase 1; ``prepare_phase2`` closes phase 1 (beacon) and starts phase 2;
``contribute_phase2`` adds a member's contribution to both circuits' phase 2; ``finish``
closes each phase with a public, reproducible beacon (the SHA-256 of a fixed text). A setup
that only ever had the beacon is for development and tests: its toxic waste can be
recomputed by anyone (docs/threat-model.md, "Zero-knowledge claims").

Raises BackendError when a tool is missing or fails (with what to run), RejectedError when a
witness cannot be computed (the claim is false or the inputs do not open the commitments).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from ..errors import BackendError, RejectedError
from ..files import atomic_write

__all__ = ["NPM_PACKAGES", "PROFILES", "Keys", "Profile", "Toolchain", "default_profile",
           "load_keys", "zk_home"]

NPM_PACKAGES: Final = ("circom2@0.2.23", "snarkjs@0.7.6", "circomlib@2.0.5")
TIMEOUT: Final = 3600.0
CIRCUITS: Final = ("day", "claim")


@dataclass(frozen=True, slots=True)
class Profile:
    """A day circuit's shape: ``slots`` per window, ``per`` packed per field element, and the
    power of two of the ceremony that fits it."""

    name: str
    slots: int
    per: int
    power: int


PROFILES: Final = {
    # 300 five-minute slots: any local day, a 25-hour one included. 2^15 constraints.
    "day": Profile("day", 300, 25, 15),
    # The test suite's: the first 10 slots (50 minutes) of each day; a 2^11 ceremony.
    "test": Profile("test", 10, 10, 11),
}


def default_profile() -> Profile:
    """The node's profile: ``$GLUCOLEDGER_ZK_PROFILE`` ("day" unless set; "test" in tests)."""
    return PROFILES.get(os.environ.get("GLUCOLEDGER_ZK_PROFILE", "day"), PROFILES["day"])


def zk_home() -> Path:
    return Path(os.environ.get("GLUCOLEDGER_ZK_HOME") or Path.home() / ".cache/glucoledger-zk")


def _source() -> bytes:
    return resources.files(__package__).joinpath("circuits/glucose.circom").read_bytes()


def _digest(profile: Profile) -> str:
    h = hashlib.sha256(_source())
    h.update(json.dumps([profile.name, profile.slots, profile.per, profile.power]).encode())
    return f"{profile.name}-{h.hexdigest()[:16]}"


def beacon(profile: Profile) -> str:
    """The public beacon that closes each phase: reproducible by anyone."""
    return hashlib.sha256(f"glucoledger zk setup v1 {_digest(profile)}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Keys:
    """The verification keys of one profile's setup (snarkjs JSON, parsed by groth16.py)."""

    profile: Profile
    day: dict[str, Any]
    claim: dict[str, Any]

    @property
    def digest(self) -> str:
        """SHA-256 of both keys: named in a claim file so a verifier sees which setup."""
        doc = json.dumps([self.day, self.claim], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()


def load_keys(directory: Path, profile: Profile) -> Keys:
    """Read ``day.vkey.json`` and ``claim.vkey.json`` from ``directory``. Raises BackendError."""
    try:
        return Keys(profile, json.loads((directory / "day.vkey.json").read_text()),
                    json.loads((directory / "claim.vkey.json").read_text()))
    except (OSError, ValueError) as exc:
        raise BackendError(f"no verification keys for the {profile.name!r} profile in "
                           f"{directory} ({exc.__class__.__name__}): run `glucoledger "
                           "zk-setup` first, or pass the keys' folder") from None


class Toolchain:
    """circom2 and snarkjs under ``home`` (``zk_home()``) for one profile."""

    def __init__(self, profile: Profile, home: Path | None = None) -> None:
        self.profile = profile
        self.home = home or zk_home()
        self.build_dir = self.home / "build" / _digest(profile)
        self.setup_dir = self.home / "setup" / _digest(profile)

    # -- tools ---------------------------------------------------------------------------
    def _bin(self, name: str) -> Path:
        path = self.home / "node_modules" / ".bin" / name
        if not path.exists():
            raise BackendError(f"{name} is not installed under {self.home}: run "
                               "`glucoledger zk-setup` (it installs circom2, snarkjs and "
                               "circomlib from npm)", code="zk_toolchain")
        return path

    def installed(self) -> bool:
        return all((self.home / "node_modules" / ".bin" / n).exists()
                   for n in ("circom2", "snarkjs"))

    def install(self) -> None:
        """npm install the pinned packages under ``home``. Raises BackendError."""
        if shutil.which("npm") is None:
            raise BackendError("npm is not installed: install Node.js 18 or later (with npm)",
                               code="zk_toolchain")
        self.home.mkdir(parents=True, exist_ok=True)
        self._run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(self.home),
                   *NPM_PACKAGES], what="npm install")

    def _run(self, argv: Sequence[str], *, what: str, cwd: Path | None = None,
             quiet_errors: bool = False) -> str:
        try:
            done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{what} could not run: {exc.__class__.__name__}",
                               code="zk_toolchain") from None
        if done.returncode != 0:
            if quiet_errors:  # the tool's output may carry private inputs: never repeat it
                raise BackendError(f"{what} failed (exit {done.returncode})",
                                   code="zk_toolchain")
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise BackendError(f"{what} failed: {' | '.join(tail)[:600]}", code="zk_toolchain")
        return done.stdout

    def snarkjs(self, *args: str, what: str, quiet_errors: bool = False) -> str:
        return self._run([str(self._bin("snarkjs")), *args], what=f"snarkjs {what}",
                         quiet_errors=quiet_errors)

    # -- build ---------------------------------------------------------------------------
    def build(self) -> Path:
        """Compile the day and claim circuits (once per source and profile)."""
        out = self.build_dir
        if (out / "day_js" / "day.wasm").exists() and (out / "claim_js" / "claim.wasm").exists():
            return out
        circom = self._bin("circom2")
        out.mkdir(parents=True, exist_ok=True)
        # circom2 runs under WASI and sees only its working folder: copy the sources in.
        atomic_write(out / "glucose.circom", _source())
        lib = out / "lib"
        if not lib.exists():
            shutil.copytree(self.home / "node_modules" / "circomlib" / "circuits", lib)
        p = self.profile
        atomic_write(out / "day.circom", (
            'pragma circom 2.0.0;\ninclude "glucose.circom";\ncomponent main {public '
            f"[dayCommit, accInCommit, accOutCommit]}} = Day({p.slots}, {p.per});\n").encode())
        atomic_write(out / "claim.circom", (
            b'pragma circom 2.0.0;\ninclude "glucose.circom";\n'
            b"component main {public [accCommit, a, b, c, d]} = Claim();\n"))
        for name in ("day", "claim"):
            self._run([str(circom), f"{name}.circom", "--r1cs", "--wasm", "--O2", "-l", "lib",
                       "-o", "."], what=f"circom {name}.circom", cwd=out)
        return out

    # -- setup ---------------------------------------------------------------------------
    def start(self) -> None:
        """Phase 1 begins (``pot_0000.ptau``) and the circuits are built."""
        self.build()
        self.setup_dir.mkdir(parents=True, exist_ok=True)
        first = self.setup_dir / "pot_0000.ptau"
        if not first.exists():
            self.snarkjs("powersoftau", "new", "bn128", str(self.profile.power), str(first),
                         what="powersoftau new")

    def _last(self, pattern: str) -> Path:
        found = sorted(self.setup_dir.glob(pattern))
        if not found:
            raise BackendError("no ceremony in progress: run `glucoledger zk-setup` first",
                               code="zk_toolchain")
        return found[-1]

    def contribute(self, name: str) -> Path:
        """Add one secret contribution to phase 1 (before ``prepare_phase2``): fresh entropy
        from the operating system, never stored. Returns the new file (send it to the next
        member). Raises BackendError."""
        if self.phase1_closed():
            raise BackendError("phase 1 of the ceremony is closed: contribute to phase 2 "
                               "(`zk-contribute --phase 2`)", code="zk_ceremony_closed")
        self.start()
        last = self._last("pot_*.ptau")
        nxt = self.setup_dir / f"pot_{int(last.stem[4:]) + 1:04d}.ptau"
        self.snarkjs("powersoftau", "contribute", str(last), str(nxt), f"--name={name}",
                     f"-e={secrets.token_hex(32)}", what="powersoftau contribute",
                     quiet_errors=True)
        return nxt

    def prepare_phase2(self) -> None:
        """Close phase 1 with the beacon and prepare phase 2 (``pot_final.ptau``), then start
        each circuit's phase 2 (``<circuit>_0000.zkey``, ``groth16 setup``). Idempotent:
        after it, phase 1 takes no more contributions."""
        self.start()
        d, b = self.setup_dir, beacon(self.profile)
        final = d / "pot_final.ptau"
        if not final.exists():
            self.snarkjs("powersoftau", "beacon", str(self._last("pot_[0-9]*.ptau")),
                         str(d / "pot_beacon.ptau"), b, "10", "-n=beacon",
                         what="powersoftau beacon")
            self.snarkjs("powersoftau", "prepare", "phase2", str(d / "pot_beacon.ptau"),
                         str(final), what="powersoftau prepare phase2")
        for name in CIRCUITS:
            if not (d / f"{name}_0000.zkey").exists():
                self.snarkjs("groth16", "setup", str(self.build_dir / f"{name}.r1cs"),
                             str(final), str(d / f"{name}_0000.zkey"),
                             what=f"groth16 setup {name}")

    def phase1_closed(self) -> bool:
        return (self.setup_dir / "pot_final.ptau").exists()

    def contribute_phase2(self, name: str) -> list[Path]:
        """Add one secret contribution to each circuit's phase 2 (``snarkjs zkey
        contribute``), after phase 1 is closed and before ``finish``: fresh entropy from the
        operating system, never stored. Returns the new key files (hand them to the next
        member, with the ceremony folder). Raises BackendError."""
        if self.ready():
            raise BackendError("the ceremony is closed (the verification keys were "
                               "exported): contributions come before `zk-setup`",
                               code="zk_ceremony_closed")
        self.prepare_phase2()
        out = []
        for circuit in CIRCUITS:
            last = self._last(f"{circuit}_[0-9]*.zkey")
            nxt = self.setup_dir / f"{circuit}_{int(last.stem.split('_')[-1]) + 1:04d}.zkey"
            self.snarkjs("zkey", "contribute", str(last), str(nxt), f"--name={name}",
                         f"-e={secrets.token_hex(32)}", what=f"zkey contribute {circuit}",
                         quiet_errors=True)
            out.append(nxt)
        return out

    def finish(self) -> Keys:
        """Close phase 1 with the beacon and prepare phase 2 (unless done), close each
        circuit's phase 2 with the beacon after its last contribution, export the
        verification keys. Idempotent. The numbered files stay: they are the ceremony's
        transcript (``snarkjs zkey verify`` checks each against the circuit and the
        ptau)."""
        if self.ready():
            return self.keys()
        self.prepare_phase2()
        d, b = self.setup_dir, beacon(self.profile)
        for name in CIRCUITS:
            self.snarkjs("zkey", "beacon", str(self._last(f"{name}_[0-9]*.zkey")),
                         str(d / f"{name}.zkey"), b, "10", "-n=beacon",
                         what=f"zkey beacon {name}")
            self.snarkjs("zkey", "export", "verificationkey", str(d / f"{name}.zkey"),
                         str(d / f"{name}.vkey.json"), what="zkey export verificationkey")
        return self.keys()

    def keys(self) -> Keys:
        return load_keys(self.setup_dir, self.profile)

    def ready(self) -> bool:
        return (self.setup_dir / "claim.vkey.json").exists()

    # -- prove ---------------------------------------------------------------------------
    def prove(self, circuit: str, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """A Groth16 proof of ``circuit`` ("day" or "claim") on ``inputs``: (proof, public
        signals). The inputs (private readings and salts) go to a private temporary folder,
        removed afterwards. Raises RejectedError when no witness exists (a false claim, or
        readings that do not open the commitment), BackendError for a tool failure."""
        if not self.ready():
            raise BackendError(f"the {self.profile.name!r} zero-knowledge setup is not made: "
                               "run `glucoledger zk-setup`", code="zk_toolchain")
        with tempfile.TemporaryDirectory(prefix="glucoledger-zk-") as tmp:
            t = Path(tmp)
            atomic_write(t / "input.json", json.dumps(
                {k: (str(v) if isinstance(v, int) else [str(x) for x in v])
                 for k, v in inputs.items()}).encode())
            wasm = self.build_dir / f"{circuit}_js" / f"{circuit}.wasm"
            try:
                self.snarkjs("wtns", "calculate", str(wasm), str(t / "input.json"),
                             str(t / "w.wtns"), what="witness", quiet_errors=True)
            except BackendError:
                raise RejectedError(f"no proof exists: the {circuit} constraints do not hold "
                                    "for these readings (the claim is false, or the readings "
                                    "do not open the ledger's commitment)",
                                    code="unprovable") from None
            self.snarkjs("groth16", "prove", str(self.setup_dir / f"{circuit}.zkey"),
                         str(t / "w.wtns"), str(t / "proof.json"), str(t / "public.json"),
                         what="groth16 prove", quiet_errors=True)
            proof = json.loads((t / "proof.json").read_text())
            public = [int(x) for x in json.loads((t / "public.json").read_text())]
        return proof, public

    def snarkjs_verify(self, circuit: str, proof: dict[str, Any], public: Sequence[int]) -> bool:
        """snarkjs's own verifier (for the agreement tests; the product never calls it)."""
        with tempfile.TemporaryDirectory(prefix="glucoledger-zkv-") as tmp:
            t = Path(tmp)
            atomic_write(t / "proof.json", json.dumps(proof).encode())
            atomic_write(t / "public.json", json.dumps([str(x) for x in public]).encode())
            done = subprocess.run([str(self._bin("snarkjs")), "groth16", "verify",
                                   str(self.setup_dir / f"{circuit}.vkey.json"),
                                   str(t / "public.json"), str(t / "proof.json")],
                                  capture_output=True, text=True, timeout=300, check=False)
            return done.returncode == 0 and "OK" in done.stdout
