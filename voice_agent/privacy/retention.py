"""Retention while the appliance runs: personal text older than `[appliance] transcript_retention_days` is erased
from the audit log at start and then every `interval_s` (hourly), not only when the service restarts.

The clock is the audit log's own (injected in tests, so a test can move a month ahead without sleeping)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..errors import AuditError
from .erasure import Erased, compact, erase

if TYPE_CHECKING:
    from ..audit import AuditLog

log = logging.getLogger(__name__)

DAY_S = 86400.0


class RetentionKeeper:
    def __init__(self, audit: "AuditLog", days: int, *, interval_s: float = 3600.0) -> None:
        if days < 0:
            raise ValueError("retention days must be >= 0")
        self.audit, self.days, self.interval_s = audit, days, interval_s
        self.erased = 0
        """Rows erased since start."""
        self._unfinished = False  # the last compaction could not empty the write-ahead log
        self._task: asyncio.Task | None = None

    def enforce(self) -> Erased:
        """Erase what is older than the retention period now (everything personal when it is 0 days)."""
        before = None if self.days == 0 else self.audit.clock() - self.days * DAY_S
        result = erase(self.audit, before)
        if not result.rows and self._unfinished:  # retry emptying the write-ahead log
            result = Erased(0, compact(self.audit))
        if result.rows or self._unfinished:
            self._unfinished = not result.compacted
        self.erased += result.rows
        if result.rows:
            log.info("audit log: erased the personal text of %d action(s) older than %d day(s)", result.rows, self.days)
        return result

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.enforce)
            except AuditError as exc:  # a full disk must not stop the appliance; the next run retries
                log.warning("audit log retention failed: %s", exc)
