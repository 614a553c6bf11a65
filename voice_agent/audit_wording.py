"""How the audit log speaks and prints: "what did you do today?" answers and the `voice-agent log` table."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import AuditEntry


# ---- spoken wording -----------------------------------------------------------------------------------------
_IRREGULAR_PAST = {"buy": "bought", "send": "sent", "pay": "paid", "make": "made", "set": "set", "put": "put",
                   "read": "read", "get": "got", "give": "gave", "run": "ran", "find": "found", "tell": "told",
                   "sell": "sold", "take": "took", "write": "wrote", "shut": "shut", "let": "let", "say": "said",
                   "do": "did", "go": "went", "begin": "began", "keep": "kept", "cut": "cut", "forward": "forwarded"}
_DOUBLE = {"stop", "dim", "plan", "drop", "ship", "shop", "transfer", "cancel", "unplug", "plug", "log", "tag",
           "skip", "trim", "pin", "grab", "swap", "wrap", "set", "put", "run", "get", "shut", "cut", "let",
           "begin", "admit", "submit", "commit", "control", "refer", "prefer", "mop", "top", "chat", "zip"}
_VERBS = {"add", "arm", "book", "buy", "call", "cancel", "check", "close", "create", "delete", "dim", "disarm",
          "empty", "find", "forward", "give", "grant", "list", "lock", "lower", "move", "open", "order", "pause",
          "pay", "play", "post", "purchase", "raise", "read", "remove", "rename", "reply", "revoke", "schedule",
          "search", "sell", "send", "set", "share", "start", "stop", "transfer", "trash", "turn", "unlock", "update",
          "upload", "wipe", "wire", "write"}
_OBJECT_KEYS = ("item", "name", "device", "entity", "title", "subject", "path", "pattern", "file", "query",
                "product", "event")
_AFTER_OBJECT = {"forever", "permanently"}
_RECIPIENT_KEYS = ("to", "who", "recipient", "recipients", "payee")


def _split_verb(phrase: str) -> tuple[str, str]:
    verb, _, rest = phrase.strip().partition(" ")
    return verb, (" " + rest if rest else "")


def _past(phrase: str) -> str:
    verb, rest = _split_verb(phrase)
    v = verb.lower()
    if v in _IRREGULAR_PAST:
        done = _IRREGULAR_PAST[v]
    elif v in _DOUBLE:
        done = v + v[-1] + "ed"
    elif v.endswith("e"):
        done = v + "d"
    elif v.endswith("y") and len(v) > 1 and v[-2] not in "aeiou":
        done = v[:-1] + "ied"
    else:
        done = v + "ed"
    return done + rest


def _gerund(phrase: str) -> str:
    verb, rest = _split_verb(phrase)
    v = verb.lower()
    if v in _DOUBLE:
        doing = v + v[-1] + "ing"
    elif v.endswith("ie"):
        doing = v[:-2] + "ying"
    elif v.endswith("e") and not v.endswith(("ee", "ye", "oe")) and len(v) > 2:
        doing = v[:-1] + "ing"
    else:
        doing = v + "ing"
    return doing + rest


def action_phrase(tool: str, arguments: dict[str, Any]) -> str:
    """An imperative phrase for an action when the caller gave none: ("bank_transfer", {to: Bob, amount: 5})
    -> "transfer 5 to Bob"."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", tool)]
    words = [w for w in words if w not in ("hass", "tool", "mcp")] or ["use", tool]
    at = next((i for i, w in enumerate(words) if w in _VERBS), None)
    if at is None:
        verb, rest, domain = "check", words, []
    else:
        verb, rest, domain = words[at], words[at + 1:], words[:at]
    key = next((k for k in _OBJECT_KEYS if arguments.get(k) not in (None, "")), None)
    obj = "" if key is None else str(arguments[key])
    if key == "subject":
        obj = f"a message about {obj}"
    amount = arguments.get("amount")
    if not obj and amount is not None:
        obj = f"{amount} {arguments.get('currency', '')}".strip()
    quantity = arguments.get("quantity")
    if obj and isinstance(quantity, int) and quantity > 1:
        obj = f"{quantity} {obj}"
    parts = [verb, *(w for w in rest if w not in _AFTER_OBJECT)]
    parts.append(obj if obj else " ".join(domain))
    parts.extend(w for w in rest if w in _AFTER_OBJECT)
    recipient = next((arguments[k] for k in _RECIPIENT_KEYS if arguments.get(k)), None)
    if recipient is not None:
        parts.append("to " + (", ".join(map(str, recipient)) if isinstance(recipient, list) else str(recipient)))
    return " ".join(p for p in parts if p)


def status_clause(status: str, phrase: str) -> str:
    """What happened to one action, as a clause after "I": "turned off the kitchen light"."""
    if status == "executed":
        return _past(phrase)
    if status == "cancelled":
        return "cancelled " + _gerund(phrase)
    if status == "denied":
        return "refused to " + phrase
    if status == "failed":
        return f"tried to {phrase}, but it failed"
    if status == "unknown":
        return f"was interrupted while trying to {phrase}, so I can't tell whether it happened"
    return f"am still waiting to {phrase}"


def join_clauses(clauses: list[str], limit: int = 8) -> str:
    if len(clauses) > limit:
        extra = len(clauses) - (limit - 1)
        clauses = clauses[: limit - 1] + [f"did {extra} other things"]
    if len(clauses) == 1:
        return clauses[0]
    return ", ".join(clauses[:-1]) + ", and " + clauses[-1]


def format_log(entries: list[AuditEntry]) -> str:
    """A plain-text table for `voice-agent log`, one action per line (plus its reasons and outcome)."""
    if not entries:
        return "No actions recorded."
    lines = [f"{'ID':>5}  {'TIME':19}  {'STATUS':9}  {'DECISION':8}  {'SCORE':>5}  ACTION"]
    for e in entries:
        when = datetime.fromtimestamp(e.ts).strftime("%Y-%m-%d %H:%M:%S")
        args = json.dumps(e.arguments, ensure_ascii=False, sort_keys=True)
        action = f"{e.tool} {args if len(args) <= 80 else args[:79] + '…'}"
        lines.append(f"{e.id:>5}  {when:19}  {e.status:9}  {e.decision:8}  {e.score:5.2f}  {action}")
        details = []
        if e.reasons:
            details.append("why: " + "; ".join(e.reasons))
        if e.user_request:
            details.append(f"asked: {e.user_request!r}")
        if e.confirmation:
            details.append(f"answer: {e.confirmation!r}")
        if e.outcome:
            details.append(f"outcome: {e.outcome}")
        lines.extend(f"{'':>7}{d}" for d in details)
    return "\n".join(lines)
