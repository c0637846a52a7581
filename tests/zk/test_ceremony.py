"""The ceremony's phase 2 (``snarkjs zkey contribute``, wrapped as ``zk-contribute --phase
2``): a member's contribution changes the keys, proofs made under them verify in Python with
them and not with the beacon-only keys, and the order of phases is enforced. A private
ceremony in a temporary home, on the suite's closed phase 1 (the same ``pot_final.ptau``),
so without the contribution it would make exactly the suite's keys."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from glucoledger.cli.main import run
from glucoledger.errors import BackendError, VerificationError
from glucoledger.zk.chain import Window, prove_chain, verify_chain, witness
from glucoledger.zk.claims import parse
from glucoledger.zk.toolchain import Toolchain
from glucoledger.zk.windows import ZERO_ACC, commit_slots

T0 = 1_764_547_200_000
SLOTS = [120, 130, 0, 150, 175, 181, 90, 70, 160, 140]


@pytest.fixture(scope="module")
def ceremony(tc: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Toolchain:
    home = tmp_path_factory.mktemp("zk-home")
    (home / "node_modules").symlink_to(tc.home / "node_modules")
    shutil.copytree(tc.build_dir, home / "build" / tc.build_dir.name)
    mine = Toolchain(tc.profile, home)
    mine.setup_dir.mkdir(parents=True)
    for name in ("pot_0000.ptau", "pot_beacon.ptau", "pot_final.ptau"):
        shutil.copy(tc.setup_dir / name, mine.setup_dir / name)
    return mine


def test_a_phase2_contribution_changes_the_keys_and_proofs_verify(
        tc: Toolchain, ceremony: Toolchain, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BackendError) as exc:  # phase 1 is closed here
        ceremony.contribute("late")
    assert exc.value.code == "zk_ceremony_closed" and "--phase 2" in exc.value.message

    monkeypatch.setenv("GLUCOLEDGER_ZK_HOME", str(ceremony.home))
    assert run(["zk-contribute", "--name", "late", "--profile", "test"]) == 2
    assert "phase 1 is closed" in capsys.readouterr().out
    assert run(["zk-contribute", "--name", "hospital-a", "--phase", "2", "--profile",
                "test"]) == 0
    assert "contributed to phase 2 as 'hospital-a'" in capsys.readouterr().out
    made = ceremony.contribute_phase2("clinic-b")
    assert [p.name for p in made] == ["day_0002.zkey", "claim_0002.zkey"]
    keys = ceremony.finish()
    assert ceremony.ready()  # closed now
    with pytest.raises(BackendError):
        ceremony.contribute_phase2("too-late")
    assert run(["zk-contribute", "--name", "too-late", "--phase", "2", "--profile",
                "test"]) == 2

    # The keys changed where phase 2 acts (delta), not where phase 1 does (alpha, beta).
    beacon_only = tc.keys()
    for mine, theirs in ((keys.day, beacon_only.day), (keys.claim, beacon_only.claim)):
        assert mine["vk_delta_2"] != theirs["vk_delta_2"]
        assert mine["vk_alpha_1"] == theirs["vk_alpha_1"]
        assert mine["vk_beta_2"] == theirs["vk_beta_2"]
    assert keys.digest != beacon_only.digest

    # A proof under the contributed keys verifies with them (Python and snarkjs agree),
    # and not with the beacon-only keys.
    salt = 4242
    w = Window(T0, T0 + 86_400_000, commit_slots(SLOTS, salt, 10))
    counter = itertools.count(7)
    claim = parse("tir>=70")
    doc = prove_chain(ceremony, claim, [witness(w, SLOTS, salt, 10)],
                      rand=lambda: next(counter))
    verify_chain(doc, keys, claim, [w])
    step = doc["steps"][0]
    assert ceremony.snarkjs_verify("day", step["proof"], [w.commitment, ZERO_ACC,
                                                          int(step["acc"])])
    assert not tc.snarkjs_verify("day", step["proof"], [w.commitment, ZERO_ACC,
                                                        int(step["acc"])])
    with pytest.raises(VerificationError):
        verify_chain(doc, beacon_only, claim, [w])
    # the numbered files stay: the ceremony's transcript
    names = {p.name for p in Path(ceremony.setup_dir).glob("*.zkey")}
    assert {"day_0000.zkey", "day_0001.zkey", "day_0002.zkey", "day.zkey"} <= names
