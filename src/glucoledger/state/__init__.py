"""The deterministic state machine ("contracts").

Importing this package registers every transaction type; ``REGISTRY`` lists them.
"""

# Importing a contract module registers its transaction types.
from . import (  # noqa: F401
    access,  # access and erasure
    accounts,
    alerts,
    data,
    devices,
    emergency,  # emergency.request/approve/decline/open
    firmware,
    governance,  # gov.member_add/remove, anchor.record
    grants,  # consent.grant/amend/revoke, care.entry
    multisig,
    research,  # study.*, research.consent/withdraw/release/manifest
    versions,  # doc.version: edits and deletions of uploaded documents
    zkdays,  # zk.day: Poseidon commitments of day windows (zero-knowledge claims)
)
from .machine import REGISTRY, Context, apply
from .replica import Block, Replica
from .store import State

__all__ = ["REGISTRY", "Block", "Context", "Replica", "State", "apply"]
