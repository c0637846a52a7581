"""How one Nightscout document splits into records and comes back whole. Pure.

A document becomes one or more *parts*: one record each, in the stream its clinical quantity
belongs to (a Meal Bolus is a bolus in ``insulin`` and an entry in ``carbs``). Each part's
record carries an annex (glucose/annex.py), the canonical JSON text of::

    {"c": collection, "k": key, "f": {fields}, "o": [omitted]}

- ``c``, ``k``: the collection and the Nightscout identity (deduplication key, e.g.
  ``"Meal Bolus|1714557600000"``) of the document; every part of one document has the same,
  so the read path groups the parts back into one document.
- *canonical*: what the server derives from the record alone (the clinical fields: sgv,
  insulin, carbs, glucose, rate, notes...; and the time fields Nightscout itself adds), built
  by interop/nightscout.py for the upload and for the read alike.
- ``f``: the document's fields *assigned to this part* (``assign``) whose value is not
  exactly (same JSON type, same value) the canonical one; ``o``: canonical fields the
  document did not have. Either is left out when empty.
- ``v`` (2 or more; left out for 1): the version of the document this part was uploaded
  as (``with_version``; node/nsversions.py). A part of a later version counts only once a
  ``doc.version`` names its batch: a change the ledger refused never reads as a document.

So a part's fields as sent are ``canonical - o + f`` (``Annex.original``), the document as
sent is the union over its parts, and what a client reads adds the server's own fields
(``_id``, and e.g. ``created_at``/``utcOffset`` on a treatment) only where the document had
none (``Annex.served``).

Consent: a reader granted ``carbs`` but not ``insulin`` sees the carbs part of a Meal Bolus
and nothing of its insulin. So fields are assigned by meaning: identifiers and times (shared)
go to every part, a stream's own fields (``programmed``, ``absorptionTime``...) only to that
stream's parts, and fields nobody classified to the first part (the primary one).

Bounds (``Limits``, per collection): an annex holds JSON scalars, small objects and lists,
at most so many characters, keys (at every depth), levels and list items. A document over
them is refused whole with an OutOfRangeError naming the field, so nothing is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..errors import MalformedError, OutOfRangeError
from ..glucose.annex import MAX_ANNEX_CHARS, annex_text, annex_value

__all__ = ["LIMITS", "Annex", "Limits", "assign", "make", "same", "with_version"]


@dataclass(frozen=True)
class Limits:
    """Bounds of what one part may keep besides its record."""

    chars: int  # the annex text, all included
    keys: int  # object keys at every depth
    depth: int  # levels below a field (0: scalars only; 1: objects/lists of scalars)
    items: int  # elements of any one list


LIMITS: Final = {
    "entries": Limits(chars=2_048, keys=32, depth=1, items=64),
    "treatments": Limits(chars=8_192, keys=64, depth=2, items=256),
    "devicestatus": Limits(chars=32_768, keys=1_024, depth=6, items=1_024),
    "profile": Limits(chars=MAX_ANNEX_CHARS, keys=4_096, depth=6, items=1_024),
}
assert all(lim.chars <= MAX_ANNEX_CHARS for lim in LIMITS.values())


def same(a: Any, b: Any) -> bool:
    """JSON identity: same type (an int is not a float, True is not 1) and same value
    (floats by their repr, so -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def assign(doc: Mapping[str, Any], streams: Sequence[str], shared: frozenset[str],
           owner: Mapping[str, str]) -> list[dict[str, Any]]:
    """The document's fields each part keeps: ``shared`` ones in every part; a field that
    ``owner`` gives to a stream in every part of that stream, or in the first part if the
    document has none; any other field in the first part."""
    present = set(streams)
    out: list[dict[str, Any]] = [{} for _ in streams]
    for k, v in doc.items():
        stream = owner.get(k)
        for i, s in enumerate(streams):
            if k in shared or (stream in present and s == stream) or (
                    i == 0 and stream not in present):
                out[i][k] = v
    return out


def _shape(value: Any, where: str, depth: int, lim: Limits) -> int:
    """Keys under ``value``; raises OutOfRangeError past the depth or list bounds."""
    if not isinstance(value, (dict, list)):
        return 0
    if depth >= lim.depth:
        raise OutOfRangeError(
            f"{where} nests {depth + 1} levels; fields here may nest at most {lim.depth} "
            "(objects and lists of scalars), so this document cannot be kept")
    if isinstance(value, list):
        if len(value) > lim.items:
            raise OutOfRangeError(f"{where} holds {len(value)} items; at most {lim.items} "
                                  "are kept: send fewer")
        return sum(_shape(v, f"{where}[{i}]", depth + 1, lim) for i, v in enumerate(value))
    return len(value) + sum(_shape(v, f"{where}.{k}", depth + 1, lim)
                            for k, v in value.items())


def make(collection: str, key: str, fields: Mapping[str, Any], canonical: Mapping[str, Any],
         what: str) -> str:
    """The annex text of one part. Raises OutOfRangeError when it is over the bounds of
    ``collection`` (``LIMITS``), naming the largest field."""
    lim = LIMITS[collection]
    f = {k: v for k, v in fields.items() if k not in canonical or not same(canonical[k], v)}
    keys = len(f) + sum(_shape(v, f"{what}.{k}", 0, lim) for k, v in f.items())
    if keys > lim.keys:
        raise OutOfRangeError(f"{what} has {keys} fields (nested ones included) besides its "
                              f"readings; at most {lim.keys} are kept for {collection}: "
                              "drop some")
    annex: dict[str, Any] = {"c": collection, "k": key}
    if f:
        annex["f"] = f
    omitted = sorted(k for k in canonical if k not in fields)
    if omitted:
        annex["o"] = omitted
    text = annex_text(annex)
    if len(text) > lim.chars:
        big = max(f, key=lambda k: len(annex_text({k: f[k]})))
        raise OutOfRangeError(
            f"{what}: the fields kept besides the readings take {len(text)} characters as "
            f"JSON; at most {lim.chars} for {collection}: shorten or drop the largest "
            f"({big}: {len(annex_text({big: f[big]}))} characters)")
    return text


def with_version(text: str, n: int) -> str:
    """The annex ``text`` (made by ``make``) of a part uploaded as version ``n`` (>= 2) of
    its document. Raises ValueError for n < 2 or a text that is not an annex."""
    if n < 2:
        raise ValueError("version 1 is the first upload: its annex carries no version")
    value = annex_value(text)
    if Annex.parse(text, [str(value.get("c"))]) is None:
        raise ValueError("not a Nightscout annex")
    return annex_text(dict(value, v=n))


@dataclass(frozen=True)
class Annex:
    """A part's annex, read back."""

    collection: str
    key: str
    fields: dict[str, Any]
    omitted: tuple[str, ...]
    version: int = 1  # the document version this part was uploaded as

    @classmethod
    def parse(cls, text: str, collections: Iterable[str]) -> Annex | None:
        """The annex in ``text``, or None if it is not one of ours (then the record reads
        as a record without an annex)."""
        try:
            v = annex_value(text)
        except MalformedError:
            return None
        c, k, f, o = v.get("c"), v.get("k"), v.get("f", {}), v.get("o", [])
        n = v.get("v", 1)
        if (set(v) - {"c", "k", "f", "o", "v"} or c not in set(collections)
                or not isinstance(k, str) or not isinstance(f, dict)
                or not isinstance(o, list) or not all(isinstance(x, str) for x in o)
                or type(n) is not int or n < 1 or ("v" in v and n < 2)):
            return None
        return cls(c, k, f, tuple(o), n)

    def original(self, canonical: Mapping[str, Any]) -> dict[str, Any]:
        """This part's fields as the document had them."""
        out = {k: v for k, v in canonical.items() if k not in self.omitted}
        out.update(self.fields)
        return out

    def served(self, canonical: Mapping[str, Any], added: Iterable[str]) -> dict[str, Any]:
        """What a client reads of this part: as sent, plus the server's ``added`` fields
        where the document had none."""
        out = self.original(canonical)
        for k in added:
            if k not in out and k in canonical:
                out[k] = canonical[k]
        return out
