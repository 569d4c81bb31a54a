"""Run a layer's step within its time budget.

A step that overruns is left to finish on its own in a background thread (Python
cannot stop a thread) while the call goes on without it; the caller gets
:class:`Overran` at once. The threads are daemon threads, so a step that never
returns cannot hold up the process's exit (``concurrent.futures`` joins its
workers at exit). At most :data:`MAX_WORKERS` steps run at once; a step that
waits for a free thread longer than its budget overruns like any other.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

__all__ = ["DEFAULT_LAYER_TIME_BUDGET_S", "FIRST_CALL_TIME_BUDGET_S", "MAX_WORKERS", "Overran",
           "arun_within", "run_within", "when_done"]

T = TypeVar("T")

#: seconds one layer step (``process`` or a hook) may take on one call
DEFAULT_LAYER_TIME_BUDGET_S = 5.0
#: seconds a layer's first step in the process may take (it loads its models)
FIRST_CALL_TIME_BUDGET_S = 60.0
MAX_WORKERS = 32


class Overran(Exception):
    """A step took longer than its budget; ``late`` is its future result."""

    def __init__(self, budget_s: float, late: Future[Any]) -> None:
        super().__init__(f"took longer than its time budget of {budget_s:g} s")
        self.budget_s = budget_s
        self.late = late


class _DaemonWorkers:
    """A thread pool of daemon threads, grown on demand up to ``size``."""

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._size = size
        self._threads = 0
        self._idle = 0

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, job))
        with self._lock:
            if self._idle == 0 and self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._work, name="tokenlean-layer", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)


_workers: _DaemonWorkers | None = None
_workers_lock = threading.Lock()


def _pool() -> _DaemonWorkers:
    global _workers
    with _workers_lock:
        if _workers is None:
            _workers = _DaemonWorkers(MAX_WORKERS)
        return _workers


def run_within(budget_s: float | None, step: Callable[..., T], *args: Any) -> T:
    """``step(*args)``, or :class:`Overran` after ``budget_s`` seconds (None: no budget,
    run here). The step sees the caller's context variables."""
    if budget_s is None:
        return step(*args)
    context = contextvars.copy_context()
    future = _pool().submit(lambda: context.run(step, *args))
    try:
        return future.result(timeout=budget_s)
    except FutureTimeout:
        future.cancel()  # still queued: it never starts
        raise Overran(budget_s, future) from None


async def arun_within(budget_s: float | None, step: Callable[..., Any], *args: Any) -> Any:
    """Async twin of :func:`run_within`: a coroutine step runs as a task (left running
    when it overruns), a plain one in a worker thread."""
    if budget_s is None:
        result = step(*args)
        return await result if inspect.isawaitable(result) else result
    if inspect.iscoroutinefunction(step):
        task: asyncio.Future[Any] = asyncio.ensure_future(step(*args))
        late: Future[Any] = Future()
        task.add_done_callback(lambda t: _settle(late, t))
        try:
            return await asyncio.wait_for(asyncio.shield(task), budget_s)
        except TimeoutError:
            raise Overran(budget_s, late) from None
    context = contextvars.copy_context()
    future = _pool().submit(lambda: context.run(step, *args))
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), budget_s)
    except TimeoutError:
        future.cancel()
        raise Overran(budget_s, future) from None
    return await result if inspect.isawaitable(result) else result


def _settle(late: Future[Any], task: asyncio.Future[Any]) -> None:
    """Mirror a finished task into a concurrent future (and retrieve its exception,
    so asyncio does not log it as never retrieved)."""
    if not late.set_running_or_notify_cancel():
        return
    if task.cancelled():
        late.cancel()
    elif task.exception() is not None:
        late.set_exception(task.exception())
    else:
        late.set_result(task.result())


def when_done(late: Future[Any], then: Callable[[Any], object]) -> None:
    """Call ``then(result)`` once an overrun step finishes with a result (never on an
    exception); whatever ``then`` raises is dropped: the call it belonged to is over."""

    def done(future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        try:
            then(future.result())
        except Exception:
            return  # the call it belonged to is over, and was warned about

    late.add_done_callback(done)
