"""C2SP signed notes and tlog checkpoints.

The PeterNeumann vector is the published example of golang.org/x/mod/sumdb/note (the reference
implementation of c2sp.org/signed-note): key id, verifier-key form and signature bytes.
"""

from __future__ import annotations

import base64

import pytest

from glucoledger import crypto
from glucoledger.errors import MalformedError, SignatureError
from glucoledger.ledger.checkpoint import (
    Checkpoint,
    NoteVerifier,
    SignedNote,
    parse_note,
    sign_checkpoint,
)

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (b"If you think cryptography is the answer to your problem,\n"
           b"then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + ("\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
                     "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n").encode()


def test_go_note_vector_verifies() -> None:
    v = NoteVerifier.parse(GO_VKEY)
    assert v.vkey() == GO_VKEY
    assert parse_note(GO_NOTE).verify([v]) == ["PeterNeumann"]


def test_go_note_vector_signs_byte_for_byte() -> None:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[-1])[1:]
    key = crypto.PrivateKey.from_private_bytes("ed25519", seed)
    assert SignedNote(GO_TEXT, ()).add(key, "PeterNeumann").encode() == GO_NOTE


def test_altered_note_fails() -> None:
    v = NoteVerifier.parse(GO_VKEY)
    bad = GO_NOTE.replace(b"answer", b"Answer")
    with pytest.raises(SignatureError):
        parse_note(bad).verify([v])


@pytest.mark.parametrize("vkey", [
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
    "PeterNeumann+c74f20a3+AhpcqQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong type
    "PeterNeumann+c74f20a3",
    "PeterNeumann+c74f20a3+!!!",
])
def test_bad_verifier_keys(vkey: str) -> None:
    with pytest.raises(MalformedError):
        NoteVerifier.parse(vkey)


def test_checkpoint_roundtrip_and_single_key_verification() -> None:
    key = crypto.generate()
    cp = Checkpoint("glucoledger/test", 12, bytes(range(32)), 3, bytes(32), 1700000000000)
    note = sign_checkpoint(cp, key, "node-1").encode()
    assert note.startswith(b"glucoledger/test\n12\n")
    parsed = parse_note(note)
    verifier = NoteVerifier.parse(NoteVerifier("node-1", key.public).vkey())
    parsed.verify([verifier])
    assert Checkpoint.parse_body(parsed.text) == cp
    with pytest.raises(SignatureError):
        parsed.verify([NoteVerifier("node-1", crypto.generate().public)])


@pytest.mark.parametrize("note", [
    b"", b"no blank line\n", b"a\n1\nAAAA\n\n- x AAAA\n",
    b"origin\n1\n" + base64.b64encode(bytes(32)) + b"\n\nnot a signature line\n",
])
def test_malformed_notes(note: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_note(note)


@pytest.mark.parametrize("body", [
    b"o\n01\n" + base64.b64encode(bytes(32))
    + b"\nheight 1\nblock " + base64.b64encode(bytes(32)) + b"\ntime 1\n",
    b"o\n1\n" + base64.b64encode(bytes(31))
    + b"\nheight 1\nblock " + base64.b64encode(bytes(32)) + b"\ntime 1\n",
    b"o\n1\n" + base64.b64encode(bytes(32))
    + b"\nheight x\nblock " + base64.b64encode(bytes(32)) + b"\ntime 1\n",
    b"o\n1\n" + base64.b64encode(bytes(32)) + b"\n",
])
def test_malformed_checkpoint_bodies(body: bytes) -> None:
    with pytest.raises(MalformedError):
        Checkpoint.parse_body(body)


def test_verifier_key_whose_base64_contains_plus() -> None:
    # transparency-dev/formats note tests: a type 0x01 key whose base64 holds a '+'.
    vkey = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
    assert NoteVerifier.parse(vkey).vkey() == vkey
