"""Hazard checks. Each looks at one kind of harm and returns findings with a severity (0..1) and plain reasons."""

from __future__ import annotations

from dataclasses import dataclass

from .action import ProposedAction
from .commands import inspect_commands
from .features import Facts, numeric_settings, unit_of
from .money import estimate_spend
from .recipients import Audience, private_content
from .text import (
    ACCESS_OBJECTS,
    CANCEL,
    CHANGE,
    CREDENTIALS,
    CRITICAL_APPLIANCES,
    DATA,
    DELETE,
    GRANT,
    LOW_VALUE,
    LOW_VALUE_BULK,
    MONEY,
    NON_SECURITY_COVERS,
    OFF,
    OVERWRITE,
    PERMANENT,
    PRIVATE_DATA,
    PROTECTIVE,
    READ,
    REVOKE,
    SAFE_SECURITY,
    SAFE_VERBS,
    SECURITY_OBJECTS,
    SEND,
    TRASH,
    UNSAFE_SECURITY,
    WAKE_ALARM,
    words,
)

TIERS_FOR_PIN = frozenset({"security", "money", "access"})
_ENTRY = words("garage gate gates door doors entrance intercom buzzer front back")
_OPENING = words("open opened opening release buzz")
_CLIMATE = words("thermostat hvac heating cooling climate heat cool heater temperature setpoint")
_COOKING = words("oven grill kettle sous fryer cooker stove")
_PHYSICAL_GRANT = words("code codes keypad guest")
_STRONG_GRANT = words("share grant invite authorize shared link")


@dataclass(frozen=True)
class Hazard:
    severity: float
    reason: str
    tier: str
    """security | money | access | data | delete | safety | command | credentials."""


def _target(f: Facts) -> str:
    for path, value in f.pairs:
        key = path.rsplit(".", 1)[-1].lower()
        if isinstance(value, str) and key in ("device", "entity", "entity_id", "lock", "lockid", "cover", "door",
                                              "name", "topic", "camera", "zone", "target", "path", "file"):
            return value.replace("_", " ").rsplit(".", 1)[-1] if key == "entity_id" else value
    return " ".join(sorted(f.name & SECURITY_OBJECTS)) or "the device"


def is_read_only(f: Facts, action: ProposedAction) -> bool:
    if action.risk is not None and action.risk.read_only:
        return True
    verbs = f.verbs - SECURITY_OBJECTS - SAFE_SECURITY
    return bool(verbs) and verbs <= READ


def security(f: Facts, action: ProposedAction) -> tuple[list[Hazard], bool]:
    """(hazards, direction known). Unlocking, disarming and opening an entry are unsafe; the reverse is safe."""
    unsafe: set[str] = set()
    safe: set[str] = set()
    for source in (f.action, f.name):
        unsafe, safe = set(source & UNSAFE_SECURITY), set(source & SAFE_SECURITY)
        if unsafe or safe:
            break
    if unsafe and safe and source is f.name:
        unsafe = set()  # "lock_control" with no action value: ambiguous; treat as not unsafe
    objects = f.name | f.values | f.keys
    if not unsafe:
        return [], bool(safe) or bool(f.values & NON_SECURITY_COVERS and not objects & _ENTRY)
    if WAKE_ALARM & (objects | f.desc) and not unsafe - {"disarm", "disarmed"} - _OPENING:
        return [], True
    if unsafe <= _OPENING:
        is_entry = bool(objects & _ENTRY)
        if (objects & NON_SECURITY_COVERS and not is_entry) or not (
                is_entry or (action.risk is not None and action.risk.security_device)):
            return [], True
        return [Hazard(0.8, f"opens {_target(f)}, which lets people into the home", "security")], True
    if unsafe & {"disarm", "disarmed"}:
        return [Hazard(0.85, "disarms the security alarm", "security")], True
    return [Hazard(0.85, f"unlocks {_target(f)}", "security")], True


def access(f: Facts, audience: Audience) -> tuple[list[Hazard], bool]:
    """(hazards, is a revocation). Granting codes, roles, shares or open ports to people outside the household."""
    scope = f.action | f.name
    if not scope & ACCESS_OBJECTS and not f.verbs & _STRONG_GRANT:
        return [], False
    if f.verbs & (REVOKE | DELETE) and not f.verbs & _STRONG_GRANT - {"share", "shared"} or f.action & REVOKE:
        return [], True
    if not f.verbs & GRANT:
        return [], False
    if scope & _PHYSICAL_GRANT and (scope | f.keys) & (_PHYSICAL_GRANT | words("door lock")):
        return [Hazard(0.8, "creates an access code that opens the door", "access")], False
    roles = {str(v).lower() for p, v in f.pairs if p.rsplit(".", 1)[-1].lower() in ("role", "scope", "permission")}
    powerful = roles & {"admin", "owner", "administrator", "root", "write_all"}
    if audience.public:
        return [Hazard(0.85, f"makes it available to anyone ({audience.public[0]})", "access")], False
    if audience.external:
        extra = f" as {min(powerful)}" if powerful else ""
        sev = 0.85 if powerful else 0.75
        return [Hazard(sev, f"gives {audience.external[0]}{extra} access; they are outside the household", "access")], False
    if audience.household or audience.trusted:
        return [], False
    what = "admin access" if powerful else "access"
    return [Hazard(0.6, f"grants {what} without saying to whom", "access")], False


