"""What an event looks like once it leaves the appliance process (the MQTT event feed, the printed events that
land in the journal): event types, states, labels and timings always; personal text only where the owner opted
in; secrets never.

Every event field is one of:
- a number or a flag (timings, scores, `ok`, `early`): always shown;
- a label from a closed vocabulary or the configuration (`LABELS`: tool and intent names, the wake-word model,
  decisions, states, priorities, error codes): always shown, secrets masked;
- personal text, declared in `voice_agent/events.py` with `personal(kind)`: shown only when `kind` is in the view's
  `show` set, and then with secrets masked;
- anything else (a new text field nobody classified): left out. Default deny: a new event cannot leak by accident."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..events import PERSONAL_KINDS, Event, Stamped
from .redact import Redactor

LABELS = frozenset({"model", "name", "source", "decision", "state", "priority", "code"})
"""Text fields that hold labels (never words a person said or read): shown in every view."""


@dataclass(frozen=True)
class EventView:
    show: frozenset[str] = frozenset()
    """Kinds of personal text to include (a subset of PERSONAL_KINDS)."""
    redactor: Redactor = Redactor()

    def __post_init__(self) -> None:
        unknown = set(self.show) - set(PERSONAL_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds of personal text: {sorted(unknown)}")

    @classmethod
    def everything(cls, redactor: Redactor = Redactor()) -> "EventView":
        return cls(frozenset(PERSONAL_KINDS), redactor)

    def event(self, event: Event) -> dict[str, Any]:
        out: dict[str, Any] = {"type": event.type}
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            kind = f.metadata.get("personal")
            if kind is not None:
                if kind in self.show:
                    out[f.name] = self._personal(f.name, value)
            elif value is None or isinstance(value, (bool, int, float)):
                out[f.name] = value
            elif f.name in LABELS and isinstance(value, str):
                out[f.name] = self.redactor.text(value)
        return out

    def stamped(self, s: Stamped) -> dict[str, Any]:
        return {**self.event(s.event), "t_ms": round(s.t_ms, 1)}

    def _personal(self, name: str, value: Any) -> Any:
        if isinstance(value, (dict, list, tuple)):
            return self.redactor.mapping(value)
        if isinstance(value, str):
            return self.redactor.text(value)
        return value

    @classmethod
    def for_mqtt(cls, mqtt_cfg: Any, redactor: Redactor) -> "EventView":
        """The event feed's view: the kinds opted in with `[mqtt] feed_<kind> = true`."""
        return cls(frozenset(k for k in PERSONAL_KINDS if getattr(mqtt_cfg, f"feed_{k}", False)), redactor)
