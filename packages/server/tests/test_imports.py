import tokenlean.server as server


def test_public_api_is_pinned() -> None:
    assert sorted(server.__all__) == sorted([
        "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MODEL_NAME", "DEFAULT_STOP_CONFIDENCE", "ENV_API_KEYS",
        "TENANT_HEADER", "Delta", "EarlyStop", "Engine", "EngineClosed", "Event", "EventStream",
        "Failed", "Finished",
        "Generation", "Metrics", "PrefixCache", "PrefixCacheStats", "PromptTooLong", "QueueFull",
        "SamplingParams", "ServerThread", "Started", "Ticket", "create_app",
        "default_allowed_hosts", "load_model", "parse_api_keys", "served_name",
    ])
    for name in server.__all__:
        assert getattr(server, name) is not None


def test_pruning_side_pulls_no_web_stack() -> None:
    """The server is its own distribution: tokenlean.backend (pruning) imports no web stack."""
    import subprocess
    import sys

    code = ("import sys, tokenlean.core, tokenlean.backend; "
            "print(any(m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
