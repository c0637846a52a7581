"""The deterministic state machine ("contracts").

Importing this package registers every transaction type; ``REGISTRY`` lists them.
"""

from . import accounts, data, devices, firmware, multisig  # noqa: F401  (registers the contracts)
from . import access, alerts, grants  # noqa: F401  (consent, access, erasure, alerts)
from .machine import REGISTRY, Context, apply
from .replica import Block, Replica
from .store import State

__all__ = ["REGISTRY", "Block", "Context", "Replica", "State", "apply"]
