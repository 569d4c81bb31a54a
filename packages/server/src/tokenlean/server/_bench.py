"""`tokenlean bench server` (placeholder)."""

from __future__ import annotations


def bench() -> None:
    """Server throughput benchmark."""
