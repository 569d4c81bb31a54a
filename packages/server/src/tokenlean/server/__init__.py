"""tokenlean.server: a local OpenAI- and Anthropic-compatible server for a (pruned) model.

Point the apps you already have at a local model by changing only a base URL:

```python
from tokenlean.server import Engine, ServerThread, create_app, load_model

model, tokenizer = load_model()            # SmolLM2-135M-Instruct, or load_model("pruned/")
app = create_app(Engine(model, tokenizer), model_name="SmolLM2-135M-Instruct")
with ServerThread(app) as server:          # or: `tokenlean serve`
    ...  # OpenAI(base_url=server.url + "/v1"), Anthropic(base_url=server.url)
```

Concurrent requests are decoded together (continuous batching); requests that
share a prompt prefix reuse its KV cache (:class:`PrefixCache`).
"""

from ._access import ENV_API_KEYS, default_allowed_hosts, parse_api_keys
from ._app import DEFAULT_MAX_BODY_BYTES, TENANT_HEADER, create_app
from ._early import DEFAULT_STOP_CONFIDENCE, EarlyStop
from ._engine import (
    Delta,
    Engine,
    EngineClosed,
    Event,
    EventStream,
    Failed,
    Finished,
    Generation,
    PromptTooLong,
    QueueFull,
    SamplingParams,
    Started,
    Ticket,
)
from ._metrics import Metrics
from ._prefix import PrefixCache, PrefixCacheStats
from ._run import DEFAULT_MODEL_NAME, ServerThread, load_model, served_name

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_STOP_CONFIDENCE",
    "ENV_API_KEYS",
    "TENANT_HEADER",
    "Delta",
    "EarlyStop",
    "Engine",
    "EngineClosed",
    "Event",
    "EventStream",
    "Failed",
    "Finished",
    "Generation",
    "Metrics",
    "PrefixCache",
    "PrefixCacheStats",
    "PromptTooLong",
    "QueueFull",
    "SamplingParams",
    "ServerThread",
    "Started",
    "Ticket",
    "create_app",
    "default_allowed_hosts",
    "load_model",
    "parse_api_keys",
    "served_name",
]
