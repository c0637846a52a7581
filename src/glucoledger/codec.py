"""The one canonical encoding: deterministic CBOR (RFC 8949 section 4.2.1, core deterministic).

Everything glucoledger hashes or signs is encoded here, so the same value gives the same bytes
on every node, every time.

Invariants:
- Only these types: int (64-bit range), str, bytes, bool, None, list/tuple, and dict with str
  keys. No floats (values that need fractions are carried as integers in a stated unit), no
  tags, no indefinite lengths.
- Map keys are sorted bytewise by their encoding (for text keys, RFC 8949 4.2.1 and the older
  length-first rule coincide); integers and lengths use the shortest form.
- ``decode`` accepts only canonical bytes, so one value has exactly one encoding and a hash
  names exactly one value. It checks canonical form on the bytes themselves, in the one pass
  that builds the value (``_item``); nothing is re-encoded. cbor2 encodes, and decodes only
  bytes this process wrote or authenticated (``decode_trusted``, ``decode_authenticated``).
  ``tests/test_codec_oracle.py`` proves, against the former decode-and-re-encode check as an
  oracle, that both accept and refuse exactly the same inputs.
"""

from __future__ import annotations

from typing import Any, Final

import cbor2

from .errors import InputError, MalformedError

__all__ = ["MAX_ENCODED", "BytesLike", "Value", "append_encoded", "decode",
           "decode_authenticated", "decode_spans", "decode_trusted", "encode", "encode_head",
           "encode_with", "parse_hex_id", "value_span", "value_spans"]

#: Largest encoded object accepted anywhere (a transaction, a block header, a proof): 1 MiB.
MAX_ENCODED = 1 << 20

Value = Any  # int | str | bytes | bool | None | list[Value] | dict[str, Value]
#: What the decoders take (and copy to bytes first). Declared, not just accepted: a compiled
#: build (setup.py) refuses at the call whatever a signature does not name.
BytesLike = bytes | bytearray | memoryview

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


_PLAIN = frozenset({str, bytes, bool, type(None)})  # scalars with nothing more to check
#: Bounded memos of the canonical key order (RFC 8949 4.2.1: bytewise by encoding; for text
#: keys, shorter UTF-8 first, then by bytes, which is code point order). Values are what
#: the inputs determine, so a full memo only stops remembering: the order stays the same.
_KEY_ORDER: dict[str, tuple[int, str]] = {}
#: A shape's canonical order, and whether the shape already is in it.
_SHAPE_ORDER: dict[tuple[str, ...], tuple[tuple[str, ...], bool]] = {}
_MEMO_MAX: Final = 4096


def _bad_type(t: type, verb: str) -> MalformedError:
    return MalformedError(f"type {t.__name__} {verb}; use int, str, bytes, bool, None, list "
                          "or dict")


def _too_deep() -> MalformedError:
    return MalformedError("value nests deeper than 32 levels; flatten it")


def _out_of_range(value: int) -> MalformedError:
    return MalformedError(f"integer {value} is outside the 64-bit range")


def _not_text(key: object) -> MalformedError:
    return MalformedError(f"map key {key!r} is not text; only text keys are allowed")


def _key_order(key: object) -> tuple[int, str]:
    if type(key) is not str:  # before the memo, which matches any key equal to a text
        raise _not_text(key)
    order = _KEY_ORDER.get(key)
    if order is None:
        # surrogatepass: a lone surrogate still gets an order; cbor2 then refuses the text.
        order = (len(key.encode("utf-8", "surrogatepass")), key)
        if len(_KEY_ORDER) < _MEMO_MAX and len(key) <= 64:
            _KEY_ORDER[key] = order
    return order


def _shape_order(shape: tuple[Any, ...]) -> tuple[tuple[str, ...], bool]:
    """The canonical order of a map's keys, and whether ``shape`` already is in it. Raises
    MalformedError for a key that is not text."""
    memo = _SHAPE_ORDER.get(shape)
    if memo is None:
        order = tuple(sorted(shape, key=_key_order))  # checks that every key is text
        memo = (order, order == shape)
        # Only shapes of a few short keys: the memo holds its keys, and keys come from
        # outside (a transaction's meta), so its size stays bounded whatever is sent.
        if (len(_SHAPE_ORDER) < _MEMO_MAX and len(shape) <= 32
                and all(len(key) <= 64 for key in shape)):
            _SHAPE_ORDER[shape] = memo
    else:  # the memo matches keys equal to its texts: a str subclass is still refused
        for key in shape:
            if type(key) is not str:
                raise _not_text(key)
    return memo


