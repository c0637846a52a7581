"""The modules a wheel build compiles to C with mypyc (``setup.py`` reads this list).

They are the core's hot paths: canonical CBOR, hashes and public keys, the envelope and its
trust cache, the log's entries, blocks, the Merkle tree and the state machine (every module
of ``state``: a typed body's class must be compiled with ``machine.Body``, its base). The
compiled module is the same source; only the interpreter's overhead goes.
``runtime.compiled_modules`` says which of them a process loaded compiled: an editable
install (``pip install -e``) and a machine without a C compiler run all of them as Python,
with the same results.

mypyc compiles every method written in a compiled module, but not the ``__init__`` that
``dataclass`` generates: that one stays interpreted, a Python frame each construction
(about 1 us, against 0.08 for a written one). So the classes built for every transaction
(``Transaction``, ``SignedTx``, ``PublicKey``, ``Context``, the frequent bodies, ...)
declare ``init=False`` and write their ``__init__``, setting each field with
``object.__setattr__`` (frozen in both builds); tests/test_build.py holds each to the
fields ``dataclass`` would have taken. A compiled class with a written ``__init__`` does
not unpickle by default (unpickling calls it without arguments): the ones that cross to
worker processes (``PublicKey``, in a checked upload) and the envelope's classes define
``__reduce__`` (tests/crypto/test_keys.py).

No imports here: ``setup.py`` runs this file before anything is installed.
"""

MODULES = (
    "glucoledger.codec",
    "glucoledger.crypto.hashing",
    "glucoledger.crypto.keys",
    "glucoledger.ledger.block",
    "glucoledger.ledger.log",
    "glucoledger.ledger.merkle",
    "glucoledger.ledger.trust",
    "glucoledger.ledger.tx",
    "glucoledger.state.access",
    "glucoledger.state.accounts",
    "glucoledger.state.accounts_model",
    "glucoledger.state.alerts",
    "glucoledger.state.consent",
    "glucoledger.state.data",
    "glucoledger.state.devices",
    "glucoledger.state.emergency",
    "glucoledger.state.firmware",
    "glucoledger.state.governance",
    "glucoledger.state.grants",
    "glucoledger.state.machine",
    "glucoledger.state.multisig",
    "glucoledger.state.replica",
    "glucoledger.state.research",
    "glucoledger.state.store",
    "glucoledger.state.versions",
    "glucoledger.state.zkdays",
)
