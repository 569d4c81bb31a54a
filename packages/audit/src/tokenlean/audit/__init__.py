"""tokenlean.audit: replay a traffic log offline through the pipeline ``lean()`` would
run, and write a self-contained HTML report of what each layer saved.

    from tokenlean.audit import AuditOptions, audit_log, write_html

    report = audit_log("traffic.jsonl", limit=500, options=AuditOptions(preset="max-savings"))
    print(report["cost_per_mtok_before"], report["cost_per_mtok_after"])
    write_html(report, "audit.html")
"""

from ._audit import LAYERS, AuditOptions, audit_entries, audit_log
from ._logs import LogEntry, read_log
from ._output import OutputRatios, load_output_ratios
from ._replay import MemoryLedger, ReplayProvider
from .report import read_embedded, render_html, write_html

__all__ = [
    "LAYERS",
    "AuditOptions",
    "LogEntry",
    "MemoryLedger",
    "OutputRatios",
    "ReplayProvider",
    "audit_entries",
    "audit_log",
    "load_output_ratios",
    "read_embedded",
    "read_log",
    "render_html",
    "write_html",
]
