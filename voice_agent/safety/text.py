"""Turning a proposed action into words: tool-name tokens, flattened arguments and the word lists the features use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens; splits snake_case, kebab-case, dotted names and camelCase."""
    return [t for t in _SPLIT.split(_CAMEL.sub(" ", text).lower()) if t]


def flatten(arguments: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted key path, leaf value) pairs. JSON text inside a string value (MQTT payloads) is expanded."""
    if isinstance(arguments, str) and arguments[:1] in "{[" and len(arguments) < 10_000:
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    if isinstance(arguments, dict):
        for key, value in arguments.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(arguments, (list, tuple)):
        if not arguments:
            yield prefix, []
        for value in arguments:
            yield from flatten(value, prefix)
    else:
        yield prefix, arguments


def leaf_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower()


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def words(*names: str) -> frozenset[str]:
    return frozenset(w for name in names for w in name.split())


# Keys whose value says what to do ("unlock", "delete_permanently", "turn_on" ...).
ACTION_KEYS = words("action command cmd service operation op method mode verb task intent state position status "
                    "request kind payload side")
READ = words("get list read search find show fetch lookup look check status view describe report forecast headlines "
             "count preview inspect snapshot history balance browse info details query lookup what which where "
             "summarize summary query")
DELETE = words("delete remove rm erase wipe purge destroy drop truncate unlink format mkfs shred clear empty "
               "uninstall rmdir del expunge reset")
CANCEL = words("cancel refund unsubscribe")
OVERWRITE = words("overwrite replace replacing replaces force")
CHANGE = words("change set reset update new export disable rotate")
TRASH = words("trash archive recycle bin restorable")
PERMANENT = words("permanent permanently forever purge hard shred wipe irrevocably irreversibly expunge destroy")
MONEY = words("buy purchase order checkout pay payment transfer wire venmo paypal zelle donate donation tip subscribe "
              "upgrade book booking reserve reservation rent trade payout withdraw invest bid charge autopay "
              "remit cashapp money wallet gift")
SEND = words("send email mail message sms post publish tweet reply forward notify whatsapp slack dm invite text "
             "export upload")
GRANT = words("share grant permission permissions invite authorize role acl add create forward enable")
REVOKE = words("revoke unshare remove delete disable deny ban close stop")
ACCESS_OBJECTS = words("user users member members code codes key keys permission permissions access role roles share "
                       "shared link sharing admin guest port forward forwarding rule rules acl token tokens invite")
SECURITY_OBJECTS = words("lock locks door doors garage gate gates alarm security camera cameras doorbell keypad "
                         "intercom entrance deadbolt siren surveillance buzzer porch ring")
NON_SECURITY_COVERS = words("blind blinds curtain curtains shade shades awning window windows drape drapes")
UNSAFE_SECURITY = words("unlock unlocked unlatch unlatched disarm disarmed open opened opening release buzz")
SAFE_SECURITY = words("lock locked latch arm armed close closed closing stop")
WAKE_ALARM = words("wake wakeup clock snooze weekdays")
PROTECTIVE = words("recording record motion detection alerts alert notifications filter filters protection firewall "
                   "antivirus safesearch safe 2fa mfa factor monitoring surveillance camera cameras security "
                   "parental")
OFF = words("off false disable disabled deactivate stop stopped none 0 no")
ON = words("on true enable enabled activate start yes")
CRITICAL_APPLIANCES = words("freezer fridge refrigerator sump medical oxygen cpap aquarium")
CREDENTIALS = words("password passwords passcode passwd credential credentials secret secrets token pin 2fa mfa "
                    "recovery login vault")
LOW_VALUE = words("timer timers reminder reminders item spam junk playlist event events card "
                  "notification notifications alarm contact contacts container code")
LOW_VALUE_BULK = words("spam junk cache tmp temp timers notifications shopping")
DATA = words("volumes volume data database photos files documents backup backups repo repository account")
PRIVATE_DATA = words("contacts health records medical location photos documents files folder mail mails inbox "
                     "passwords history statement tax taxes passport")
PUBLIC = words("public anyone everyone world internet anyonewithlink all-contacts")
SAFE_VERBS = words("set turn start play pause stop create add update write run exec execute change move rename restore "
                   "append log schedule push enable dispense feed preheat honk rollout restart reboot print rent")
KNOWN_VERBS = (READ | DELETE | TRASH | MONEY | SEND | GRANT | REVOKE | UNSAFE_SECURITY | SAFE_SECURITY | CANCEL
               | SAFE_VERBS)
INJECTION = words("urgent urgently immediately ignore assistant assistants subscription premium verify verification "
                  "penalties penalty ceo prize congratulations")
SEND_VERBS = words("send email mail sms reply forward whatsapp slack dm message")
