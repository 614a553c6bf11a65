"""Concrete spoken words for a proposed action, and recognising a clear "yes" in the reply."""

from __future__ import annotations

import re

from .action import ProposedAction
from .features import extract
from .hazards import is_read_only
from .money import estimate_spend
from .recipients import first_recipient
from .text import (
    DELETE,
    MONEY,
    OFF,
    ON,
    PERMANENT,
    SAFE_SECURITY,
    SEND,
    TRASH,
    UNSAFE_SECURITY,
    as_text,
    flatten,
    leaf_key,
    tokens,
    words,
)

_ITEM_KEYS = ("item", "product", "title", "plan", "items", "restaurant", "symbol", "charity", "service", "name")
_TARGET_KEYS = ("device", "room", "light", "window", "plug", "switch", "entity", "entity_id", "lock", "lockid", "cover", "door", "camera", "zone", "name", "topic",
                "target", "path", "file", "files", "items", "item", "folder", "album", "repo", "bucket", "calendar", "page", "event_id",
                "message_id", "container", "snapshot")
_PAY = words("pay payment transfer wire venmo paypal zelle remit tip payout send wallet money gift donate")
_COMMAND_KEYS = ("command", "cmd", "sql", "query", "statement", "script", "args")


def _first(arguments: dict, keys: tuple[str, ...]) -> str:
    values: dict[str, list] = {}
    for p, v in flatten(arguments):
        if v not in (None, "", []) and not isinstance(v, (dict, list)):
            values.setdefault(leaf_key(p), []).append(v)
    for key in keys:
        if key in values:
            value = ", ".join(as_text(v) for v in values[key][:3])
            if key == "entity_id":
                value = value.rsplit(".", 1)[-1]
            if key == "topic":
                parts = [p for p in value.split("/") if p not in ("set", "get", "zigbee2mqtt", "home")]
                value = parts[-1] if parts else value
            if key in ("entity_id", "topic", "device", "lockid", "cover", "camera", "zone"):
                value = value.replace("_", " ")
            return _short(value)
    return ""


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _article(item: str) -> str:
    if not item[:1].isupper() or re.match(r"^(a|an|the|some|my)\b", item, re.IGNORECASE):
        return item
    return ("an " if item[:1].lower() in "aeiou" else "a ") + item


def _the(target: str) -> str:
    return target if re.match(r"^(the|my|all|every)\b", target, re.IGNORECASE) else "the " + target


def describe_action(action: ProposedAction) -> str:
    """E.g. "buy a Tesla Model 3 for 45,000 dollars", "unlock the front door", "send an email to bob@x.com about rent"."""
    f = extract(action)
    args = action.arguments
    target = _first(args, _TARGET_KEYS)
    recipient = first_recipient(args)
    for source in (f.action, f.name):
        direction = source & (UNSAFE_SECURITY | SAFE_SECURITY)
        if direction:
            word = min(direction)
            verb = {"unlocked": "unlock", "locked": "lock", "disarmed": "disarm", "armed": "arm", "opened": "open",
                    "closed": "close", "opening": "open", "closing": "close", "release": "open", "buzz": "open",
                    "unlatched": "unlock", "unlatch": "unlock"}.get(word, word)
            if verb in ("arm", "disarm"):
                return f"{verb} the alarm" if not target else f"{verb} {_the(target)}"
            named = " ".join(t for t in tokens(action.tool) if t not in direction and t not in ("control", "set"))
            return f"{verb} {_the(target or named or 'device')}"
    command = _first(args, _COMMAND_KEYS) if not f.verbs & MONEY else ""
    if command:
        host = _first(args, ("host", "server", "database", "db"))
        return f"run the command {command}" + (f" on {host}" if host else "")
    if f.verbs & MONEY and not f.verbs & words("cancel refund"):
        spend = estimate_spend(args)
        amount = spend.text or "an amount I don't know"
        if f.verbs & _PAY or recipient:
            who = recipient or _first(args, ("charity", "payee")) or "someone"
            verb = "donate" if "donate" in f.verbs else "send"
            return f"{verb} {amount} to {who}"
        item = _first(args, _ITEM_KEYS) or " ".join(sorted(f.name - MONEY)) or "it"
        verbs = sorted(f.verbs & words("buy book rent subscribe order checkout upgrade trade"))
        verb_word = {"order": "buy", "checkout": "check out"}.get(verbs[0], verbs[0]) if verbs else "buy"
        qty = f", {spend.quantity:g} of them," if spend.quantity > 1 else ""
        return f"{verb_word} {_article(item)}{qty} for {amount}"
    if f.verbs & (DELETE | TRASH):
        what = target or " ".join(sorted(f.name - DELETE - TRASH)) or "it"
        if f.bulk:
            what = f"{what} ({f.bulk[0]})"
        marks = (f.action | f.name) & (TRASH | PERMANENT)
        if marks & PERMANENT:
            return f"permanently delete {what}"
        if marks & TRASH:
            return f"move {what} to the trash"
        return f"delete {what}"
    if f.verbs & words("share grant invite"):
        return f"share {target or 'it'} with {recipient or 'other people'}"
    if f.verbs & words("forward") and recipient:
        return f"forward {target or 'the message'} to {recipient}"
    if f.verbs & words("reply"):
        return f"reply to the sender: {_first(args, ('body', 'text', 'message')) or 'an empty reply'}"
    if f.verbs & SEND and (recipient or f.verbs & words("email mail sms message whatsapp slack")):
        subject = _first(args, ("subject", "text", "body", "message", "note"))
        kind = "an email" if f.verbs & words("email mail") else "a message"
        about = f" about {subject}" if subject else ""
        return f"send {kind} to {recipient or 'someone'}{about}"
    if is_read_only(f, action):
        return "look up " + (" ".join(tokens(action.tool)) if not target else f"{target}")
    state = f.action & (ON | OFF)
    if state:
        target = target or " ".join(sorted(f.name - words("set control turn"))) or "the device"
        return f"turn {'on' if state & ON else 'off'} {_the(target)}"
    details = ", ".join(f"{leaf_key(p).replace('_', ' ')} {_short(as_text(v), 30)}" for p, v in f.pairs[:4]
                        if not isinstance(v, (list, dict)))
    name = " ".join(tokens(action.tool))
    return f"run {name}" + (f" with {details}" if details else "")


_YES = words("yes yeah yep yup yea aye sure confirm confirmed confirmation affirmative correct absolutely definitely "
             "certainly proceed")
_FILLER = words("please do it go ahead that's thats right i am i'm im yes go for ok okay please thanks thank you "
                "and sure is")
_NO = words("no nope nah cancel stop don't dont not never negative abort wait hold deny denied")
_PHRASES_YES = ("do it", "go ahead", "go for it")


def affirmative(text: str) -> bool | None:
    """True for a clear yes ("yes", "yes, confirm", "yeah do it"); False for no / cancel / stop; None otherwise
    (unclear, or a different request). Conservative: anything beyond a plain yes is not a yes."""
    low = re.sub(r"[^\w\s']", " ", text.lower())
    said = low.split()
    if not said:
        return None
    if set(said) & _NO:
        return False
    phrase = any(p in " ".join(said) for p in _PHRASES_YES)
    if not (set(said) & _YES or phrase):
        return None
    return True if set(said) <= (_YES | _FILLER) else None