def money(f: Facts, action: ProposedAction, threshold: float) -> list[Hazard]:
    declared = action.risk is not None and action.risk.costs_money
    if not (f.verbs & MONEY or declared) or f.verbs & CANCEL or f.negated & MONEY:
        return []
    if action.risk is not None and action.risk.costs_money is False and not f.verbs & MONEY:
        return []
    spend = estimate_spend(action.arguments)
    if spend.total is None:
        return [Hazard(0.6, "spends money, and I cannot tell how much", "money")]
    if spend.total > threshold:
        sev = 0.9 if spend.total > 10 * threshold else 0.75
        return [Hazard(sev, f"spends about {spend.text}, more than your limit of {threshold:g}", "money")]
    return []


def deletion(f: Facts) -> list[Hazard]:
    if not f.verbs & (DELETE | TRASH):
        return []
    scope = f.action | f.name
    marks = scope & (TRASH | PERMANENT) or f.desc & (TRASH | PERMANENT)
    permanent = bool(marks & PERMANENT) or bool(f.verbs & words("empty purge") and scope & TRASH)
    trash = not permanent and bool(marks & TRASH) and "trash" not in f.negated
    objects = f.name | f.keys | f.values | f.action
    important = objects & DATA & (f.action | f.values | f.name)
    target = _target(f)
    if f.bulk:
        if objects & LOW_VALUE_BULK and not important:
            return []
        if trash:
            return [Hazard(0.6, f"moves a lot to the trash at once ({f.bulk[0]})", "delete")]
        return [Hazard(0.85, f"deletes a lot at once ({f.bulk[0]}) and it cannot be undone", "delete")]
    if trash:
        return []
    if objects & LOW_VALUE and not important:
        return []
    how = "permanently" if permanent else "with no way to restore it that I can see"
    return [Hazard(0.75, f"deletes {target} {how}", "delete")]


def overwrite(f: Facts) -> list[Hazard]:
    read = bool(f.verbs) and f.verbs <= READ
    if (f.action | f.name | f.desc) & OVERWRITE and "overwrite" not in f.negated and not read:
        return [Hazard(0.6, "replaces what is there now; the old version is lost", "delete")]
    return []


def disclosure(f: Facts, action: ProposedAction, audience: Audience) -> list[Hazard]:
    """Private content (secrets, documents, forwarded mail, exports) going to people outside the household."""
    private = private_content(action.arguments)
    if f.verbs & words("forward") and (f.name | f.desc | f.action) & words("email mail message messages"):
        private.append("a forwarded message")
    if f.verbs & words("export share") and (f.name | f.values | f.action) & PRIVATE_DATA:
        private.append("private records")
    sending = f.verbs & SEND or (action.risk is not None and action.risk.external_recipient)
    if audience.bulk and sending:
        return [Hazard(0.7, "sends it to everyone at once", "data")]
    if not private or not audience.outsiders:
        return []
    who = audience.outsiders[0]
    sev = 0.85 if audience.public else 0.8
    return [Hazard(sev, f"sends {private[0]} to {who}, who is outside the household", "data")]


def credentials(f: Facts) -> list[Hazard]:
    scope = f.name | f.action | f.keys
    if not scope & CREDENTIALS or not (f.verbs | f.keys) & CHANGE:
        return []
    if f.verbs & words("export"):
        return [Hazard(0.8, "exports saved passwords", "credentials")]
    return [Hazard(0.75, "changes a password or account security setting; people may be locked out", "credentials")]


def protective(f: Facts) -> list[Hazard]:
    off: frozenset[str] = f.off_keys & PROTECTIVE
    if not off and f.action & words("disable deactivate off") and (f.action | f.name) & PROTECTIVE:
        off = (f.action | f.name) & PROTECTIVE
    if not off and "privacy" in f.action and (f.name | f.values) & words("camera cameras ring doorbell"):
        off = frozenset({"camera"})
    if not off:
        return []
    return [Hazard(0.75, f"turns off a protection ({', '.join(sorted(off))})", "security")]


def physical(f: Facts) -> list[Hazard]:
    found: list[Hazard] = []
    objects = f.name | f.values | f.keys
    if objects & CRITICAL_APPLIANCES and f.action & OFF:
        found.append(Hazard(0.7, f"turns off the {min(objects & CRITICAL_APPLIANCES)}; things may spoil or break", "safety"))
    if f.name & _COOKING:
        return found
    unit = unit_of(f)
    for key, value in numeric_settings(f):
        if "freezer" in key:
            ok = -30 <= value <= -12
        elif "fridge" in key:
            ok = 0 <= value <= 8
        elif (objects | f.desc | f.action) & _CLIMATE:
            c_ok, f_ok = 10 <= value <= 30, 50 <= value <= 86
            ok = c_ok if unit == "C" else f_ok if unit == "F" else (c_ok or f_ok)
        else:
            continue
        if not ok:
            found.append(Hazard(0.7, f"sets {key.replace('_', ' ')} to {value:g}, outside a safe range", "safety"))
    return found


def commands(action: ProposedAction) -> tuple[list[Hazard], bool]:
    """(hazards, all commands are read-only)."""
    found = inspect_commands(action.arguments)
    hazards = [Hazard(c.severity, f"{c.reason}: {c.text[:60]}", "command") for c in found if c.severity]
    return hazards, bool(found) and all(c.read_only for c in found)


__all__ = [
    "SAFE_VERBS",
    "TIERS_FOR_PIN",
    "Hazard",
    "access",
    "commands",
    "credentials",
    "deletion",
    "disclosure",
    "is_read_only",
    "money",
    "overwrite",
    "physical",
    "protective",
    "security",
]
