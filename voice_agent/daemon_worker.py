"""A worker on a daemon thread for blocking calls the event loop must never wait on without a bound.

Audio drivers and ALSA plugins can block indefinitely in open(), read, write, abort or close (a wedged USB
microphone, a FIFO-backed device with no writer). Run on the event loop, such a call freezes the appliance and its
signal handling; run through `asyncio.to_thread`, it holds up `asyncio.run()`'s executor shutdown and the
interpreter's exit, which join those threads. A daemon thread of our own can simply be abandoned at shutdown."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["DaemonWorker"]


class DaemonWorker:
    """Runs submitted calls one after another, in order, on one daemon thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future, Callable[..., Any], tuple] | None] = \
            queue.SimpleQueue()
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._stopped.set_result(None)
                return
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits for the result
                fut.set_exception(exc)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Queue `fn(*args)`; the result (or exception) arrives in the returned future."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fut, fn, args))
        return fut

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the worker thread. Cancelling the caller does not interrupt a call already running."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def stop(self) -> None:
        """End the thread once the calls already queued have run (a call that never returns keeps it, harmlessly:
        it is a daemon thread)."""
        self._jobs.put(None)

    async def wait_stopped(self) -> None:
        """Until the thread has run every queued call and ended (after `stop()`)."""
        await asyncio.wrap_future(self._stopped)
