import tokenlean.audit as audit
import tokenlean.audit.report as report


def test_public_api_is_pinned() -> None:
    assert audit.__all__ == [
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
    assert report.__all__ == ["EMBED_ID", "read_embedded", "render_html", "write_html"]
    for name in audit.__all__:
        assert getattr(audit, name) is not None
