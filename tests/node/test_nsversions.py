"""``doc_refs``: the Nightscout document of each record of a batch, as the rest of the
version rule names it (``identity_tag``, ``version_key``, ``alias_key``), computed in bulk."""

from __future__ import annotations

from glucoledger.glucose.readings import Bolus, Carbs, CgmReading, SmbgReading
from glucoledger.interop import nightscout as ns
from glucoledger.node.nightscout import batches_of
from glucoledger.node.nsversions import doc_refs, identity_tag
from glucoledger.state.versions import alias_key, version_key

T = 1_767_225_600_000


def test_each_record_is_named_as_a_nightscout_reader_sees_it() -> None:
    key, patient = bytes(range(32)), bytes(range(32, 64))
    sent = [{"type": "sgv", "sgv": 120, "date": T + 60_000, "dateString": "x",
             "device": "xDrip-DexcomG6"}]
    uploaded = [r for b in batches_of(ns.parse_docs("entries", sent), T) for r in b.items]
    assert uploaded and all(r.ns is not None for r in uploaded)  # with its annex
    items = [CgmReading(T, 0, 100), SmbgReading(T + 1, 0, 110),
             Bolus(T + 2, 0, "normal", 1500), Carbs(T + 3, 0, 300), *uploaded]
    refs = doc_refs(key, patient, items)
    assert [r.index for r in refs] == list(range(len(items)))
    for ref, rec in zip(refs, items, strict=True):
        [found] = ns.docs_from_records([rec])  # what a Nightscout read lists
        assert ns.identity_of(rec)[:2] == (found.collection, found.key)  # type: ignore[index]
        tag = identity_tag(key, patient, found.collection, found.key)
        assert ref.tag == tag
        assert ref.version_key == version_key(patient, tag)
        assert ref.alias_key == alias_key(patient, tag)
        assert ref.uploaded_as == 1
