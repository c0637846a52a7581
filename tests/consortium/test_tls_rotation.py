"""A member's TLS certificate authority rotated by governance (``gov.rotate_tls``) on a
running consortium: real etcd (TLS, client certificates, auth) and three node processes.

org-1 makes its next identity (`consortium rotate-cert`); the members propose, cosign and
submit the rotation; from the height it states every node writes the new trust bundle and
org-1's node switches to its new certificates. The operators restart their etcd members
with the new bundle (etcd 3.4 reads trusted CAs only at start); from then on org-1's old
certificate is refused in the TLS handshake by every etcd member, its new one works, and
the consortium goes on finalizing blocks, through org-1 as well.
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


def _put_own_key(c: Consortium, member: int, files: TlsFiles) -> str | None:
    """A put to member's own side key through every etcd member: None when all accept, else
    the first refusal."""
    for endpoint in str(c.state["etcd"]).partition("://")[2].split(","):
        gw = Gateway([endpoint], 3.0, files)
        try:
            gw.call("/v3/kv/put", {"key": b64(f"{PREFIX}sig/org-{member}/probe"),
                                   "value": b64("x")})
        except GatewayError as exc:
            return str(exc)
        finally:
            gw.close()
    return None


def test_a_rotated_tls_ca_takes_over_at_its_height_and_the_old_certificate_is_refused(
        consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    c.submit(patient_envelopes(3))
    wait_until(c.converged, 30, "convergence")
    tls1 = c.folders[1] / "tls"
    password = json.loads((tls1 / "etcd-user.json").read_text())["password"]
    old = tmp_path / "old-org-1"
    shutil.copytree(tls1, old)
    old_files = TlsFiles(str(tls1 / "trust.pem"), str(old / "etcd-client.pem"),
                         str(old / "etcd-client.key"), "member:org-1", password)
    assert _put_own_key(c, 1, old_files) is None  # the positive control, before

    made = cli("consortium", "rotate-cert", "--data", c.folders[1])
    assert made.returncode == 0, made.stdout + made.stderr
    new_ca = tls1 / "next" / "ca.pem"
    assert new_ca.exists() and (tls1 / "next" / "ca.key").stat().st_mode & 0o077 == 0
    assert (tls1 / "ca.pem").read_bytes() != new_ca.read_bytes()  # nothing switched yet
    proposal = tmp_path / "rotate-cert-org-1.cbor"
    out = cli("consortium", "propose", "rotate-cert", "--name", "org-1", "--ca", new_ca,
              "--out", proposal, "--data", c.folders[0])
    assert out.returncode == 0 and "gov.rotate_tls" in out.stdout and "CA sha256:" in out.stdout, \
        out.stdout + out.stderr
    signed = cli("consortium", "cosign", proposal, "--data", c.folders[1])
    assert signed.returncode == 0, signed.stdout + signed.stderr
    done = cli("consortium", "submit", proposal, "--to", c.urls[0], "--data", c.folders[0])
    assert done.returncode == 0 and " ok" in done.stdout, done.stdout + done.stderr
    h = int(done.stdout.split(" block ")[1].split()[0]) + 1  # in force from the next block

    # The bundle in force from h: the genesis CAs with org-1's replaced.
    genesis = Genesis.load(c.folders[0] / "genesis.json")
    new_ca_pem = new_ca.read_bytes()
    expected = b"".join(new_ca_pem if m.name == "org-1" else m.tls_ca
                        for m in genesis.members)
    c.submit(patient_envelopes(2))
    wait_until(lambda: all((f / "tls" / "trust.pem").read_bytes() == expected
                           for f in c.folders), 60, "every node to write the new bundle")
    assert tls.fingerprint((tls1 / "ca.pem").read_bytes()) == tls.fingerprint(new_ca_pem)
    assert not (tls1 / "next" / "ca.pem").exists()
    assert (tls1 / "etcd-client.pem").read_bytes() != (old / "etcd-client.pem").read_bytes()
    for i in range(3):  # status.json is written at the end of the node's round
        wait_until(lambda i=i: "restart this member's etcd" in (c.status(i)["tls"] or ""), 30,
                   f"node {i}'s status to say what its operator must do")

    # The operators restart their etcd members with the new bundle, together: a member on
    # the old bundle cannot peer with org-1's member, which serves its new certificate.
    (c.base / "trust.pem").write_bytes(expected)
    cluster = c.etcd
    for i in range(3):
        cluster.restart_member(i)
    cluster.wait_healthy(60)

    # org-1's old certificate: refused by every etcd member, in the TLS handshake.
    refused = _put_own_key(c, 1, old_files)
    assert refused is not None and "SSL" in refused, refused
    new_files = TlsFiles(str(tls1 / "trust.pem"), str(tls1 / "etcd-client.pem"),
                         str(tls1 / "etcd-client.key"), "member:org-1", password)
    assert _put_own_key(c, 1, new_files) is None
    # ... and the consortium goes on, through org-1 too, past h.
    for prefer in (1, 0, 2):
        assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(2), prefer=prefer))
    st = wait_until(lambda: (s := c.converged()) and s["final_height"] > h and s, 90,
                    "finality after the rotation on all three nodes")
    assert "org-1" in st["final_signers"] or len(st["final_signers"]) >= 2
    assert all(not c.status(i)["diverged"] and c.status(i)["refusing"] is None
               for i in range(3))
