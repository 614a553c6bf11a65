"""A bounded stop for the live appliance: systemd stops the service (TimeoutStopSec=20 in our unit, then SIGKILL) and
its watchdog restarts it the same way, so `voice-agent run` must be gone within a few seconds in every state.

Each step of the stop waits for at most its own bound and then moves on (`settle`); a deadline on a daemon thread
(`Deadline`), armed when the stop begins, ends the process if the stop as a whole overruns, whatever is stuck (a
task that swallowed its cancellation, a thread the interpreter would join at exit). It prints every thread's stack
first and exits non-zero: a forced exit is a bug to be found, not a normal stop."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Awaitable
from typing import NoReturn

log = logging.getLogger(__name__)

__all__ = ["Deadline", "settle", "end_process", "FORCED_EXIT_CODE"]

FORCED_EXIT_CODE = 70  # EX_SOFTWARE: the stop overran its deadline


async def settle(aw: Awaitable[object], timeout_s: float, what: str) -> bool:
    """Wait up to `timeout_s` for `aw` (a coroutine, task or future). True if it finished in time (its result or
    exception is dropped, an exception is logged); otherwise it is cancelled, not waited for, and False returned.

    Unlike `asyncio.wait_for` this returns on time even if the awaitable swallows its cancellation."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("%s did not finish within %g s; going on without it", what, timeout_s)
        task.cancel()
        return False
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %s", what, task.exception())
    return True


class Deadline:
    """Once `arm()`ed, ends the process `seconds` later (if it is still running then)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.name = "shutdown-deadline"
            self._timer.start()

    def _expire(self) -> None:
        try:
            log.error("the appliance did not stop within %g s; forcing the exit (thread stacks follow)", self.seconds)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
        finally:
            os._exit(FORCED_EXIT_CODE)


def end_process(rc: int) -> NoReturn:
    """End the process now, once everything that matters is closed (audit log, MQTT, devices, MCP servers).

    The interpreter's own teardown frees the loaded models through their native libraries' destructors: measured
    at 1-2.5 s on an idle 2-core machine and up to 10 s under load, after the point where `Deadline` can still act
    (daemon threads stop when finalization begins). It has nothing left to save, so it is skipped."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(rc)
