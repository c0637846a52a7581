"""The global log's Merkle tree: RFC 9162 (Certificate Transparency v2), section 2.1.

Hashes (RFC 9162 2.1.1), SHA-256 throughout, reached through ``glucoledger.crypto``:
- empty tree: ``SHA-256()``; leaf: ``SHA-256(0x00 || d)``; node: ``SHA-256(0x01 || l || r)``;
- MTH(D[n]) splits at k, the largest power of two smaller than n: the left subtree is always
  perfect, so every tree is a left-to-right sequence of perfect subtrees (its "frontier").

Node addressing: ``(level, index)`` names the root of the *perfect* subtree of ``2**level``
leaves starting at leaf ``index * 2**level``; level 0 is a leaf hash. A perfect node never
changes once written, so a store can persist what ``CompactTree.append`` returns and answer
``NodeReader.node`` forever. Subtrees on the right edge of a tree that are not perfect are never
stored: proofs derive them from stored perfect nodes in O(log n) reads.

Invariants:
- Pure: no I/O, no clock, no randomness. Same leaves in, same hashes out.
- ``CompactTree`` holds exactly one perfect-subtree root per set bit of ``size``, largest
  first; ``append`` is O(log n) amortised O(1) hashing, and nothing is ever rebuilt.
- Proof generation follows RFC 9162 2.1.3.1 (PATH) and 2.1.4.1 (PROOF/SUBPROOF); proofs are
  ordered from the leaf (or the old tree's node) upwards, exactly as the RFC lists them.
  Asking for a leaf outside the tree, or for size1 > size2, raises OutOfRangeError.
- Verification follows RFC 9162 2.1.3.2 and 2.1.4.2. It raises or returns ``None``, never a
  boolean: ``MalformedError`` for input that cannot describe any tree (an index outside the
  tree, size1 > size2, a proof of the wrong length, a hash that is not 32 bytes, a size of
  2**64 or more, more hashes than any tree needs: 64 for inclusion, 65 for consistency) and
  ``ConsistencyError`` for a well-formed proof that does not lead to the given root(s). The
  shape is checked before any hashing; every hash input must be exactly 32 bytes, roots
  included (stricter than the Go reference, which compares equal-size roots of any length).
  The verifiers' parameters are typed ``object``: they are handed what a proof file or a
  peer sent, and refuse a wrong type with ``MalformedError`` like any other impossible input
  (the compiled build, see ``setup.py``, would otherwise refuse it with a ``TypeError`` at
  the call).
- A proof binds the leaf index and the tree sizes only through the shape of the path: a tree
  size is trusted because a signed checkpoint pairs it with its root, never because a proof
  verified (e.g. a proof for leaf 0 of 8 also verifies as leaf 0 of 7 against the same root).
- Beyond RFC 9162 (which defines consistency proofs for 0 < size1 < size2 only):
  ``size1 == size2`` takes an empty proof and equal roots; ``size1 == 0`` takes an empty proof,
  ``root1`` must be ``EMPTY_ROOT`` (the empty tree is a prefix of every tree).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Protocol

from ..crypto import sha256
from ..crypto.hashing import sha256_many
from ..errors import ConsistencyError, MalformedError, NotFoundError, OutOfRangeError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_CONSISTENCY_HASHES",
    "MAX_INCLUSION_HASHES",
    "MAX_SIZE",
    "CompactTree",
    "MemoryNodes",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

#: Bytes in every tree hash (SHA-256).
HASH_SIZE = 32
#: Tree sizes are unsigned 64-bit integers, as in RFC 9162 (``uint64 tree_size``).
MAX_SIZE = (1 << 64) - 1
#: The longest valid proofs for trees of at most MAX_SIZE leaves: an inclusion path has at most
#: one hash per bit of ``size - 1``; a consistency proof can add the old tree's own subtree
#: root to such a path (e.g. 2**64 - 3 -> 2**64 - 1 takes 65 hashes).
MAX_INCLUSION_HASHES = 64
MAX_CONSISTENCY_HASHES = 65

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

#: MTH({}) = SHA-256() (RFC 9162 2.1.1).
EMPTY_ROOT: bytes = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return sha256(_LEAF_PREFIX + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), the hash of an interior node."""
    return sha256(_NODE_PREFIX + left + right)


