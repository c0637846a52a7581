"""glucoledger.glucose: readings, units, validation, consensus CGM metrics, AGP, simulators.

Modules: ``units`` (mg/dL and mmol/L), ``readings`` (validated records, ``parse_batch``),
``ingest`` (JSON lines), ``metrics`` (International Consensus on Time in Range), ``agp``
(the ambulatory glucose profile), ``report`` (HTML and PNG AGP reports), ``simulate``
(deterministic simulated patients). Everything here is pure computation: no files, no
network, no clock (callers pass ``now_ms``).
"""

from .agp import Agp, compute_agp
from .ingest import parse_jsonl
from .metrics import Summary, summarize
from .readings import (
    STREAMS,
    Basal,
    Batch,
    Bolus,
    Carbs,
    CgmReading,
    DeviceSettings,
    Note,
    SmbgReading,
    parse_batch,
)
from .report import render_html, render_png
from .simulate import simulate_cgm, simulate_patient, simulate_with_simglucose
from .units import mgdl_to_mmol, mmol_to_mgdl

__all__ = [
    "STREAMS",
    "Agp",
    "Basal",
    "Batch",
    "Bolus",
    "Carbs",
    "CgmReading",
    "DeviceSettings",
    "Note",
    "SmbgReading",
    "Summary",
    "compute_agp",
    "mgdl_to_mmol",
    "mmol_to_mgdl",
    "parse_batch",
    "parse_jsonl",
    "render_html",
    "render_png",
    "simulate_cgm",
    "simulate_patient",
    "simulate_with_simglucose",
    "summarize",
]
