"""The examples' backend: tokenlean's own OpenAI-compatible server, offline.

``local_server(None)`` loads SmolLM2-135M-Instruct (from its wheel) and serves it
on a loopback port for the duration of the block; ``local_server(url)`` uses a
server you already run (``tokenlean serve``). The server also answers to the
name ``gpt-4o``, so apps that price calls by the model they asked for (the
LlamaIndex cost handler, say) price the local answers as if gpt-4o gave them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

PRICED_AS = "gpt-4o"


@contextmanager
def local_server(base_url: str | None = None) -> Iterator[str]:
    """Yields the OpenAI base URL (``.../v1``)."""
    if base_url:
        yield base_url.rstrip("/")
        return
    from tokenlean.server import DEFAULT_MODEL_NAME, Engine, ServerThread, create_app, load_model

    model, tokenizer = load_model()
    app = create_app(Engine(model, tokenizer), model_name=DEFAULT_MODEL_NAME,
                     aliases=[PRICED_AS])
    with ServerThread(app) as server:
        yield f"{server.url}/v1"
