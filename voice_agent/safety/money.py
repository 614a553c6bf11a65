"""Money: parse amounts such as "$5,000", "5000 USD", "1.200,00 EUR", "5k", and estimate what an action spends."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .text import flatten, leaf_key

# Rough conversion to the home currency; only the order of magnitude matters for a threshold.
_RATES = {"usd": 1.0, "eur": 1.0, "gbp": 1.0, "chf": 1.0, "cad": 0.75, "aud": 0.65, "jpy": 0.007, "btc": 60_000.0,
          "eth": 3_000.0, "sol": 150.0}
_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy"}
_NUMBER = re.compile(r"(?P<sym>[$€£¥])?\s*(?P<num>\d[\d,. ']*\d|\d)\s*(?P<mult>k|m|thousand|million|bn)?\b\s*"
                     r"(?P<code>usd|eur|gbp|chf|cad|aud|jpy|btc|eth|sol|dollars?|euros?|bucks|pounds?)?",
                     re.IGNORECASE)
_WORDS = {"dollar": "usd", "dollars": "usd", "bucks": "usd", "euro": "eur", "euros": "eur", "pound": "gbp",
          "pounds": "gbp"}
MONEY_KEY = re.compile(r"amount|price|total|cost|estimate|fee|budget|payout|\bsum\b|^rate$|^value$|max_amount|"
                       r"limit_price|fare|balance_to_pay|_cents$")
QUANTITY_KEY = re.compile(r"^(quantity|qty|count|shares|nights|passengers|copies|units|tickets|seats|people|guests)$")


def _number(text: str) -> float | None:
    text = text.replace(" ", "").replace("'", "")
    if "," in text and "." in text:
        # whichever separator comes last is the decimal point
        text = text.replace(".", "").replace(",", ".") if text.rfind(",") > text.rfind(".") else text.replace(",", "")
    elif "," in text:
        head, _, tail = text.rpartition(",")
        text = text.replace(",", "") if len(tail) == 3 else head.replace(",", "") + "." + tail
    elif text.count(".") > 1:
        text = text.replace(".", "")
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Amount:
    value: float
    """In the home currency (rough conversion)."""
    currency: str
    text: str
    """As written, for speaking back."""


def parse_amount(value: Any, key: str = "") -> Amount | None:
    """An amount from a number or a string; None when there is none."""
    key = key.lower()
    key_code = next((c for c in _RATES if key.endswith("_" + c)), "")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value) / (100.0 if key.endswith("_cents") else 1.0)
        code = key_code or "usd"
        return Amount(number * _RATES[code], code, f"{value:g} {code.upper()}" if key_code else f"{number:,.2f}")
    if not isinstance(value, str):
        return None
    match = _NUMBER.search(value)
    if not match:
        return None
    parsed = _number(match["num"])
    if parsed is None:
        return None
    number = parsed
    mult = (match["mult"] or "").lower()
    number *= {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9}.get(mult, 1.0)
    code = (match["code"] or "").lower()
    code = _WORDS.get(code, code) or _SYMBOLS.get(match["sym"] or "", "") or key_code or "usd"
    return Amount(number * _RATES.get(code, 1.0), code, value.strip())


def amounts_in_text(text: str) -> list[Amount]:
    """Explicit money mentions in free text: needs a currency symbol or word."""
    found = []
    for match in _NUMBER.finditer(text):
        if match["sym"] or match["code"]:
            amount = parse_amount(match.group(0))
            if amount:
                found.append(amount)
    return found


@dataclass(frozen=True)
class Spend:
    total: float | None
    """Estimated spend in the home currency; None when the arguments name no amount."""
    text: str
    """How to say it ("45,000 dollars")."""
    quantity: float


def estimate_spend(arguments: dict) -> Spend:
    totals: list[Amount] = []
    prices: list[Amount] = []
    quantity = 1.0
    for path, value in flatten(arguments):
        key = leaf_key(path)
        if QUANTITY_KEY.match(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
            quantity *= max(float(value), 0.0)
        elif MONEY_KEY.search(key):
            amount = parse_amount(value, key)
            if amount is not None:
                (totals if "total" in key or key.startswith("max") else prices).append(amount)
    if totals:
        best = max(totals, key=lambda a: a.value)
        return Spend(best.value, speakable(best), quantity)
    if prices:
        best = max(prices, key=lambda a: a.value)
        total = best.value * quantity
        return Spend(total, speakable(Amount(total, best.currency, best.text)), quantity)
    return Spend(None, "", quantity)


def speakable(amount: Amount) -> str:
    names = {"usd": "dollars", "eur": "euros", "gbp": "pounds"}
    value = amount.value / _RATES.get(amount.currency, 1.0)
    number = f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.2f}"
    return f"{number} {names.get(amount.currency, amount.currency.upper())}"
