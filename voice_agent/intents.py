"""The local fast path: Home Assistant's sentence templates (home-assistant-intents) matched by hassil against the
device and room names from the config. No model, a few milliseconds per sentence."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from hassil import Intents, TextSlotList, recognize
from hassil.errors import MissingListError
from home_assistant_intents import get_intents

from .config import DeviceConfig
from .tools.base import ToolCall

_KIND_DOMAIN = {"light": "light", "switch": "switch", "lock": "lock", "cover": "cover", "thermostat": "climate"}

# Our own sentences, beside Home Assistant's.
_EXTRA = {
    "language": "en",
    "intents": {
        "AgentActivityToday": {"data": [{"sentences": [
            "what did you do today", "what have you done today", "what did you do", "what actions did you take [today]"]}]},
    },
}


@dataclass(frozen=True)
class LocalResult:
    """What the fast path understood: tool calls to run and/or a direct answer."""

    intent: str
    calls: tuple[ToolCall, ...] = ()
    answer: str = ""
    slots: dict[str, Any] = field(default_factory=dict)


def strip_wake_phrase(text: str, wake_model: str = "hey_jarvis") -> str:
    """Remove the wake phrase from the start of a transcript. The utterance deliberately includes audio from just
    before the wake word fired (so the first words of the command are kept), so Whisper often hears some or all of
    it: "Hey Jarvis, turn off…", "Jarvis, turn off…", "Hey, Jervis. Turn off…", "vis, turn off…"."""
    words = text.split()
    target = wake_model.replace("_", " ").lower()
    tail = target.split()[-1]
    best, best_k = 0.0, 0
    for k in (1, 2, 3):
        if len(words) < k:
            break
        head = " ".join(words[:k])
        plain = re.sub(r"[^a-z ]", "", head.lower()).strip()
        if not plain:
            continue
        score = max(difflib.SequenceMatcher(None, plain, target).ratio(),
                    difflib.SequenceMatcher(None, plain.split()[-1], tail).ratio())
        if not re.search(r"[,.!?:;]$", head):
            score -= 0.25  # Whisper nearly always ends a wake phrase with punctuation
        if score > best:
            best, best_k = score, k
    return " ".join(words[best_k:]).strip() if best >= 0.5 else text.strip()


class LocalIntents:
    def __init__(self, devices: list[DeviceConfig], language: str = "en") -> None:
        data = get_intents(language)
        if data is None:
            raise ValueError(f"no Home Assistant intents for language {language!r}")
        self._intents = Intents.from_dict(data)
        self._extra = Intents.from_dict(_EXTRA)
        self.devices = devices
        self._by_id = {self.entity_id(d): d for d in devices}
        names = []
        for d in devices:
            ctx = {"domain": _KIND_DOMAIN[d.kind]}
            if d.kind == "cover":
                ctx["device_class"] = "garage" if "garage" in d.name.lower() else "door"
            for n in (d.name, *d.aliases):
                names.append((n, self.entity_id(d), ctx))
        areas = sorted({d.room for d in devices if d.room})
        self._slots: dict[str, Any] = {
            "name": TextSlotList.from_tuples(names, allow_template=False),
            "area": TextSlotList.from_strings(areas, allow_template=False),
            "floor": TextSlotList.from_strings([]),
        }

    @staticmethod
    def entity_id(d: DeviceConfig) -> str:
        return f"{_KIND_DOMAIN[d.kind]}.{re.sub(r'[^a-z0-9]+', '_', d.name.lower()).strip('_')}"

    def stt_prompt(self) -> str:
        """A Whisper prompt that biases recognition toward this home: example commands with its own device names
        and the list of devices and rooms; directional examples come in pairs (an "unlock" example alone once turned
        "unlock" into "lock"). The two general examples at the end keep requests for the LLM from being pulled
        toward device names. (Figures once quoted here were not reproducible by a script in the repository and
        were removed.)"""
        first = {}
        for d in self.devices:
            first.setdefault(d.kind, d.name)
        examples = [f"Turn on the {first.get('light', first.get('switch', 'kitchen light'))}."]
        if "thermostat" in first:
            examples.append(f"Set the {first['thermostat']} to 20 degrees.")
        if "lock" in first:  # both directions, so neither is favoured
            examples.append(f"Unlock the {first['lock']}. Lock the {first['lock']}.")
        if "cover" in first:
            examples.append(f"Open the {first['cover']}. Close the {first['cover']}.")
        examples += ["Set a timer for 10 minutes.", "What time is it?", "Buy more coffee.", "Yes, confirm."]
        return " ".join(examples) + " Devices: " + ", ".join(self.vocabulary()) + "."

    def mentions_home(self, text: str) -> bool:
        """Does the text use a word of the device or room names (e.g. "light", "garage")?"""
        stop = {"the", "a", "an", "of", "room"}
        vocab = {w for name in self.vocabulary() for w in name.lower().split()} - stop
        return bool(vocab & set(re.findall(r"[a-z]+", text.lower())))

    def vocabulary(self) -> list[str]:
        return [n for d in self.devices for n in (d.name, *d.aliases)] + sorted({d.room for d in self.devices if d.room})

    def _recognize(self, text: str, intents: Intents) -> Any:
        for _ in range(8):  # templates may reference lists we do not use: add them empty, once
            try:
                return recognize(text, intents, slot_lists=self._slots, allow_unmatched_entities=False)
            except MissingListError as exc:
                self._slots[str(exc).split("{")[-1].rstrip("}")] = TextSlotList.from_strings([])
        return None

    def understand(self, text: str, now: dt.datetime | None = None) -> LocalResult | None:
        text = text.strip()
        if not text:
            return None
        result = self._recognize(text, self._extra) or self._recognize(text, self._intents)
        if result is None:
            return None
        slots = {k: v.value for k, v in result.entities.items()}
        return self._to_result(result.intent.name, slots, now or dt.datetime.now())

    def _targets(self, slots: dict[str, Any]) -> list[DeviceConfig]:
        if "name" in slots and slots["name"] in self._by_id:
            return [self._by_id[slots["name"]]]
        domain, area = slots.get("domain"), slots.get("area")
        found = [d for d in self.devices
                 if (domain is None or _KIND_DOMAIN[d.kind] == domain) and (area is None or d.room == area)]
        return found if (domain or area) else []

    def _to_result(self, intent: str, slots: dict[str, Any], now: dt.datetime) -> LocalResult | None:
        if intent == "HassGetCurrentTime":
            return LocalResult(intent, answer=f"It's {now.strftime('%-I:%M %p')}.", slots=slots)
        if intent == "HassGetCurrentDate":
            return LocalResult(intent, answer=f"Today is {now.strftime('%A, %B %-d, %Y')}.", slots=slots)
        if intent == "HassNevermind":
            return LocalResult(intent, answer="Okay.", slots=slots)
        if intent == "AgentActivityToday":
            return LocalResult(intent, slots=slots)
        if intent == "HassStartTimer":
            secs = int(slots.get("hours", 0) * 3600 + slots.get("minutes", 0) * 60 + slots.get("seconds", 0))
            if secs <= 0:
                return None
            args = {"seconds": secs, **({"name": str(slots["name"])} if isinstance(slots.get("name"), str) and "." not in slots["name"] else {})}
            return LocalResult(intent, calls=(ToolCall("start_timer", args),), slots=slots)
        if intent in ("HassCancelTimer", "HassCancelAllTimers"):
            return LocalResult(intent, calls=(ToolCall("cancel_timer", {}),), slots=slots)
        if intent == "HassTimerStatus":
            return LocalResult(intent, calls=(ToolCall("timer_status", {}),), slots=slots)
        targets = self._targets(slots)
        if not targets:
            return None
        calls = [c for d in targets if (c := self._device_call(intent, d, slots)) is not None]
        return LocalResult(intent, calls=tuple(calls), slots=slots) if calls else None

    @staticmethod
    def _device_call(intent: str, d: DeviceConfig, slots: dict[str, Any]) -> ToolCall | None:
        on = intent == "HassTurnOn"
        if intent in ("HassTurnOn", "HassTurnOff"):
            if d.kind in ("light", "switch"):
                return ToolCall(f"set_{d.kind}", {"device": d.name, "on": on})
            if d.kind == "lock":  # Home Assistant: "lock" is turn on, "unlock" is turn off
                return ToolCall("set_lock", {"device": d.name, "locked": on})
            if d.kind == "cover":  # "open" is turn on, "close" is turn off
                return ToolCall("set_cover", {"device": d.name, "open": on})
            return None
        if intent == "HassLightSet" and d.kind == "light" and "brightness" in slots:
            return ToolCall("set_light", {"device": d.name, "on": True, "brightness": int(slots["brightness"])})
        if intent == "HassClimateSetTemperature" and d.kind == "thermostat" and "temperature" in slots:
            return ToolCall("set_thermostat", {"device": d.name, "temperature": float(slots["temperature"])})
        return None
