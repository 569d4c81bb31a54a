"""tokenlean.audit: replay a traffic log offline, estimate what each layer saves,
and write a self-contained HTML report; plus ``tokenlean demo``.

    from tokenlean.audit import audit_log, render_html

    report = audit_log("traffic.jsonl", limit=500)
    print(report["cost_per_mtok_before"], report["cost_per_mtok_after"])
    Path("audit.html").write_text(render_html(report))
"""

from ._audit import LAYERS, AuditOptions, audit_entries, audit_log, context_spans
from ._logs import LogEntry, read_log
from .report import read_embedded, render_html, write_html

__all__ = [
    "LAYERS",
    "AuditOptions",
    "LogEntry",
    "audit_entries",
    "audit_log",
    "context_spans",
    "read_embedded",
    "read_log",
    "render_html",
    "write_html",
]
