"""runtime.long_running_gc: what ``serve``, its HTTP workers and ``glucoledger node`` set up
once their setup is done (the collector's pauses were the slowest uploads: README,
Performance)."""

from __future__ import annotations

import gc

from glucoledger.runtime import GC_THRESHOLDS, long_running_gc


def test_what_setup_loaded_is_frozen_and_young_objects_are_collected_less_often() -> None:
    before = gc.get_threshold()
    loaded = [{"record": i} for i in range(1000)]  # containers that outlive setup
    try:
        long_running_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() >= len(loaded)
        walked = {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
        assert id(loaded[0]) not in walked  # frozen: in no generation a collection walks
        assert gc.isenabled()  # tuned, not turned off: cycles are still freed
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
