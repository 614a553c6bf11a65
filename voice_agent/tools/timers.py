"""Kitchen timers: asyncio timers that speak when they ring."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import RiskMetadata, ToolResult, ToolSpec

_SAFE = RiskMetadata(reversible=True, costs_money=False, security_device=False, external_recipient=False)


def spoken_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{v} {unit}{'s' if v != 1 else ''}" for v, unit in ((h, "hour"), (m, "minute"), (sec, "second")) if v]
    return " and ".join(parts) if parts else "0 seconds"


@dataclass
class TimerService:
    on_ring: Callable[[str], None]
    timers: dict[int, tuple[float, str, asyncio.TimerHandle]] = field(default_factory=dict)
    _next: int = 1

    def start(self, seconds: float, name: str = "") -> int:
        loop = asyncio.get_running_loop()
        tid, self._next = self._next, self._next + 1
        label = f"{name} timer" if name else f"{spoken_duration(seconds)} timer"
        handle = loop.call_later(seconds, self._ring, tid)
        self.timers[tid] = (time.monotonic() + seconds, label, handle)
        return tid

    def _ring(self, tid: int) -> None:
        _, label, _ = self.timers.pop(tid, (0, "timer", None))
        self.on_ring(f"Your {label} is done.")

    def cancel_all(self) -> int:
        for _, _, h in self.timers.values():
            h.cancel()
        n = len(self.timers)
        self.timers.clear()
        return n

    def status(self) -> str:
        if not self.timers:
            return "There are no timers running."
        now = time.monotonic()
        return " ".join(f"Your {label} has {spoken_duration(end - now)} left." for end, label, _ in self.timers.values())


@dataclass
class StartTimer:
    service: TimerService
    spec: ToolSpec = field(default_factory=lambda: ToolSpec("start_timer", "Start a timer that speaks when it ends.", {
        "type": "object", "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                                         "name": {"type": "string", "maxLength": 40}},
        "required": ["seconds"], "additionalProperties": False}, _SAFE))

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        self.service.start(arguments["seconds"], arguments.get("name", ""))
        return ToolResult("ok", f"Timer set for {spoken_duration(arguments['seconds'])}.")


@dataclass
class CancelTimer:
    service: TimerService
    spec: ToolSpec = field(default_factory=lambda: ToolSpec("cancel_timer", "Cancel all running timers.", {
        "type": "object", "properties": {}, "additionalProperties": False}, _SAFE))

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        n = self.service.cancel_all()
        return ToolResult("ok", "Timer cancelled." if n == 1 else f"{n} timers cancelled." if n else "There was no timer running.")


@dataclass
class TimerStatus:
    service: TimerService
    spec: ToolSpec = field(default_factory=lambda: ToolSpec("timer_status", "Say how long the running timers have left.", {
        "type": "object", "properties": {}, "additionalProperties": False}, RiskMetadata(read_only=True)))

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult("ok", self.service.status())
