"""Announcement payloads received over MQTT: parse, validate and clean them.

A payload is either plain UTF-8 text or a JSON object `{"text": str, "priority": "normal"|"urgent", "chime": bool}`.
Whatever arrives is untrusted: the text is cleaned of markup and control/format characters before anything speaks
it, and every bad payload raises `MqttError` with a specific code. Nothing here can trigger an action: the result
is only text to say."""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass

from .errors import MqttError

PRIORITIES = ("normal", "urgent")
MAX_JSON_DEPTH = 4
"""Deeper JSON is refused before it is parsed (an announcement is a flat object)."""

_TERMINAL_ESCAPE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
_TAG = re.compile(r"<[^<>]*>")
_MARKUP_CHARS = str.maketrans("", "", "<>*`")
_SPACE_LIKE = {"Zs", "Zl", "Zp"}
_DROPPED = {"Cc", "Cf", "Co", "Cn", "Cs"}


@dataclass(frozen=True)
class AnnouncementRequest:
    text: str
    """What to say: cleaned, non-empty, single-spaced."""
    priority: str = "normal"
    """normal (queued behind a conversation) or urgent (spoken next)."""
    chime: bool = False
    """Play a chime before speaking."""


def _invalid(why: str) -> MqttError:
    return MqttError(f"announcement dropped: {why}", code="mqtt-payload-invalid")


def clean_text(text: str) -> str:
    """Speakable text: terminal escape sequences removed, entities decoded, tags and markup characters removed, control and format characters dropped
    (line breaks and tabs become spaces), whitespace collapsed. May return an empty string."""
    text = unicodedata.normalize("NFKC", html.unescape(_TERMINAL_ESCAPE.sub("", text)))
    text = _TAG.sub(" ", _TERMINAL_ESCAPE.sub("", text)).translate(_MARKUP_CHARS)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\t\n\r\v\f\x85" or cat in _SPACE_LIKE:
            out.append(" ")
        elif cat not in _DROPPED:
            out.append(ch)
    return " ".join("".join(out).split())


def _json_depth(text: str) -> int:
    """Deepest bracket nesting outside JSON strings, in one linear pass (no regex backtracking on hostile input)."""
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def _from_json(text: str) -> tuple[str, str, bool]:
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise _invalid(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"not a valid JSON object ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise _invalid("JSON payload must be an object")
    raw_text = obj.get("text")
    if not isinstance(raw_text, str):
        raise _invalid('JSON payload needs a string "text"')
    priority = obj.get("priority", "normal")
    if not isinstance(priority, str) or priority.strip().lower() not in PRIORITIES:
        raise _invalid(f'"priority" must be one of {", ".join(PRIORITIES)}')
    chime = obj.get("chime", False)
    if not isinstance(chime, bool):
        raise _invalid('"chime" must be true or false')
    return raw_text, priority.strip().lower(), chime


def parse_announcement(payload: bytes | bytearray, max_bytes: int = 4096) -> AnnouncementRequest:
    """Parse one MQTT announcement payload. Raises MqttError (mqtt-payload-too-large, mqtt-payload-not-utf8,
    mqtt-payload-invalid); never anything else for any bytes."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise _invalid(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise MqttError(f"announcement dropped: {len(payload)} bytes is over the {max_bytes}-byte limit",
                        code="mqtt-payload-too-large")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MqttError(f"announcement dropped: not UTF-8 (bad byte at offset {exc.start})",
                        code="mqtt-payload-not-utf8") from None
    body = text.lstrip("\ufeff \t\r\n")
    priority, chime = "normal", False
    if body.startswith("{"):
        text, priority, chime = _from_json(body)
    cleaned = clean_text(text)
    if not any(ch.isalnum() for ch in cleaned):
        raise _invalid("no speakable text after removing markup and control characters")
    return AnnouncementRequest(text=cleaned, priority=priority, chime=chime)
