"""A member's TLS certificate authority rotated by governance (``gov.rotate_tls``) on a
running consortium: real etcd (TLS, client certificates, auth) and three node processes.

org-0 (which also holds etcd's root in ``cluster up``) makes its next identity
(`consortium rotate-cert`); the members propose, cosign and submit the rotation; from the
height it states every node writes the new trust bundle and org-0's node switches to its
new certificates (and re-issues etcd root's client certificate from its new CA). The
operators restart their etcd members with the new bundle (etcd 3.4 reads trusted CAs only
at start); from then on org-0's old certificate is refused in the TLS handshake by every
etcd member, its new one works, etcd's root still works, and the consortium goes on
finalizing blocks, through org-0 as well. (The README walk-through rotates org-1's.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from glucoledger.crypto import tls
from glucoledger.node.genesis_file import Genesis
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering._gateway import Gateway, GatewayError, TlsFiles, b64

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until
from .test_rejoin import cli

PREFIX = f"/glucoledger/{etcd_chain_key(CHAIN)}/"
R = 0  # the rotating member
NAME = f"org-{R}"


def _put_own_key(c: Consortium, files: TlsFiles, members: range | tuple[int, ...] = (R,)
                 ) -> str | None:
    """A put to the member's own side key through each of these etcd members (default: its
    own organization's, the only one whose client port accepts its certificates): None when
    all accept, else the first refusal."""
    for endpoint in (c.etcd_endpoint(i) for i in members):
        for _ in range(3):  # a handshake that timed out (a member just restarted, a loaded
            gw = Gateway([endpoint], 10.0, files)  # machine: CI saw one at 3 s) says nothing
            try:
                gw.call("/v3/kv/put", {"key": b64(f"{PREFIX}sig/{NAME}/probe"),
                                       "value": b64("x")})
                break
            except GatewayError as exc:
                if "TimeoutError" not in str(exc):
                    return str(exc)
            finally:
                gw.close()
        else:
            return "TimeoutError: every try timed out"
    return None


def test_a_rotated_tls_ca_takes_over_at_its_height_and_the_old_certificate_is_refused(
        consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    c.submit(patient_envelopes(3))
    wait_until(c.converged, 30, "convergence")
    mine = c.folders[R] / "tls"
    password = json.loads((mine / "etcd-user.json").read_text())["password"]
    old = tmp_path / "old"
    shutil.copytree(mine, old)
    old_files = TlsFiles(str(mine / "trust.pem"), str(old / "etcd-client.pem"),
                         str(old / "etcd-client.key"), f"member:{NAME}", password)
    assert _put_own_key(c, old_files) is None  # the positive control, before

    made = cli("consortium", "rotate-cert", "--data", c.folders[R])
    assert made.returncode == 0, made.stdout + made.stderr
    new_ca = mine / "next" / "ca.pem"
    assert new_ca.exists() and (mine / "next" / "ca.key").stat().st_mode & 0o077 == 0
    assert (mine / "ca.pem").read_bytes() != new_ca.read_bytes()  # nothing switched yet
    proposal = tmp_path / "rotate-cert.cbor"
    out = cli("consortium", "propose", "rotate-cert", "--name", NAME, "--ca", new_ca,
              "--out", proposal, "--data", c.folders[1])
    assert out.returncode == 0 and "gov.rotate_tls" in out.stdout, out.stdout + out.stderr
    assert "CA sha256:" in out.stdout
    signed = cli("consortium", "cosign", proposal, "--data", c.folders[R])
    assert signed.returncode == 0, signed.stdout + signed.stderr
    done = cli("consortium", "submit", proposal, "--to", c.urls[1], "--data", c.folders[1])
    assert done.returncode == 0 and " ok" in done.stdout, done.stdout + done.stderr
    h = int(done.stdout.split(" block ")[1].split()[0]) + 1  # in force from the next block

    # The bundle in force from h: the genesis CAs with the rotating member's replaced.
    genesis = Genesis.load(c.folders[0] / "genesis.json")
    new_ca_pem = new_ca.read_bytes()
    expected = b"".join(new_ca_pem if m.name == NAME else m.tls_ca for m in genesis.members)
    c.submit(patient_envelopes(2), prefer=1)
    wait_until(lambda: all((f / "tls" / "trust.pem").read_bytes() == expected
                           for f in c.folders), 60, "every node to write the new bundle")
    assert tls.fingerprint((mine / "ca.pem").read_bytes()) == tls.fingerprint(new_ca_pem)
    assert not (mine / "next" / "ca.pem").exists()
    assert (mine / "etcd-client.pem").read_bytes() != (old / "etcd-client.pem").read_bytes()
    for i in range(3):  # status.json is written at the end of the node's round
        wait_until(lambda i=i: "restart this member's etcd" in (c.status(i)["tls"] or ""), 30,
                   f"node {i}'s status to say what its operator must do")

    # The operators restart their etcd members with the new bundle, together: a member on
    # the old bundle cannot peer with the rotated member's, which serves its new certificate.
    (c.base / "trust.pem").write_bytes(expected)
    cluster = c.etcd
    for i in range(3):
        cluster.restart_member(i)
    cluster.wait_healthy(60)

    # The old certificate: refused by every etcd member, in the TLS handshake (its own, now
    # on the new CA; the others never took its client certificates).
    for i in range(3):
        refused = _put_own_key(c, old_files, (i,))
        assert refused is not None and "SSL" in refused, (i, refused)
    new_files = TlsFiles(str(mine / "trust.pem"), str(mine / "etcd-client.pem"),
                         str(mine / "etcd-client.key"), f"member:{NAME}", password)
    assert _put_own_key(c, new_files) is None
    # etcd's root (in org-0's folder) works with its re-issued certificate.
    admin = c.etcd_admin(0)
    try:
        assert "member:org-2" in admin.users()
    finally:
        admin.close()
    # ... and the consortium goes on, through the rotated member too, past h.
    for prefer in (R, (R + 1) % 3, (R + 2) % 3):
        assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(2), prefer=prefer))
    wait_until(lambda: (s := c.converged()) and s["final_height"] > h and s, 90,
               "finality after the rotation on all three nodes")
    assert all(not c.status(i)["diverged"] and c.status(i)["refusing"] is None
               for i in range(3))