def _fold(subroots: Sequence[bytes]) -> bytes:
    """Root of a tree given its perfect-subtree roots, largest (leftmost) first.

    The RFC splits at the largest power of two, so the frontier combines from the right.
    """
    acc = subroots[-1]
    for h in reversed(subroots[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (RFC 9162 2.1.1), in O(n) hashing and O(log n) memory.

    Raises MalformedError if a leaf hash is not 32 bytes.
    """
    level = list(leaf_hashes)
    # The checks in bulk (C-level passes); the per-leaf check only to name a bad one.
    if set(map(type, level)) - {bytes} or set(map(len, level)) - {HASH_SIZE}:
        for h in level:
            _check_hash(h, "leaf hash")
    if not level:
        return EMPTY_ROOT
    # Pair neighbours level by level, an odd last node moving up unchanged: the same tree as
    # MTH's split at the largest power of two below n (every left subtree is perfect), in
    # n - 1 hashes and no per-leaf bookkeeping; each level is one map chain over C functions.
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        pairs = iter(level[:len(level) - 1] if odd is not None else level)
        level = sha256_many(map(b"".join, zip(repeat(b"\x01"), pairs, pairs)))
        if odd is not None:
            level.append(odd)
    return level[0]


class NodeReader(Protocol):
    """Read access to stored perfect-subtree roots."""

    def node(self, level: int, index: int) -> bytes:
        """Root of the perfect subtree of ``2**level`` leaves starting at ``index * 2**level``.

        Level 0 is a leaf hash. Raises NotFoundError (or a BackendError) if it is not stored.
        """
        ...


class MemoryNodes:
    """A dict-backed NodeReader, filled from what ``CompactTree.append`` returns.

    Perfect nodes never change, so storing a different hash under an existing address means two
    different trees were mixed up: that raises ConsistencyError and stores nothing.
    """

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Iterable[tuple[int, int, bytes]] = ()) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.add(nodes)

    def add(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store ``(level, index, hash)`` triples; all or nothing."""
        staged: dict[tuple[int, int], bytes] = {}
        for level, index, h in nodes:
            if level < 0 or index < 0:
                raise ValueError(f"node ({level}, {index}) has a negative level or index")
            _check_hash(h, f"node ({level}, {index})")
            key = (level, index)
            old = staged.get(key, self._nodes.get(key))
            if old is not None and old != h:
                raise ConsistencyError(
                    f"node ({level}, {index}) is already stored with a different hash: these "
                    "nodes come from a different tree; do not mix trees in one store"
                )
            staged[key] = h
        self._nodes.update(staged)

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise NotFoundError(
                f"Merkle node ({level}, {index}) is not stored: the tree is smaller than asked, "
                "or the store missed an append"
            ) from None

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes


class CompactTree:
    """The frontier of the log ("compact range" [0, size)): O(log n) state, O(log n) append.

    ``frontier`` holds the roots of the perfect subtrees that make up the tree, largest first,
    one per set bit of ``size``. Persist ``size`` and ``frontier`` to resume.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        """Raise ValueError for a negative size, MalformedError for a frontier that cannot
        belong to a tree of this size (wrong count, a hash that is not 32 bytes)."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size < 0:
            raise ValueError(f"tree size {size} is negative")
        if size > MAX_SIZE:
            raise MalformedError(f"tree size {size} is above the largest allowed, 2**64 - 1")
        frontier = tuple(frontier)
        if len(frontier) != size.bit_count():
            raise MalformedError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, not "
                f"{len(frontier)}: the stored tree state is damaged; rebuild it from the log"
            )
        for i, h in enumerate(frontier):
            _check_hash(h, f"frontier hash {i}")
        self._size = size
        self._frontier = list(frontier)

    @property
    def size(self) -> int:
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        return tuple(self._frontier)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return every perfect node this completes, the leaf first.

        The list is ``[(0, i, leaf_hash), (1, i >> 1, ...), ...]`` up to the largest perfect
        subtree that now ends at the new leaf. Raises MalformedError if the hash is not 32
        bytes (and then the tree is unchanged).
        """
        completed = [(0, self._size, leaf_hash)]
        self._grow(leaf_hash, completed)
        return completed

    def append_inner(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """``append`` without the leaf: only the interior nodes (level 1 and up) it completes,
        for a store that derives a leaf's hash from the leaf itself (the chain store)."""
        completed: list[tuple[int, int, bytes]] = []
        self._grow(leaf_hash, completed)
        return completed

    def _grow(self, leaf_hash: bytes, completed: list[tuple[int, int, bytes]]) -> None:
        _check_hash(leaf_hash, "leaf hash")
        index = self._size
        if index == MAX_SIZE:
            raise OutOfRangeError("the tree holds 2**64 - 1 leaves and cannot grow")
        h = leaf_hash
        level = 0
        # Each trailing set bit of the old size is a frontier root of the same size as ``h``.
        while (index >> level) & 1:
            h = node_hash(self._frontier.pop(), h)
            level += 1
            completed.append((level, index >> level, h))
        self._frontier.append(h)
        self._size = index + 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Append each leaf hash in order; return all completed nodes, in order.

        On MalformedError the leaves before the bad one stay appended.
        """
        completed: list[tuple[int, int, bytes]] = []
        for h in leaf_hashes:
            completed.extend(self.append(h))
        return completed

    def root(self) -> bytes:
        """MTH of the leaves appended so far (EMPTY_ROOT for none)."""
        if not self._frontier:
            return EMPTY_ROOT
        return _fold(self._frontier)

    def copy(self) -> CompactTree:
        twin = CompactTree.__new__(CompactTree)
        twin._size = self._size
        twin._frontier = list(self._frontier)
        return twin

    def __repr__(self) -> str:
        return f"CompactTree(size={self._size}, root={self.root().hex()})"


# --- proof generation (RFC 9162 2.1.3.1, 2.1.4.1) ---------------------------------------------


def _check_generation_sizes(what: str, low: int, high: int) -> None:
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what}: sizes and indices are ints, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{what}: {value} is negative")
    if high > MAX_SIZE:
        raise OutOfRangeError(f"{what}: tree size {high} is above 2**64 - 1")


def _range_root(reader: NodeReader, begin: int, end: int) -> bytes:
    """MTH of leaves [begin, end) where begin is aligned to a power of two above end - begin.

    That is the shape of a right-edge subtree; it is the fold of the perfect subtrees given by
    the bits of ``end - begin``, largest first (at most log2 reads).
    """
    subroots: list[bytes] = []
    cursor = begin
    width = end - begin
    for level in range(width.bit_length() - 1, -1, -1):
        if (width >> level) & 1:
            subroots.append(reader.node(level, cursor >> level))
            cursor += 1 << level
    return _fold(subroots)


def _path_shape(level: int, index: int, size: int) -> tuple[int, int]:
    """(inner, border) lengths of the path from perfect node (level, index) in a tree of size.

    ``inner`` levels have a sibling inside the subtree shared with the tree's last leaf; above
    them the path runs along the right edge, with a (left, perfect) sibling only where the
    node is a right child.
    """
    last = (size - 1) >> level
    inner = (index ^ last).bit_length()
    return inner, (index >> inner).bit_count()


def _path(reader: NodeReader, level: int, index: int, size: int) -> list[bytes]:
    """The audit path of the perfect node (level, index) in the tree of ``size`` leaves."""
    inner, _ = _path_shape(level, index, size)
    proof: list[bytes] = []
    for i in range(inner):
        lvl = level + i
        sibling = (index >> i) ^ 1
        begin = sibling << lvl
        if begin + (1 << lvl) <= size:
            proof.append(reader.node(lvl, sibling))
        else:
            # Only the topmost inner sibling can be cut short by the end of the tree.
            proof.append(_range_root(reader, begin, size))
    node = index >> inner
    lvl = level + inner
    while node:
        if node & 1:
            proof.append(reader.node(lvl, node - 1))
        node >>= 1
        lvl += 1
    return proof


def inclusion_proof(reader: NodeReader, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1, read from perfect nodes only.

    Raises OutOfRangeError if ``index >= size``; ValueError for negative numbers; whatever the
    reader raises (NotFoundError, a BackendError) if a needed node is not stored.
    """
    _check_generation_sizes("inclusion proof", index, size)
    if index >= size:
        raise OutOfRangeError(
            f"leaf {index} is not in a tree of size {size}: ask for an index below the size"
        )
    return _path(reader, 0, index, size)


def consistency_proof(reader: NodeReader, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 2.1.4.1, read from perfect nodes only.

    Empty when ``size1 == size2`` or ``size1 == 0`` (see the module docstring). Raises
    OutOfRangeError if ``size1 > size2``; ValueError for negative sizes; whatever the reader
    raises if a needed node is not stored.
    """
    _check_generation_sizes("consistency proof", size1, size2)
    if size1 > size2:
        raise OutOfRangeError(
            f"consistency proof from size {size1} to the smaller size {size2}: a log only "
            "grows; ask with size1 <= size2"
        )
    if size1 in (0, size2):
        return []
    # The largest perfect subtree that ends at size1: SUBPROOF stops exactly there.
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    proof = _path(reader, level, index, size2)
    if index:
        # When size1 is a power of two the verifier already knows this node: it is root1.
        proof.insert(0, reader.node(level, index))
    return proof


# --- verification (RFC 9162 2.1.3.2, 2.1.4.2) -------------------------------------------------


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedError(
            f"{what} is {type(value).__name__}, not bytes: pass the 32-byte SHA-256 hash"
        )
    if len(value) != HASH_SIZE:
        raise MalformedError(
            f"{what} is {len(value)} bytes, not {HASH_SIZE}: pass the raw SHA-256 hash, "
            "not hex or base64"
        )
    return value


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(f"{what} is {type(value).__name__}, not an integer")
    if not 0 <= value <= MAX_SIZE:
        raise MalformedError(f"{what} {value} is outside 0 .. 2**64 - 1")
    return value


def _check_proof(proof: object, what: str, limit: int) -> list[bytes]:
    if proof is None or isinstance(proof, (bytes, str)) or not isinstance(proof, Sequence):
        raise MalformedError(f"{what} is {type(proof).__name__}, not a list of hashes")
    if len(proof) > limit:
        raise MalformedError(
            f"{what} has {len(proof)} hashes; no tree of at most 2**64 - 1 leaves needs more "
            f"than {limit}"
        )
    return [_check_hash(h, f"{what} hash {i}") for i, h in enumerate(proof)]


def _climb(h: bytes, proof: Sequence[bytes], fn: int, sn: int) -> bytes:
    """RFC 9162 2.1.3.2 step 4 for a checked proof whose length matches (fn, sn)."""
    for p in proof:
        if fn & 1 or fn == sn:
            h = node_hash(p, h)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            h = node_hash(h, p)
        fn >>= 1
        sn >>= 1
    return h


def root_from_inclusion(leaf_hash: object, index: object, size: object, proof: object) -> bytes:
    """The root that ``proof`` yields for ``leaf_hash`` at ``index`` in a tree of ``size``.

    Raises MalformedError if the inputs cannot describe an inclusion proof (index >= size, a
    proof of the wrong length, hashes that are not 32 bytes). The result is not trusted until
    compared with a trusted root: use verify_inclusion.
    """
    leaf = _check_hash(leaf_hash, "leaf hash")
    index = _check_size(index, "leaf index")
    size = _check_size(size, "tree size")
    hashes = _check_proof(proof, "inclusion proof", MAX_INCLUSION_HASHES)
    if index >= size:
        raise MalformedError(
            f"leaf index {index} is not below tree size {size}: no such leaf in that tree"
        )
    inner, border = _path_shape(0, index, size)
    if len(hashes) != inner + border:
        raise MalformedError(
            f"inclusion proof for leaf {index} in a tree of size {size} has {len(hashes)} "
            f"hashes, not {inner + border}: the proof belongs to another leaf or tree size"
        )
    return _climb(leaf, hashes, index, size - 1)


def verify_inclusion(
    leaf_hash: object, index: object, size: object, proof: object, root: object
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 2.1.3.2. Returns None on success. Raises MalformedError for structurally
    impossible input (see root_from_inclusion; also a root that is not 32 bytes) and
    ConsistencyError if the proof does not lead to ``root``.
    """
    want = _check_hash(root, "root")
    got = root_from_inclusion(leaf_hash, index, size, proof)
    if got != want:
        raise ConsistencyError(
            f"inclusion proof for leaf {index} in tree of size {size} does not lead to the "
            "given root: the proof, the leaf or the root is wrong; fetch a fresh proof for "
            "this checkpoint"
        )


def verify_consistency(
    size1: object, size2: object, proof: object, root1: object, root2: object
) -> None:
    """Check that the tree (size1, root1) is a prefix of the tree (size2, root2).

    RFC 9162 2.1.4.2, extended to size1 == size2 and size1 == 0 as the module docstring says.
    Returns None on success. Raises MalformedError for structurally impossible input (size1 >
    size2, a proof of the wrong length, hashes or roots that are not 32 bytes) and
    ConsistencyError if the proof does not lead to both roots (a fork, a rollback or a
    tampered log).
    """
    size1 = _check_size(size1, "first tree size")
    size2 = _check_size(size2, "second tree size")
    first = _check_hash(root1, "first root")
    second = _check_hash(root2, "second root")
    hashes = _check_proof(proof, "consistency proof", MAX_CONSISTENCY_HASHES)
    if size1 > size2:
        raise MalformedError(
            f"first tree size {size1} is larger than second tree size {size2}: a log only "
            "grows; pass the older checkpoint first"
        )
    if size1 in (0, size2):
        if hashes:
            raise MalformedError(
                f"consistency proof from size {size1} to size {size2} must be empty, it has "
                f"{len(hashes)} hashes"
            )
        if size1 == 0 and first != EMPTY_ROOT:
            raise ConsistencyError(
                "the first root is not the empty tree's root, yet its size is 0: the first "
                "checkpoint is wrong"
            )
        if size1 == 0 and size2 == 0 and second != EMPTY_ROOT:
            raise ConsistencyError(
                "the second root is not the empty tree's root, yet its size is 0: the second "
                "checkpoint is wrong"
            )
        if size1 == size2 and first != second:
            raise ConsistencyError(
                f"two roots for the same tree size {size1} differ: the log forked or a "
                "checkpoint is wrong; keep both as evidence and stop trusting this log"
            )
        return

    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    inner, border = _path_shape(level, index, size2)
    want = inner + border + (1 if index else 0)
    if len(hashes) != want:
        raise MalformedError(
            f"consistency proof from size {size1} to size {size2} has {len(hashes)} hashes, "
            f"not {want}: the proof belongs to other tree sizes"
        )
    # RFC 9162 2.1.4.2 steps 2-6. Step 4 shifts fn = size1 - 1 right past its ``level``
    # trailing ones, which leaves fn = index and sn = (size2 - 1) >> level; step 2 prepends
    # root1 when size1 is a power of two (index 0).
    path = hashes if index else [first, *hashes]
    fn = index
    sn = (size2 - 1) >> level
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != first or sr != second:
        which = "first" if fr != first else "second"
        raise ConsistencyError(
            f"consistency proof from size {size1} to size {size2} does not lead to the {which} "
            "root: the log was rewritten, or the proof or a root is wrong; keep both "
            "checkpoints as evidence and do not advance to the second"
        )
