"""Prometheus metrics of one server (its own registry, so several can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The server's counters and gauges; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tokenlean_server_requests",
                                "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("tokenlean_server_prompt_tokens",
                                     "Prompt tokens of admitted requests.", registry=r)
        self.completion_tokens = Counter("tokenlean_server_completion_tokens",
                                         "Tokens generated.", registry=r)
        self.cached_tokens = Counter("tokenlean_server_prefix_cache_hit_tokens",
                                     "Prompt tokens whose KV came from the prefix cache.",
                                     registry=r)
        self.prefix_hits = Counter("tokenlean_server_prefix_cache_hits",
                                   "Prefills that reused at least one cached prefix block.",
                                   registry=r)
        self.prefix_misses = Counter("tokenlean_server_prefix_cache_misses",
                                     "Prefills that found no cached prefix block.", registry=r)
        self.finished = Counter("tokenlean_server_finished",
                                "Generations by finish reason (stop, length, cancelled, error).",
                                ["reason"], registry=r)
        self.early_stops = Counter("tokenlean_server_early_stops",
                                   "Generations ended early at a boundary past their soft "
                                   "budget (also counted as finished reason stop).", registry=r)
        self.rejected = Counter("tokenlean_server_rejected",
                                "Requests refused because the queue was full.", registry=r)
        self.queue_depth = Gauge("tokenlean_server_queue_depth",
                                 "Requests waiting for a batch slot.", registry=r)
        self.active = Gauge("tokenlean_server_active_sequences",
                            "Sequences in the decoding batch.", registry=r)
        self.prefix_cache_tokens = Gauge("tokenlean_server_prefix_cache_tokens",
                                         "Tokens whose KV the prefix cache holds.", registry=r)
        self.ttft = Histogram("tokenlean_server_time_to_first_token_seconds",
                              "From admission to the queue to the first token.",
                              buckets=_TTFT_BUCKETS, registry=r)
        self.batch_size = Histogram("tokenlean_server_decode_batch_size",
                                    "Sequences decoded together per step.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
