"""Legacy digests that interoperability forces on us, kept apart from the rest of ``crypto``.

Nightscout uploaders authenticate with the ``api-secret`` header: the SHA-1 hex digest (newer
ones: SHA-512) of a shared secret. SHA-1 is used here only to recognise that header, never
to protect anything of ours: the node stores neither the secret nor its SHA-1, only a
domain-separated SHA-256 of what the header carries (``credential_hash``).
"""

from __future__ import annotations

import hashlib

from .hashing import tagged_hash

__all__ = ["credential_hash", "nightscout_secret_digests"]


def nightscout_secret_digests(secret: str) -> tuple[str, str]:
    """The two forms an uploader may send for ``secret``: SHA-1 hex and SHA-512 hex."""
    raw = secret.encode("utf-8")
    return (hashlib.sha1(raw, usedforsecurity=False).hexdigest(),
            hashlib.sha512(raw).hexdigest())


def credential_hash(presented: str) -> bytes:
    """What the node stores and looks up for a presented credential (header or token)."""
    return tagged_hash("nightscout-credential", presented.encode("utf-8"))
