"""The only place that touches cryptographic primitives.

Safe recipes here choose every algorithm, nonce and version byte; the rest of glucoledger
calls these and never imports ``cryptography`` itself.
"""

from .hashing import constant_time_equal, hmac_sha256, sha256, tagged_hash
from .keys import ALGORITHMS, Algorithm, PrivateKey, PublicKey, generate, signing_input

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "PrivateKey",
    "PublicKey",
    "constant_time_equal",
    "generate",
    "hmac_sha256",
    "sha256",
    "signing_input",
    "tagged_hash",
]
