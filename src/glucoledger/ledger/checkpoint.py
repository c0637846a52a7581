"""Checkpoints in the C2SP tlog-checkpoint format, signed as C2SP signed notes.

Note text (c2sp.org/tlog-checkpoint)::

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, base64>\\n
    height <block height>\\n          (extension lines)
    block <block hash, base64>\\n
    time <block time, ms>\\n

then a blank line and one signature line per signer (c2sp.org/signed-note)::

    \\u2014 <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\\n

The key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key) for
Ed25519 (signature type 0x01). A verifier key is written ``<name>+<hex key id>+<base64(0x01 ||
public key)>`` (the "vkey" form used by the Go note package).

Cosignatures (c2sp.org/tlog-cosignature, "Format" and "Ed25519 signed message"): a member
node cosigns a checkpoint with signature type 0x04. Its key id is SHA-256(name || 0x0A ||
0x04 || public key)[:4]; the line's value is key id || timestamp (u64, big-endian, POSIX
seconds, at most 2^63 - 1) || Ed25519 signature over::

    cosignature/v1\n
    time <timestamp, decimal, no leading zeroes>\n
    <the whole note text, final newline included>

Nodes cosign with the block's time (so every node writes the same bytes for a block and no
clock is read here). The same Ed25519 node key verifies both types (the spec allows one key
under several algorithm bytes); ``NoteVerifier.cosigner_vkey`` is its type-0x04 vkey for
standard witness tooling. Members' cosignatures also vouch for the extension lines (height,
block, time): the finality rule needs identical note texts, not only identical first three
lines.

Verification raises (MalformedError, SignatureError) or returns the verified Checkpoint.
Unknown signers are ignored, as the spec says; at least one known signer must verify.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from ..crypto import PrivateKey, PublicKey, sha256
from ..errors import MalformedError, SignatureError

__all__ = ["Checkpoint", "NoteVerifier", "SignedNote", "cosignature_message", "parse_note",
           "sign_checkpoint"]

_DASH = "\u2014"
_MAX_NOTE = 64 * 1024
_ED25519 = 0x01
_COSIG_V1 = 0x04
_MAX_TIMESTAMP = (1 << 63) - 1


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs (c2sp.org/tlog-cosignature, Ed25519 signed message)."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError("a cosignature timestamp is 0..2^63-1 POSIX seconds")
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedError(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    height: int
    block_hash: bytes
    time: int

    def body(self) -> bytes:
        return (
            f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
            f"height {self.height}\nblock {base64.b64encode(self.block_hash).decode()}\n"
            f"time {self.time}\n"
        ).encode()

    @classmethod
    def parse_body(cls, text: bytes) -> Checkpoint:
        try:
            lines = text.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise MalformedError("checkpoint is not UTF-8 text") from None
        if len(lines) != 7 or lines[-1] != "":
            raise MalformedError(
                "checkpoint body must be origin, size, root, then height, block, time lines"
            )
        origin, size, root, height, block, time = lines[:6]
        if not origin:
            raise MalformedError("checkpoint origin line is empty")
        if not (size.isascii() and size.isdecimal()) or (size != "0" and size.startswith("0")):
            raise MalformedError(f"checkpoint size {size!r} is not a decimal number")
        root_b = _b64decode(root, "checkpoint root")
        if len(root_b) != 32:
            raise MalformedError("checkpoint root must be a 32-byte hash")
        ext: dict[str, str] = {}
        for line in (height, block, time):
            key, _, val = line.partition(" ")
            ext[key] = val
        if set(ext) != {"height", "block", "time"} or not all(
                ext[k].isascii() and ext[k].isdecimal() for k in ("height", "time")):
            raise MalformedError("checkpoint extension lines must be height, block, time")
        block_b = _b64decode(ext["block"], "checkpoint block hash")
        if len(block_b) != 32:
            raise MalformedError("checkpoint block hash must be 32 bytes")
        return cls(origin, int(size), root_b, int(ext["height"]), block_b, int(ext["time"]))


def _key_id(name: str, pub: bytes, alg: int = _ED25519) -> bytes:
    return sha256(name.encode() + b"\n" + bytes([alg]) + pub)[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError("a note key name is non-empty, without spaces or '+'")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    name: str
    key: PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.key.alg != "ed25519":
            raise ValueError("note verifier keys are Ed25519")

    @property
    def key_id(self) -> bytes:
        return _key_id(self.name, self.key.raw)

    @property
    def cosigner_key_id(self) -> bytes:
        return _key_id(self.name, self.key.raw, _COSIG_V1)

    def vkey(self) -> str:
        enc = base64.b64encode(bytes([_ED25519]) + self.key.raw).decode()
        return f"{self.name}+{self.key_id.hex()}+{enc}"

    def cosigner_vkey(self) -> str:
        """The type-0x04 vkey of this key (c2sp.org/tlog-cosignature: "MAY be encoded")."""
        enc = base64.b64encode(bytes([_COSIG_V1]) + self.key.raw).decode()
        return f"{self.name}+{self.cosigner_key_id.hex()}+{enc}"

    def check(self, text: bytes, kid: bytes, sig: bytes) -> bool:
        """Whether a signature line (key id, value) is this key's, checking it if so.

        False: the line is another key's or another type's (ignored, as the spec says).
        Raises SignatureError when the line is this key's and does not verify.
        """
        if kid == self.key_id:
            data = text
        elif kid == self.cosigner_key_id and len(sig) == 72:
            stamp = int.from_bytes(sig[:8], "big")
            if stamp > _MAX_TIMESTAMP:
                raise SignatureError(f"cosignature by {self.name} has an out-of-range time")
            data, sig = cosignature_message(text, stamp), sig[8:]
        else:
            return False
        try:
            self.key.verify_raw(data, sig)
        except SignatureError:
            raise SignatureError(
                f"checkpoint signature by {self.name} does not verify: the note was "
                "altered or signed by another key") from None
        return True

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise MalformedError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hexid, enc = parts
        raw = _b64decode(enc, "verifier key")
        if len(raw) != 33 or raw[0] not in (_ED25519, _COSIG_V1):
            raise MalformedError("verifier key must be an Ed25519 key (type 0x01 or cosignature "
                                 "type 0x04, 32 bytes)")
        try:
            verifier = cls(name, PublicKey("ed25519", raw[1:]))
        except ValueError as exc:
            raise MalformedError(str(exc)) from None
        expected = verifier.key_id if raw[0] == _ED25519 else verifier.cosigner_key_id
        if expected.hex() != hexid.lower():
            raise MalformedError("verifier key id does not match its name and key")
        return verifier


@dataclass(frozen=True, slots=True)
class SignedNote:
    text: bytes
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key id, signature)

    def encode(self) -> bytes:
        lines = [
            f"{_DASH} {name} {base64.b64encode(kid + sig).decode()}\n"
            for name, kid, sig in self.signatures
        ]
        return self.text + b"\n" + "".join(lines).encode()

    def verify(self, verifiers: Sequence[NoteVerifier], *, need: int = 1) -> list[str]:
        """Return names of the verifiers whose signatures verify; raise if fewer than ``need``."""
        good: list[str] = []
        for v in verifiers:
            for name, kid, sig in self.signatures:
                if name == v.name and v.check(self.text, kid, sig):
                    good.append(name)
                    break
        if len(good) < need:
            raise SignatureError(
                f"checkpoint has {len(good)} valid signature(s) from the given keys; "
                f"{need} needed. Check that you passed the right node key(s)."
            )
        return good

    def add(self, key: PrivateKey, name: str) -> SignedNote:
        """Add a plain Ed25519 (type 0x01) signature line."""
        _check_name(name)
        sig = key.sign_note(self.text)
        return self._with((name, _key_id(name, key.public.raw), sig))

    def cosign(self, key: PrivateKey, name: str, timestamp: int) -> SignedNote:
        """Add a C2SP cosignature/v1 line (type 0x04) made at ``timestamp`` (POSIX s)."""
        _check_name(name)
        sig = key.sign_note(cosignature_message(self.text, timestamp))
        kid = _key_id(name, key.public.raw, _COSIG_V1)
        return self._with((name, kid, timestamp.to_bytes(8, "big") + sig))

    def _with(self, line: tuple[str, bytes, bytes]) -> SignedNote:
        kept = tuple(s for s in self.signatures if not (s[0] == line[0] and s[1] == line[1]))
        return SignedNote(self.text, (*kept, line))


def parse_note(data: bytes) -> SignedNote:
    """Split a signed note into text and signature lines. Raises MalformedError."""
    if len(data) > _MAX_NOTE:
        raise MalformedError(f"note is larger than {_MAX_NOTE} bytes")
    sep = data.rfind(b"\n\n")
    if sep < 0:
        raise MalformedError("a signed note needs a blank line between text and signatures")
    text, sigblock = data[: sep + 1], data[sep + 2 :]
    if not sigblock.endswith(b"\n"):
        raise MalformedError("signature lines must end with a newline")
    sigs: list[tuple[str, bytes, bytes]] = []
    try:
        lines = sigblock.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        raise MalformedError("signature lines are not UTF-8") from None
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise MalformedError(f"bad signature line {line[:80]!r}")
        raw = _b64decode(parts[2], "note signature")
        # Other signature types (e.g. cosignatures) have other lengths: kept, never trusted.
        if len(raw) < 5:
            raise MalformedError("note signature too short")
        sigs.append((parts[1], raw[:4], raw[4:]))
    if not sigs:
        raise MalformedError("a signed note needs at least one signature line")
    return SignedNote(text, tuple(sigs))


def sign_checkpoint(cp: Checkpoint, key: PrivateKey, name: str, *,
                    cosignature: bool = True) -> SignedNote:
    """A member's signed note for ``cp``: a cosignature/v1 at the block's time (seconds), or
    (``cosignature=False``) a plain type-0x01 signature."""
    note = SignedNote(cp.body(), ())
    if cosignature:
        return note.cosign(key, name, cp.time // 1000)
    return note.add(key, name)
