"""Typed pipeline events. The event stream is at once the CLI feed (`--json`), the log, the MQTT event feed and
the test oracle. Adding an event is one small frozen dataclass with a `type` tag; `EVENT_TYPES` discovers them."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

log = logging.getLogger(__name__)

PERSONAL_KINDS = ("transcripts", "arguments", "results", "replies")
"""Kinds of personal text an event field can hold: what a person said, what an action was given, what it returned
(mail bodies, MCP output), what the appliance said. Such fields leave the process (MQTT feed, journal) only where
the owner opted in; see voice_agent/privacy/view.py."""


def personal(kind: str, **kw: Any) -> Any:
    """Declare an event field that can hold personal text of `kind` (one of PERSONAL_KINDS)."""
    assert kind in PERSONAL_KINDS, kind
    return field(metadata={"personal": kind}, **kw)


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Wake(Event):
    type: ClassVar[str] = "wake"
    model: str
    score: float


@dataclass(frozen=True)
class SpeechStart(Event):
    type: ClassVar[str] = "speech_start"


@dataclass(frozen=True)
class SpeechEnd(Event):
    type: ClassVar[str] = "speech_end"
    duration_ms: int


@dataclass(frozen=True)
class Transcript(Event):
    type: ClassVar[str] = "transcript"
    text: str = personal("transcripts")
    stt_ms: int = 0
    early: bool = False


@dataclass(frozen=True)
class IntentMatched(Event):
    type: ClassVar[str] = "intent"
    name: str
    source: str  # "local" | "llm"
    understand_ms: int = 0


@dataclass(frozen=True)
class ToolCallEvent(Event):
    type: ClassVar[str] = "tool_call"
    name: str
    arguments: dict[str, Any] = personal("arguments")
    source: str = "local"


@dataclass(frozen=True)
class Risk(Event):
    type: ClassVar[str] = "risk"
    name: str
    decision: str
    score: float
    reasons: list[str] = personal("arguments")


@dataclass(frozen=True)
class ConfirmationRequested(Event):
    type: ClassVar[str] = "confirmation_requested"
    name: str
    prompt: str = personal("replies")


@dataclass(frozen=True)
class ActionExecuted(Event):
    type: ClassVar[str] = "action_executed"
    name: str
    ok: bool = True
    result: str = personal("results", default="")


@dataclass(frozen=True)
class ActionCancelled(Event):
    type: ClassVar[str] = "action_cancelled"
    name: str
    reason: str = personal("arguments")


@dataclass(frozen=True)
class Reply(Event):
    type: ClassVar[str] = "reply"
    text: str = personal("replies")


@dataclass(frozen=True)
class FirstAudio(Event):
    type: ClassVar[str] = "first_audio"


@dataclass(frozen=True)
class TtsDone(Event):
    type: ClassVar[str] = "tts_done"
    audio_ms: int


@dataclass(frozen=True)
class Announcement(Event):
    type: ClassVar[str] = "announcement"
    text: str = personal("replies")
    priority: str = "normal"


@dataclass(frozen=True)
class StateChanged(Event):
    type: ClassVar[str] = "state"
    state: str  # idle | listening | thinking | speaking | awaiting_confirmation


@dataclass(frozen=True)
class TurnEnd(Event):
    type: ClassVar[str] = "turn_end"


@dataclass(frozen=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str = personal("results")


def _all_event_types() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    stack = list(Event.__subclasses__())
    while stack:
        cls = stack.pop()
        found[cls.type] = cls
        stack.extend(cls.__subclasses__())
    return found


EVENT_TYPES: dict[str, type[Event]] = _all_event_types()


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from `to_dict()` output (used by tests and by the MQTT event feed)."""
    cls = EVENT_TYPES[data["type"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Stamped:
    """An event with the wall-clock milliseconds since the first audio sample was fed."""

    event: Event
    t_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.event.to_dict(), "t_ms": round(self.t_ms, 1)}


Listener = Callable[[Stamped], None]


@dataclass
class EventBus:
    """Fan-out of events to synchronous listeners. A failing listener is logged, never fatal."""

    listeners: list[Listener] = field(default_factory=list)
    t0: float | None = None
    history: list[Stamped] = field(default_factory=list)
    keep_history: int = 1000

    def start_clock(self) -> None:
        if self.t0 is None:
            self.t0 = time.monotonic()

    def now_ms(self) -> float:
        return 0.0 if self.t0 is None else (time.monotonic() - self.t0) * 1000.0

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def emit(self, event: Event, t_ms: float | None = None) -> Stamped:
        """Deliver an event. `t_ms` overrides the stamp for events that belong to an earlier moment (speech end
        is decided after the silence that follows it, but the person stopped talking when the silence began)."""
        stamped = Stamped(event, self.now_ms() if t_ms is None else max(0.0, t_ms))
        self.history.append(stamped)
        if len(self.history) > self.keep_history:
            del self.history[: len(self.history) - self.keep_history]
        for listener in list(self.listeners):
            try:
                listener(stamped)
            except Exception:  # a broken listener must never stop the pipeline
                log.exception("event listener failed on %s", event.type)
        return stamped
