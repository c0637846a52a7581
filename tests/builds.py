"""Which build of the core the tests run on (README, "Compiled core")."""

from __future__ import annotations

from glucoledger.runtime import compiled_modules

#: True on a wheel whose state machine mypyc compiled. Its modules then call each other
#: (the codec, the trust cache) from C, past module or class attributes a test replaces:
#: a test that counts such calls runs on the pure-Python tree (the README's test command).
STATE_COMPILED = any(m.startswith("glucoledger.state.") for m in compiled_modules())
