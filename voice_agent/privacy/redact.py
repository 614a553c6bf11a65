"""The one redaction mechanism: secrets never leave the appliance process in clear text, whatever the output (the
MQTT event feed, the journal and logs, the audit log, `config show`, `doctor`).

What counts as a secret:
- the values the configuration marks as secret (the `[safety] pin`, broker and LLM passwords and keys, passwords of
  context sources, secret-named `env` values of MCP servers), wherever they appear; the PIN also when it is said
  digit by digit ("four seven one one", "4-7-1-1") and when speech recognition got one digit wrong ("471",
  "4712"): a near miss gives the PIN away as well;
- the value after a secret word: `password=…`, `"api_key": "…"`, "my bank pin is 4711", "the door code is one two
  three four", "my password is hunter2";
- a code said digit by digit (four or more single digits in a row: "one two three four", "4 7 1 1");
- digits right after a yes ("yes, 4711"): the shape of an answer to "say yes and your PIN";
- credentials inside URLs (`http://user:secret@host`).

`answer()` is stricter, for a reply to a confirmation prompt: every digit in it is masked (a wrong PIN is as
secret as the right one). `mapping()` masks whole values under secret-named keys, recursively. Redaction applies to
what is written or sent out only: what the appliance understands and does is never changed by it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MASK = "[redacted]"

_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9"}
_DW = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_TOKEN = rf"(?:\d+|{_DW}\b)"
DIGIT_RUN = re.compile(rf"\b{_TOKEN}(?:[\s,.\-/]*{_TOKEN})*", re.IGNORECASE)
"""Numerals and digit words, possibly separated by spaces, commas, dots, dashes: "4711", "4-7-1-1", "four seven"."""

_NAME = (r"(?:\w*[_-])?(?:password|passwd|passphrase|passcode|secret|api_?key|apikey|token|pin|pin_?code|pin_?number"
         r"|otp|cvv|cvc|code)|\w*(?:password|passwd|passphrase|secret|token|apikey|api_key)")
_SECRET_NAME = re.compile(rf"^(?:{_NAME})$", re.IGNORECASE)
# key = value, key: value, "key": "value" (config lines, JSON, query strings, log lines); `code` alone is left out
# here (exit_code=1, returncode=2 are not secrets) but caught when spoken with digits below
_ASSIGN_NAME = (r"\w*(?:password|passwd|passphrase|passcode|secret|api[_-]?key|apikey|token)|pin|pin[_-]?(?:code|number)"
                r"|(?:security|access|door|alarm|entry|gate|auth|verification|pin)[_-]?code|otp|cvv|cvc")
_ASSIGNED = re.compile(rf"""(?P<key>(?<![\w-])["']?(?:{_ASSIGN_NAME})["']?\s*[=:]\s*)"""
                       r"""(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}\]"']+)""", re.IGNORECASE)
# spoken: "my pin is 4711", "the code is one two three four", "pin 4-7-1-1"
_SPOKEN_DIGITS = re.compile(r"(?P<key>\b(?:pin(?:\s+(?:code|number))?|(?:pass|security|access|door|alarm|entry|gate)?\s*code"
                            r"|passcode|password|otp|cvv|cvc)\b(?:\s+(?:is|was|number|of|to|=|:))*[\s:=]*)"
                            rf"(?P<value>{DIGIT_RUN.pattern})", re.IGNORECASE)
# spoken: "my password is hunter2", "the api key is abc123"
_SPOKEN_WORD = re.compile(r"(?P<key>\b(?:password|passphrase|passwd|secret|token|api key)\s+(?:is|was)\s+)"
                          r"(?P<value>[\"']?[^\s\"',.;!?]+[\"']?)", re.IGNORECASE)
_YES_DIGITS = re.compile(r"(?P<key>\b(?:yes|yeah|yep|yup|sure|ok(?:ay)?|confirm(?:ed)?|correct)\b[\s,.!:;-]*"
                         rf"(?:(?:and|my|the|pin|code|is|it's)\s+)*)(?P<value>{DIGIT_RUN.pattern})", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<key>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)(?P<value>[^@\s/]+)(?=@)", re.IGNORECASE)
_TOML_LINE = re.compile(r"""(?m)^(?P<key>\s*(?P<q>["']?)(?P<name>[\w.-]+)(?P=q)\s*=\s*)"""
                        r"""(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s#]+)""")


def digits_of(text: str) -> str:
    """The digits a run of numerals and digit words spells: "four 7-one one" -> "4711"."""
    return "".join(tok if tok.isdigit() else _DIGIT_WORDS[tok.lower()]
                   for tok in re.findall(rf"\d+|{_DW}", text, re.IGNORECASE))


def near(digits: str, pin: str) -> bool:
    """`digits` contain the PIN, or are the PIN with one digit dropped, added or changed (3 digits at least)."""
    if pin in digits:
        return True
    if len(digits) < 3 or abs(len(digits) - len(pin)) > 1:
        return False
    if len(digits) == len(pin):
        return sum(a != b for a, b in zip(digits, pin)) <= 1
    short, long_ = sorted((digits, pin), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def is_secret_key(name: str) -> bool:
    """Does a setting, argument or field with this name hold a secret (password, pin, api_key, token, door_code…)?"""
    return bool(_SECRET_NAME.match(name.strip()))


def _masked(value: str) -> str:
    if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0]:
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def _mask_value(m: re.Match[str]) -> str:
    return m.group("key") + _masked(m.group("value"))


def _mask_digits(min_digits: int):
    def sub(m: re.Match[str]) -> str:
        return m.group("key") + MASK if len(digits_of(m.group("value"))) >= min_digits else m.group()
    return sub


def _spoken_code(m: re.Match[str]) -> str:
    tokens = re.findall(rf"\d+|{_DW}", m.group(), re.IGNORECASE)
    return MASK if len(tokens) >= 4 and all(len(digits_of(t)) == 1 for t in tokens) else m.group()


@dataclass(frozen=True)
class Redactor:
    secrets: tuple[str, ...] = ()
    """Known secret values (from the configuration), masked wherever they appear."""
    pins: tuple[str, ...] = ()
    """Digit strings (the PIN): any run of numerals or digit words that spells one is masked."""
    _literal: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = sorted({s for s in self.secrets if len(s) >= 3}, key=len, reverse=True)
        if values:
            object.__setattr__(self, "_literal", re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE))

    @classmethod
    def from_config(cls, cfg: Any) -> "Redactor":
        """The secrets a configuration holds: the PIN, passwords, API keys, secret-named MCP `env` values."""
        secrets = _secret_values(cfg)
        pin = str(getattr(getattr(cfg, "safety", None), "pin", "") or "").strip()
        pins = (digits_of(pin),) if len(digits_of(pin)) >= 2 else ()
        return cls(tuple(dict.fromkeys(s for s in secrets if s.strip())), pins)

    def text(self, text: str) -> str:
        """`text` with every secret masked."""
        if not text or not isinstance(text, str):
            return text
        out = text
        if self._literal is not None:
            out = self._literal.sub(MASK, out)
        if self.pins:
            out = DIGIT_RUN.sub(lambda m: MASK if any(near(digits_of(m.group()), p) for p in self.pins)
                                else m.group(), out)
        out = _URL_CREDENTIALS.sub(_mask_value, out)
        out = _ASSIGNED.sub(_mask_value, out)
        out = _SPOKEN_DIGITS.sub(_mask_digits(2), out)
        out = _SPOKEN_WORD.sub(_mask_value, out)
        out = _YES_DIGITS.sub(_mask_digits(3), out)
        return DIGIT_RUN.sub(_spoken_code, out)

    def answer(self, text: str) -> str:
        """A reply to a confirmation prompt: secrets masked and every digit too (a wrong PIN is a near miss)."""
        return DIGIT_RUN.sub(lambda m: MASK if digits_of(m.group()) else m.group(), self.text(text))

    def mapping(self, value: Any) -> Any:
        """A JSON-like value (tool arguments) with the values under secret-named keys masked, and secrets in its
        strings, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: (MASK if isinstance(k, str) and is_secret_key(k) and value[k] not in (None, "")
                        else self.mapping(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mapping(v) for v in value]
        return value

    def config_text(self, text: str) -> str:
        """A TOML configuration with the values of secret settings masked (comments and layout kept)."""
        def line(m: re.Match[str]) -> str:
            return _mask_value(m) if is_secret_key(m.group("name").split(".")[-1]) else m.group()
        return self.text(_TOML_LINE.sub(line, text))


def _secret_values(obj: Any, depth: int = 0) -> list[str]:
    """Values of secret-named string fields anywhere in a (dataclass) configuration, and of secret-named keys in its
    tables (MCP servers' `env`)."""
    if depth > 6:
        return []
    items: list[tuple[str, Any]] = []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, Mapping):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [("", v) for v in obj]
    out: list[str] = []
    for name, value in items:
        if isinstance(value, str):
            if name and is_secret_key(name) and value:
                out.append(value)
        elif not isinstance(value, (int, float, bool)) and value is not None:
            out += _secret_values(value, depth + 1)
    return out
