"""Client-side deadlines for network stores whose driver has no read timeout.

psycopg waits for a server's reply without a client-side limit (PostgreSQL's
``statement_timeout`` is enforced by the server, which a hung server never
does), and its connect timeout cannot go below 2 s. :class:`DeadlineWorker`
runs the store's calls on one daemon thread and waits at most ``timeout_s``
for each: past it the caller gets a :class:`StoreTimeout` (the cache passes the
call through with its one outage warning) and the store's ``interrupt`` shuts
the connection's socket down, so the stuck call ends with an error and the
connection is replaced on the next call. Only the worker thread touches the
connection; callers queue behind it, and a call that waited past its deadline
is dropped from the queue unrun. While a call that overran its deadline has not
ended (a reconnect to a hung server can take psycopg's 2 s minimum), new calls
fail at once instead of each waiting out its own deadline.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from tokenlean.core import ConfigError

__all__ = ["DeadlineWorker", "StoreTimeout", "positive_seconds"]

T = TypeVar("T")


def positive_seconds(name: str, value: object) -> float:
    """``value`` as float seconds; a :class:`ConfigError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class StoreTimeout(TimeoutError):
    """A store call did not finish within the store's timeout (an outage, not a bug)."""


class _Job:
    __slots__ = ("done", "error", "fn", "lock", "result", "state")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn: Callable[[], Any] = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.state = "queued"  # -> "running" -> "done", or "queued" -> "abandoned"
        self.lock = threading.Lock()
        self.done = threading.Event()


class DeadlineWorker:
    """Run ``fn()`` on the worker thread; wait at most ``timeout_s`` for it."""

    def __init__(self, name: str, interrupt: Callable[[], None]) -> None:
        self._name, self._interrupt = name, interrupt
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._overrun: _Job | None = None  # a call that overran its deadline, maybe still running

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            with job.lock:
                if job.state == "abandoned":
                    continue
                job.state = "running"
            try:
                job.result = job.fn()
            except BaseException as exc:  # handed to the caller
                job.error = exc
            with job.lock:
                job.state = "done"
            job.done.set()

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        overrun = self._overrun
        if overrun is not None and not overrun.done.is_set():
            raise StoreTimeout(f"{self._name}: still waiting for an earlier call to end")
        self._ensure_thread()
        job = _Job(fn)
        self._jobs.put(job)
        if not job.done.wait(timeout_s):
            with job.lock:
                running = job.state == "running"
                if job.state == "queued":
                    job.state = "abandoned"
            if running:
                self._overrun = job
                self._interrupt()
            if not job.done.is_set():
                raise StoreTimeout(f"{self._name}: no answer within {timeout_s:g} s")
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    def close(self) -> None:
        self._jobs.put(None)
