import tokenlean.audit as audit
import tokenlean.audit.report as report


def test_public_api_is_pinned() -> None:
    assert audit.__all__ == [
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
    assert report.__all__ == ["EMBED_ID", "read_embedded", "render_html", "write_html"]
    for name in audit.__all__:
        assert getattr(audit, name) is not None


def test_commands_are_registered_as_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="tokenlean.commands")}
    assert names["audit"] == "tokenlean.audit._cli:audit"
    assert names["demo"] == "tokenlean.audit._cli:demo"
