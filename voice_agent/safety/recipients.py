"""Who receives something (household, trusted, outsider, the public) and whether the content is private."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .text import PUBLIC, as_text, flatten, leaf_key, tokens

RECIPIENT_KEY = re.compile(r"^(to|recipient|recipients|email|emailaddress|email_address|with|share_with|attendees|"
                           r"attendee|user|channel|bcc|cc|send_to|sendto|destination|reveal_to|phone|number|payee|"
                           r"member|invitee|invitees|contact|to_address|address_to|grantee|audience|visibility|type|"
                           r"domain|target_email|forward_to|email_to)$")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
_LOCAL = re.compile(r"^(~|/|\./|[a-z]:\\)", re.IGNORECASE)
_SECRET = re.compile(
    r"password|passcode|passwd|\bpin\b|\bssn\b|social security|\b\d{3}-\d{2}-\d{4}\b|card number|credit card|"
    r"\b(?:\d[ -]?){13,19}\b|routing|account (?:number|no)|\biban\b|alarm code|door code|key is under|bank login|"
    r"credentials?|seed phrase|private key|api key|\bcode\b\D{0,12}\d{4,}|\b2fa\b|one[- ]time code|"
    r"(?:house|home) (?:is )?empty|all of (?:june|july|august|the summer)|on vacation|away until",
    re.IGNORECASE)
_PRIVATE_DOC = re.compile(
    r"passport|statement|\btax|w-?2\b|1099|medical|mri|health|bloodwork|lab result|contract|payslip|salary|"
    r"driver'?s licen[cs]e|\bid card|bank|insurance|diagnos|prescription|card_front|home folder|/home/",
    re.IGNORECASE)
_BULK_RECIPIENT = {"all-contacts", "all contacts", "everyone", "*", "all", "all_contacts"}


@dataclass(frozen=True)
class Audience:
    household: tuple[str, ...] = ()
    trusted: tuple[str, ...] = ()
    external: tuple[str, ...] = ()
    public: tuple[str, ...] = ()
    bulk: bool = False

    @property
    def outsiders(self) -> tuple[str, ...]:
        return self.external + self.public

    @property
    def any(self) -> bool:
        return bool(self.household or self.trusted or self.external or self.public)


class Directory:
    """The household and trusted contacts from the safety config, matched by name, address, domain or number."""

    def __init__(self, household: Iterable[str] = (), trusted: Iterable[str] = ()) -> None:
        self._sets = {"household": self._index(household), "trusted": self._index(trusted)}

    @staticmethod
    def _index(entries: Iterable[str]) -> tuple[set[str], set[str], set[str], set[str]]:
        exact, names, domains, phones = set(), set(), set(), set()
        for entry in entries:
            entry = entry.strip().lower()
            if not entry:
                continue
            exact.add(entry)
            if "@" in entry:
                domains.add(entry.rsplit("@", 1)[1])
            elif _PHONE.fullmatch(entry):
                phones.add(re.sub(r"\D", "", entry))
            else:
                names.add(" ".join(tokens(entry)))
        return exact, names, domains, phones

    def group(self, value: str) -> str | None:
        low = value.strip().lower().removeprefix("mailto:")
        words = tokens(low)
        for group in ("household", "trusted"):
            exact, names, domains, phones = self._sets[group]
            if low in exact or " ".join(words) in names:
                return group
            if "@" in low and "." in low.rsplit("@", 1)[-1]:
                if low.rsplit("@", 1)[1] in domains and group == "household":
                    return group
                continue
            if low in domains:
                return group
            digits = re.sub(r"\D", "", low)
            if len(digits) >= 7 and digits in phones:
                return group
            # "Alex Rivera" matches "Alex"; "@mia-rivera" matches "Mia"
            if any(name in words or " ".join(words).startswith(name + " ") for name in names if " " not in name):
                return group
            if "family" in words and group == "household":
                return group
        return None


def audience(arguments: dict, directory: Directory, implicit_external: bool = False) -> Audience:
    """Classify every recipient-like value. `implicit_external`: the tool sends somewhere even with no recipient."""
    groups: dict[str, list[str]] = {"household": [], "trusted": [], "external": [], "public": []}
    bulk = False
    for path, value in flatten(arguments):
        key = leaf_key(path)
        text = as_text(value).strip()
        if not text or isinstance(value, bool) or isinstance(value, (int, float)) and key not in ("phone", "number"):
            continue
        is_key = bool(RECIPIENT_KEY.match(key))
        looks = _EMAIL.fullmatch(text.removeprefix("mailto:")) or (_PHONE.fullmatch(text) and key in ("to", "phone", "number", "recipient"))
        if not (is_key or looks):
            continue
        low = text.lower()
        if key in ("type", "audience", "visibility", "domain") and not looks:
            if set(tokens(low)) & PUBLIC or low in ("anyone", "anyone_with_link", "public"):
                groups["public"].append(text)
            elif key == "domain":
                group = directory.group(low)
                groups[group or "external"].append(text)
            elif key in ("audience", "visibility"):
                groups["trusted"].append(text)  # a limited audience ("team", "private")
            continue
        if low in _BULK_RECIPIENT or set(tokens(low)) & PUBLIC:
            bulk = True
            groups["public"].append(text)
            continue
        if key == "channel" and not low.startswith("#"):
            continue
        if _LOCAL.match(text) or key == "user" and not looks and not low.startswith("@"):
            if key == "user" and not _LOCAL.match(text):
                group = directory.group(low)
                groups[group or "external"].append(text)
            continue
        group = directory.group(low)
        if group is None and key == "channel":
            group = "household" if "family" in low else "external"
        groups[group or "external"].append(text)
    if implicit_external and not any(groups.values()):
        groups["external"].append("the sender")
    return Audience(household=tuple(groups["household"]), trusted=tuple(groups["trusted"]),
                    external=tuple(groups["external"]), public=tuple(groups["public"]), bulk=bulk)


def private_content(arguments: dict) -> list[str]:
    """Reasons the content looks private: secrets, private documents or attachments."""
    found: list[str] = []
    for path, value in flatten(arguments):
        key = leaf_key(path)
        text = as_text(value)
        if key in ("attachments", "attachment", "media", "files", "file", "attach") and text and value != []:
            found.append(f"attachment {text}")
        elif key in ("password", "new_password", "secret", "pin"):
            found.append("a secret")
        elif secret := _SECRET.search(text):
            found.append(f"a secret ({secret.group(0)})")
        elif (doc := _PRIVATE_DOC.search(text)) and key not in ("subject", "title"):
            found.append(f"a private document ({doc.group(0)})")
    return found


def first_recipient(arguments: dict) -> str:
    for path, value in flatten(arguments):
        if RECIPIENT_KEY.match(leaf_key(path)) and isinstance(value, str) and value.strip():
            return value.strip()
    return ""