def _canonical_map(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    """``value`` itself when its entries (and those of every map inside it) are already in
    canonical order, else a copy that puts them in it; its types checked either way.

    A map decoded from canonical bytes (a transaction's body: the policy ``account.create``
    encodes) is already in order: it is checked, not copied.
    Items are checked in canonical key order in both cases, so the same input raises the
    same error."""
    if depth >= 32:
        raise _too_deep()
    order, in_order = _shape_order(tuple(value))
    if in_order:
        for key in order:
            item = value[key]
            t = type(item)
            if t in _PLAIN:
                continue
            if t is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    raise _out_of_range(item)
                continue
            if t is dict:
                if _canonical_map(item, depth + 1) is not item:
                    break  # an inner map needs a copy, so this one does: the loop below
            elif t is list or t is tuple:
                if _canonical_array(item, depth + 1) is not item:
                    break
            else:
                raise _bad_type(t, "cannot be encoded")
        else:
            return value
    out = {}
    for key in order:
        item = value[key]
        t = type(item)
        if t in _PLAIN:
            pass
        elif t is int:
            if not _INT_MIN <= item <= _INT_MAX:
                raise _out_of_range(item)
        elif t is dict:
            item = _canonical_map(item, depth + 1)
        elif t is list or t is tuple:
            item = _canonical_array(item, depth + 1)
        else:
            raise _bad_type(t, "cannot be encoded")
        out[key] = item
    return out


def _canonical_array(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any] | tuple[Any, ...]:
    """``value`` itself when every map inside it is in canonical order, else a copy whose
    maps are put in it.

    Its loop is ``_canonical_map``'s, kept inline in both: building the map from this
    function's answer (a list, then a zip) made ``encode`` 1.5-1.7x slower (measured)."""
    if depth >= 32:
        raise _too_deep()
    out: list[Any] | None = None
    for i, item in enumerate(value):
        t = type(item)
        if t in _PLAIN:
            continue
        if t is int:
            if not _INT_MIN <= item <= _INT_MAX:
                raise _out_of_range(item)
            continue
        new: Any
        if t is dict:
            new = _canonical_map(item, depth + 1)
        elif t is list or t is tuple:
            new = _canonical_array(item, depth + 1)
        else:
            raise _bad_type(t, "cannot be encoded")
        if new is not item:  # a map inside was put in order: copy this array
            if out is None:
                out = list(value)
            out[i] = new
    return value if out is None else out


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises MalformedError for a type outside the allowed set
    (or text that is not Unicode: a lone surrogate).

    One pass in Python checks the types and puts every map's keys in canonical order; cbor2's
    C encoder then writes it in its plain mode, which keeps that order and always writes
    integers and lengths in their shortest form. That is the canonical encoding, bit for bit
    (tests/test_codec.py holds it to ``cbor2.dumps(canonical=True)``), at about half the cost
    of cbor2's canonical mode, which encodes and sorts every key in C each time.

    Writing maps of scalars here instead was measured and dropped: for an upload statement
    (long integers, 32-byte strings) it cost 1.4x cbor2's instructions (README,
    Performance)."""
    return _encode_at(value, 0)


def _encode_at(value: Value, depth: int) -> bytes:
    """``encode`` of ``value`` found ``depth`` containers deep (what the depth bound counts)."""
    t = type(value)
    if t is dict:
        value = _canonical_map(value, depth)
    elif t is list or t is tuple:
        value = _canonical_array(value, depth)
    elif t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise _out_of_range(value)
    elif t not in _PLAIN:
        raise _bad_type(t, "cannot be encoded")
    try:
        data: bytes = cbor2.dumps(value)
    except UnicodeEncodeError:
        raise _lone_surrogate() from None
    return data


def _lone_surrogate() -> MalformedError:
    return MalformedError("text holds a lone surrogate, which is not Unicode; send valid "
                          "UTF-8 text")


_ONE_BYTE: Final = tuple(bytes((i,)) for i in range(256))


def encode_head(major: int, n: int) -> bytes:
    """The canonical head of an item of major type ``major`` (4 an array, 5 a map, ...) whose
    argument (its count or length) is ``n``: the shortest form (RFC 8949 4.2.1). A definite
    container's canonical encoding is its head followed by its items' canonical encodings,
    which is what the splicing functions below and their callers build on. A negative ``n``
    is a ValueError, a bug in the caller."""
    if n < 0:
        raise ValueError(f"encode_head takes a count or a length, not {n}")
    if n < 24:
        return _ONE_BYTE[(major << 5) | n]
    for width, ai in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * width):
            return bytes(((major << 5) | ai,)) + n.to_bytes(width, "big")
    raise _out_of_range(n)


def append_encoded(array: bytes, item: Value) -> bytes:
    """``encode([*decode(array), item])`` without decoding ``array``: its head is rewritten
    for one more item and ``item``'s encoding is added after the items it holds. An index
    list that grows by one entry per upload (state/access.py) costs one encoding of the
    entry, not a decoding and encoding of every entry before it.

    ``array`` must be the canonical encoding of an array (state values: encoded here); a
    value of any other kind is a ValueError, a bug in the caller and never input."""
    initial = array[0] if array else -1
    if initial >> 5 != 4 or initial & 31 > 27:
        raise ValueError("append_encoded takes the canonical encoding of an array")
    info = initial & 31
    width = 0 if info < 24 else 1 << (info - 24)
    n = info if width == 0 else int.from_bytes(array[1:1 + width], "big")
    one = encode([item])  # checked, at the depth it will have inside the array
    return encode_head(4, n + 1) + array[1 + width:] + one[1:]


def encode_with(value: dict[str, Value], encoded: dict[str, bytes]) -> bytes:
    """``encode`` of the map holding ``value``'s entries and, under each key of ``encoded``,
    the item those bytes encode, without decoding or re-encoding them: they are put in place
    as they are, between the other entries' encodings.

    An account's policy arrives encoded in its ``account.create``; its id and its state
    record both hold it, and encoding it once for both (instead of twice) is what this is
    for. The bytes in ``encoded`` must be canonical encodings this process made (``encode``'s
    answer, or a slice of a state value's) and are not checked again: like
    ``append_encoded``'s array, a value that is not is a bug in the caller, never input.

    The other entries are checked as ``encode`` checks them, each where it comes in the key
    order. Their scalars and empty containers are written here (``_scalar``), not by cbor2,
    whose every call costs more than a short item's whole encoding. A key in both is a
    ValueError, a bug in the caller."""
    for key in encoded:
        if key in value:
            raise ValueError("encode_with: a key is both in value and in encoded")
    order, _ = _shape_order(tuple(value) + tuple(encoded))
    parts = [encode_head(5, len(order))]
    for key in order:
        parts.append(_key_bytes(key))
        raw = encoded.get(key)
        parts.append(raw if raw is not None else _map_item(value[key]))
    return b"".join(parts)


#: Bounded memo of map keys' encodings (the keys of the maps encode_with writes). Keys come
#: from outside too (a transaction's meta): at most 4,096 of them, of at most 64
#: characters.
_KEY_BYTES: Final[dict[str, bytes]] = {}


def _key_bytes(key: str) -> bytes:
    data = _KEY_BYTES.get(key)
    if data is None:
        data = _scalar(key)  # the key is text (_shape_order checked it)
        if data is None:
            raise _lone_surrogate()
        if len(_KEY_BYTES) < _MEMO_MAX and len(key) <= 64:
            _KEY_BYTES[key] = data
    return data


def _scalar(item: Value) -> bytes | None:
    """The encoding of a scalar ``encode`` takes, or of an empty container, written here
    (RFC 8949 3: a head, then the bytes); None for anything else: a container with items,
    or a value ``encode`` refuses (the caller then refuses it in ``encode``'s words)."""
    t = type(item)
    if t is str:
        text: str = item
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return encode_head(3, len(data)) + data
    if t is bytes:
        raw: bytes = item
        return encode_head(2, len(raw)) + raw
    if t is int:
        if not _INT_MIN <= item <= _INT_MAX:
            return None
        return encode_head(0, item) if item >= 0 else encode_head(1, -1 - item)
    if t is bool:
        return b"\xf5" if item else b"\xf4"
    if item is None:
        return b"\xf6"
    if (t is dict or t is list or t is tuple) and not item:
        return b"\xa0" if t is dict else b"\x80"
    return None


def _map_item(item: Value) -> bytes:
    """``encode`` of a map's value, as it checks it at that depth (1)."""
    data = _scalar(item)
    return data if data is not None else _encode_at(item, 1)


_MAX_DEPTH: Final = 32
#: Major type 1 holds -1 - arg; arg < 2**63 keeps it in the 64-bit range.
_NEG_LIMIT: Final = 1 << 63
_NOT_CANONICAL: Final = ("CBOR is not in canonical form (RFC 8949 4.2.1): re-encode it with "
                         "sorted keys, shortest integers and definite lengths")


def _table() -> tuple[bytes, tuple[int, ...]]:
    """Per initial byte: what kind of head it starts, and its argument width in bytes."""
    kind = bytearray(256)  # 0: refused; 1: one-byte scalar; 2: int; 3: neg int; 4: string;
    width = [0] * 256      # 5: array; 6: map
    for b in range(256):
        major, info = b >> 5, b & 31
        if major == 7:
            kind[b] = 1 if info in (20, 21, 22) else 0
            continue
        if major == 6 or info >= 28:
            continue  # tags; reserved and indefinite lengths
        kind[b] = (2, 3, 4, 4, 5, 6)[major]
        width[b] = 0 if info < 24 else 1 << (info - 24)
    return bytes(kind), tuple(width)


_KIND_WIDTH = _table()
_KIND: Final = _KIND_WIDTH[0]
_WIDTH: Final = _KIND_WIDTH[1]
_SIMPLE: Final[tuple[Any, ...]] = (False, True, None)  # heads 0xf4, 0xf5, 0xf6
#: Bounded memo of map keys by their encoded bytes (head included): a key is decoded from
#: UTF-8 once. Keys come from outside, so only short ones are kept and the memo stops
#: growing when full; what it holds is what decoding gives, so it changes no result.
_KEYS: Final[dict[bytes, str]] = {}


def _refusal(head: int) -> MalformedError:
    major, info = head >> 5, head & 31
    if major == 7:
        return MalformedError("CBOR floats and simple values other than false, true and null "
                              "are not allowed; carry fractions as integers")
    if major == 6:
        return MalformedError("CBOR tags are not allowed; send plain values")
    if info == 31:
        return MalformedError(_NOT_CANONICAL)
    return MalformedError("not valid CBOR: reserved additional information")


def _argument(data: bytes, pos: int, width: int, end: int) -> int:
    """The argument of the head at ``pos`` written in the ``width`` bytes after it, which
    must be its shortest form (RFC 8949 4.2.1). IndexError when the input ends first."""
    if pos + 1 + width > end:
        raise IndexError
    if width == 1:  # the most common: that byte, with no slice
        arg: int = data[pos + 1]
        if arg < 24:
            raise MalformedError(_NOT_CANONICAL)
        return arg
    arg = int.from_bytes(data[pos + 1:pos + 1 + width], "big")
    if arg < (256 if width == 2 else 65536 if width == 4 else 1 << 32):
        raise MalformedError(_NOT_CANONICAL)
    return arg


def _item(data: bytes, pos: int, end: int, depth: int,
          starts: list[int] | None) -> tuple[Any, int]:
    """The item at ``pos`` and where it ends, checked as it is built (``decode_spans``).
    ``depth``: containers around it. ``starts``: when given (the top level only), where each
    item directly inside this container starts (for a map, keys and values alternate).
    IndexError when the input ends inside it, UnicodeDecodeError for text that is not UTF-8."""
    head = data[pos]
    kind = _KIND[head]
    width = _WIDTH[head]
    arg = _argument(data, pos, width, end) if width else head & 31
    pos += 1 + width
    if kind == 4:  # a byte or text string
        stop = pos + arg
        if stop > end:
            raise IndexError
        if head < 0x60:
            return data[pos:stop], stop
        return data[pos:stop].decode("utf-8"), stop
    if kind == 2:
        return arg, pos
    if kind == 5:
        if depth >= _MAX_DEPTH:
            raise _too_deep()
        items: list[Any] = []
        for _ in range(arg):
            if starts is not None:
                starts.append(pos)
            value, pos = _item(data, pos, end, depth + 1, None)
            items.append(value)
        return items, pos
    if kind == 6:
        if depth >= _MAX_DEPTH:
            raise _too_deep()
        out: dict[str, Any] = {}
        prev = b""
        for _ in range(arg):  # the key first: text, after the previous key
            if starts is not None:
                starts.append(pos)
            key_head = data[pos]
            if _KIND[key_head] != 4 or key_head < 0x60:
                raise MalformedError("map key is not text; only text keys are allowed")
            key_width = _WIDTH[key_head]
            stop = pos + 1 + key_width + (_argument(data, pos, key_width, end) if key_width
                                          else key_head & 31)
            if stop > end:
                raise IndexError
            encoded = data[pos:stop]
            if encoded <= prev:
                raise MalformedError(
                    "CBOR map keys are not in canonical order (RFC 8949 4.2.1), or "
                    "repeat; re-encode it deterministically")
            prev = encoded
            key = _KEYS.get(encoded)
            if key is None:
                key = data[pos + 1 + key_width:stop].decode("utf-8")
                if len(_KEYS) < _MEMO_MAX and stop - pos <= 64:
                    _KEYS[encoded] = key
            if starts is not None:
                starts.append(stop)
            value, pos = _item(data, stop, end, depth + 1, None)
            out[key] = value
        return out, pos
    if kind == 3:
        if arg >= _NEG_LIMIT:
            raise _out_of_range(-1 - arg)
        return -1 - arg, pos
    if kind == 1:
        return _SIMPLE[head - 0xF4], pos
    raise _refusal(head)


def decode_spans(data: BytesLike, *, max_size: int = MAX_ENCODED) -> tuple[Value, list[int]]:
    """``decode``, and where each item directly inside the top-level container starts (for
    a map, keys and values alternate), so callers can hash an inner item's bytes as
    received.

    One pass over the bytes (RFC 8949 section 3) builds the value and checks, as it goes:
    - every argument (integer, length, count) in its shortest form (4.2.1), no indefinite
      lengths (additional info 31) nor reserved ones (28-30);
    - major types 0-5 only, plus the simple values false, true and null: no tags (6), no
      floats, no other simple values;
    - negative integers within the 64-bit range (-2**63 and up);
    - text is UTF-8;
    - map keys are text, and each key's encoded bytes sort strictly after the previous key's
      (bytewise, 4.2.1; so no key repeats);
    - at most 32 nested containers; and no byte after the item, none missing.
    Nothing is re-encoded (``tests/test_codec_oracle.py`` holds the verdicts and values to
    the former decode, check and re-encode)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("decode takes bytes")
    if len(data) > max_size:
        raise MalformedError(f"encoded object is {len(data)} bytes; the limit is {max_size}")
    data = bytes(data)
    end = len(data)
    if not end:
        raise MalformedError("not valid CBOR: empty input")
    starts: list[int] = []
    try:
        value, pos = _item(data, 0, end, 0, starts)
    except IndexError:
        raise MalformedError("not valid CBOR: the input ends inside an item") from None
    except UnicodeDecodeError:
        raise MalformedError("not valid CBOR: text that is not UTF-8; send UTF-8 "
                             "text") from None
    if pos != end:
        raise MalformedError(_NOT_CANONICAL)
    return value, starts


def decode(data: BytesLike, *, max_size: int = MAX_ENCODED) -> Value:
    """Decode canonical CBOR bytes.

    Raises MalformedError when the bytes are too large, do not parse, hold a disallowed type,
    or are not the canonical encoding of what they hold; TypeError for a non-bytes argument.
    """
    return decode_spans(data, max_size=max_size)[0]


def value_spans(data: bytes, keys: tuple[str, ...], at: int = 0) -> list[tuple[int, int]]:
    """Where the value under each of ``keys`` lies in ``data``, in the map encoded at ``at``:
    ``data[start:end]`` is that value's encoding. One walk over the map's entries, which are
    stepped over, not decoded, and it stops at the last key asked for; so a record's parts
    can be read or replaced (``state.machine.bump_nonce`` puts a new nonce in place), and a
    transaction's field taken as it came (``SignedTx.body_encoding``), without decoding and
    re-encoding the rest.

    KeyError when the map lacks one of them, as ``decode_trusted(data)[key]`` raises.
    Nothing in ``data`` is checked, so it must be canonical bytes this process wrote (a
    state value) or proved (an envelope ``decode`` accepted), never unchecked bytes."""
    head = data[at]
    if head >> 5 != 5:
        raise ValueError("value_spans takes an encoded map")
    width = _WIDTH[head]
    count = int.from_bytes(data[at + 1:at + 1 + width], "big") if width else head & 31
    asked = _ASKED.get(keys)
    if asked is None:
        asked = _asked(keys)
    wanted, last = asked
    spans: list[tuple[int, int]] = [(0, 0)] * len(keys)
    left = len(wanted)
    pos = at + 1 + width
    for _ in range(count):
        if not left:
            break
        stop = _end(data, pos)
        found = data[pos:stop]
        pos = _end(data, stop)
        i = wanted.get(found)
        if i is not None:
            spans[i] = (stop, pos)
            left -= 1
        elif found > last:  # keys are in bytewise order (RFC 8949 4.2.1): the rest are not
            break
    if left:  # no value starts at 0: a span (0, 0) was not found
        raise KeyError(next(k for k, span in zip(keys, spans, strict=True) if span == (0, 0)))
    return spans


#: Bounded memo of ``value_spans``'s questions: each tuple of keys' encodings, by their
#: place in it, and the last in the map's order. The keys are the callers' own names.
_ASKED: Final[dict[tuple[str, ...], tuple[dict[bytes, int], bytes]]] = {}


def _asked(keys: tuple[str, ...]) -> tuple[dict[bytes, int], bytes]:
    wanted = {_key_bytes(key): i for i, key in enumerate(keys)}
    if len(wanted) != len(keys):
        raise ValueError("value_spans: a key asked for twice")
    asked = wanted, max(wanted) if wanted else b""
    if len(_ASKED) < 64:
        _ASKED[keys] = asked
    return asked


def value_span(data: bytes, key: str, at: int = 0) -> tuple[int, int]:
    """``value_spans`` of one key."""
    return value_spans(data, (key,), at)[0]


def _end(data: bytes, pos: int) -> int:
    """Where the item at ``pos`` of canonical bytes this process encoded ends."""
    head = data[pos]
    width = _WIDTH[head]
    if width == 0:
        arg = head & 31
    elif width == 1:
        arg = data[pos + 1]
    else:
        arg = int.from_bytes(data[pos + 1:pos + 1 + width], "big")
    pos += 1 + width
    major = head >> 5
    if major == 2 or major == 3:
        return pos + arg
    if major == 4 or major == 5:
        for _ in range(arg if major == 4 else 2 * arg):
            pos = _end(data, pos)
    return pos


def decode_trusted(data: bytes) -> Value:
    """Decode bytes this process encoded itself (state values): no canonical re-check.

    Never use it on bytes from outside; ``verify`` re-derives every stored value anyway.
    """
    return cbor2.loads(data)


def decode_authenticated(data: bytes) -> Value:
    """Decode bytes this node encoded and authenticated (the plaintext of a blob whose
    AES-GCM tag verified under its data key): no canonical re-scan. Raises MalformedError
    when they do not parse (they always do unless the node wrote garbage)."""
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            EOFError, KeyError, IndexError) as exc:
        raise MalformedError(f"not valid CBOR: {type(exc).__name__}") from None


def parse_hex_id(text: str, what: str) -> bytes:
    """A 32-byte id (a transaction hash, an account id) typed as 64 hex digits, as every edge
    prints them. Raises InputError (code ``bad_input``) saying ``what`` it should be."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InputError(f"{what} is 64 hex digits (as printed when it was created)")
    return value
