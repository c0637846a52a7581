"""C2SP cosignature/v1 lines, checked against a second implementation written here.

The functions prefixed ``spec_`` below are an independent reading of c2sp.org/signed-note
(note = text, blank line, lines "U+2014 SP name SP base64(key id || signature)") and
c2sp.org/tlog-cosignature ("Format" and "Ed25519 signed message": key id =
SHA-256(name || 0x0A || 0x04 || pub)[:4]; signature = u64 big-endian timestamp || Ed25519
over "cosignature/v1\\ntime <t>\\n" || note text). They use hashlib, base64 and pyca's Ed25519
directly, and nothing from glucoledger, so a shared misreading cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from glucoledger import crypto
from glucoledger.errors import SignatureError
from glucoledger.ledger.checkpoint import Checkpoint, NoteVerifier, parse_note, sign_checkpoint
from glucoledger.ledger.finality import MemberSchedule, verify_final_at

DASH = "\u2014"


def spec_key_id(name: str, pub: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x04" + pub).digest()[:4]


def spec_split(note: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    text, _, sigs = note.rpartition(b"\n\n")
    lines = sigs.decode().split("\n")
    assert lines[-1] == ""
    out = []
    for line in lines[:-1]:
        dash, name, b64 = line.split(" ")
        assert dash == DASH
        out.append((name, base64.b64decode(b64, validate=True)))
    return text + b"\n", out


def spec_verify_cosignature(note: bytes, name: str, pub: bytes) -> int:
    """Return the timestamp of ``name``'s valid cosignature; raise if none verifies."""
    text, sigs = spec_split(note)
    kid = spec_key_id(name, pub)
    for signer, raw in sigs:
        if signer == name and raw[:4] == kid:
            assert len(raw) == 4 + 8 + 64
            (stamp,) = struct.unpack(">Q", raw[4:12])
            msg = b"cosignature/v1\n" + b"time " + str(stamp).encode() + b"\n" + text
            Ed25519PublicKey.from_public_bytes(pub).verify(raw[12:], msg)
            return int(stamp)
    raise LookupError(f"no cosignature by {name}")


def spec_cosign(note_text: bytes, name: str, key: Ed25519PrivateKey, stamp: int) -> str:
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    msg = b"cosignature/v1\ntime %d\n" % stamp + note_text
    raw = spec_key_id(name, pub) + struct.pack(">Q", stamp) + key.sign(msg)
    return f"{DASH} {name} {base64.b64encode(raw).decode()}\n"


CP = Checkpoint("glucoledger/test", 20852163, bytes(range(32)), 7, bytes(32), 1679315147_123)


def test_a_members_cosignature_verifies_with_the_independent_implementation() -> None:
    key = crypto.generate()
    note = sign_checkpoint(CP, key, "org-a.example").encode()
    assert spec_verify_cosignature(note, "org-a.example", key.public.raw) == 1679315147
    with pytest.raises(InvalidSignature):
        spec_verify_cosignature(note.replace(b"20852163", b"20852164"), "org-a.example",
                                key.public.raw)


def test_a_witness_cosignature_made_from_the_spec_verifies_here() -> None:
    witness = Ed25519PrivateKey.generate()
    pub = witness.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    member = crypto.generate()
    note = sign_checkpoint(CP, member, "org-a").encode()
    cosigned = note + spec_cosign(CP.body(), "witness.example/w1", witness, 1700000000).encode()
    v = NoteVerifier("witness.example/w1", crypto.PublicKey("ed25519", pub))
    # The witness's standard vkey (type 0x04) parses to the same verifier.
    assert NoteVerifier.parse(v.cosigner_vkey()) == v
    assert v.cosigner_vkey().split("+")[1] == spec_key_id("witness.example/w1", pub).hex()
    parsed = parse_note(cosigned)
    members = [NoteVerifier("org-a", member.public), v]
    assert parsed.verify(members, need=2) == ["org-a", "witness.example/w1"]
    assert verify_final_at(cosigned, MemberSchedule.fixed(members, 2)) == CP
    # Changing the timestamp inside the line breaks the signature.
    line = cosigned.rsplit(b"\n", 2)[-2].decode()
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1
    bad = cosigned.replace(line.encode(), f"{DASH} witness.example/w1 "
                           f"{base64.b64encode(bytes(raw)).decode()}".encode())
    with pytest.raises(SignatureError):
        parse_note(bad).verify([v])


def test_a_cosignature_by_another_key_under_the_same_name_is_ignored_not_trusted() -> None:
    stranger = Ed25519PrivateKey.generate()
    member = crypto.generate()
    note = CP.body() + b"\n" + spec_cosign(CP.body(), "org-a", stranger, 1).encode()
    with pytest.raises(SignatureError, match="0 valid signature"):
        parse_note(note).verify([NoteVerifier("org-a", member.public)])
