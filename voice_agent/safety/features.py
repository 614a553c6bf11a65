"""Words and facts about a proposed action, computed once, shared by every hazard check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .action import ProposedAction
from .text import ACTION_KEYS, KNOWN_VERBS, OFF, ON, as_text, flatten, leaf_key, tokens

_PATH_KEYS = {"path", "src", "source", "folder", "dir", "directory", "file", "files", "album", "prefix", "glob"}
_BULK_VALUES = {"*", "all", "everything", "every", "any", "all_calendars", "all_devices", "/", "~", "~/"}
_BOOL_DIRECTION = {("locked", True): "lock", ("locked", False): "unlock", ("lock", True): "lock",
                   ("lock", False): "unlock", ("armed", True): "arm", ("armed", False): "disarm",
                   ("open", True): "open", ("open", False): "close", ("opened", True): "open",
                   ("on", False): "off", ("power", False): "off", ("power", True): "on"}


@dataclass(frozen=True)
class Facts:
    name: frozenset[str]
    """Words of the tool name."""
    desc: frozenset[str]
    """Words of the tool description."""
    action: frozenset[str]
    """Words of action-like argument values ("unlock", "delete_permanently") and of keys set to true."""
    negated: frozenset[str]
    """Words of keys set to false or "off" ("recording": false)."""
    keys: frozenset[str]
    """Words of argument names."""
    values: frozenset[str]
    """Words of every string argument value."""
    verbs: frozenset[str]
    """Where the verb comes from: the action values and the tool name, else the description."""
    bulk: tuple[str, ...]
    """Why the scope is large ("all", a wildcard, recursive, a whole folder)."""
    off_keys: frozenset[str]
    """Words of keys whose value turns something off."""
    pairs: tuple[tuple[str, Any], ...]
    """Flattened (key path, value) pairs."""

    def any(self, vocabulary: frozenset[str], *where: str) -> bool:
        return any(vocabulary & getattr(self, w) for w in where)

    def has_verb(self, vocabulary: frozenset[str]) -> bool:
        return bool(vocabulary & self.verbs)


def _looks_like_dir(value: str) -> bool:
    last = value.rstrip("/").rsplit("/", 1)[-1]
    return value in ("/", "~") or value.endswith("/") or ("/" in value and "." not in last and bool(last))


def extract(action: ProposedAction) -> Facts:
    name = frozenset(tokens(action.tool))
    desc = frozenset(tokens(action.description))
    act: set[str] = set()
    negated: set[str] = set()
    keys: set[str] = set()
    values: set[str] = set()
    off_keys: set[str] = set()
    bulk: list[str] = []
    pairs = tuple(flatten(action.arguments))
    for path, value in pairs:
        key = leaf_key(path)
        key_words = tokens(key)
        keys.update(key_words)
        if isinstance(value, bool):
            direction = _BOOL_DIRECTION.get((key, value))
            if direction:
                act.add(direction)
            elif value:
                act.update(key_words)
            else:
                negated.update(key_words)
                off_keys.update(key_words)
            if value and key in ("all", "recursive", "all_calendars", "all_devices", "everything"):
                bulk.append(key.replace("_", " "))
            continue
        text = as_text(value)
        if not isinstance(value, str):
            continue
        words = tokens(text)
        values.update(words)
        if key in ACTION_KEYS or key.endswith("_action") or key == "payload":
            act.update(words)
        if set(words) & OFF and not set(words) & ON and key not in ACTION_KEYS:
            off_keys.update(key_words)
        low = text.strip().lower()
        if low in _BULK_VALUES or key in ("range", "scope") and low == "all":
            bulk.append(f"{key} = {text}")
        elif key in _PATH_KEYS | {"query", "keys", "pattern", "match", "items"} and ("*" in text or "?" in text):
            bulk.append(f"wildcard {text}")
        elif key in _PATH_KEYS and _looks_like_dir(text):
            bulk.append(f"the whole folder {text}")
    verbs = frozenset((act | name) & KNOWN_VERBS) or desc & KNOWN_VERBS
    return Facts(name, desc, frozenset(act), frozenset(negated), frozenset(keys), frozenset(values),
                 frozenset(verbs), tuple(bulk), frozenset(off_keys), pairs)


_NUMBER_KEY = re.compile(r"temp|setpoint|target|heat|cool")


def numeric_settings(facts: Facts) -> list[tuple[str, float]]:
    """(key, value) for temperature-like numeric arguments."""
    out = []
    for path, value in facts.pairs:
        key = leaf_key(path)
        if _NUMBER_KEY.search(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((key, float(value)))
    return out


def unit_of(facts: Facts) -> str:
    for path, value in facts.pairs:
        if leaf_key(path) in ("unit", "units", "scale") and isinstance(value, str):
            return value.strip().upper()[:1]
    return ""
