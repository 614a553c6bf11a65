"""The classifier's input and output: a proposed action and a risk decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ToolError
from ..tools.base import UNTRUSTED, RiskMetadata

PROVENANCES = frozenset({"user", "message", "web", "tool_result", "announcement", "llm"})
DECISIONS = ("allow", "confirm", "deny")


@dataclass(frozen=True)
class ProposedAction:
    tool: str
    arguments: dict
    description: str = ""
    user_request: str = ""
    """The user's own words."""
    provenance: dict[str, str] = field(default_factory=dict)
    """Argument name -> user | message | web | tool_result | announcement | llm."""
    untrusted_context: tuple[str, ...] = ()
    """Untrusted texts present in the conversation (email bodies, web pages, announcements)."""
    risk: RiskMetadata | None = None

    def untrusted_arguments(self) -> list[str]:
        return [k for k, v in self.provenance.items() if v in UNTRUSTED]


@dataclass(frozen=True)
class RiskDecision:
    decision: str
    """allow | confirm | deny."""
    score: float
    """0..1; 0.5 and above is catastrophic."""
    reasons: tuple[str, ...]
    """Plain words a person understands."""
    catastrophic: bool
    needs_pin: bool = False
    """Highest tier (locks, alarm, payments, access) and a PIN is configured."""


def _fail(message: str) -> ToolError:
    return ToolError(message, code="classify-invalid-input")


def action_from_json(obj: Any) -> ProposedAction:
    """Build a ProposedAction from one decoded `voice-agent classify` input line; raises ToolError on bad input."""
    if not isinstance(obj, dict):
        raise _fail("each line must be a JSON object")
    tool = obj.get("tool")
    if not isinstance(tool, str) or not tool.strip():
        raise _fail('"tool" is missing or not a non-empty string')
    arguments = obj.get("arguments", {})
    if not isinstance(arguments, dict):
        raise _fail('"arguments" must be an object')
    texts = {}
    for key in ("description", "user_request"):
        value = obj.get(key, "")
        if not isinstance(value, str):
            raise _fail(f'"{key}" must be a string')
        texts[key] = value
    context = obj.get("untrusted_context", [])
    if isinstance(context, str):
        context = [context]
    if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
        raise _fail('"untrusted_context" must be a list of strings')
    provenance = obj.get("provenance", {})
    if not isinstance(provenance, dict) or not all(isinstance(v, str) for v in provenance.values()):
        raise _fail('"provenance" must be an object of strings')
    bad = sorted({v for v in provenance.values()} - PROVENANCES)
    if bad:
        raise _fail(f'"provenance" has unknown source {bad[0]!r} (use one of {", ".join(sorted(PROVENANCES))})')
    risk = obj.get("risk")
    if risk is not None:
        if not isinstance(risk, dict):
            raise _fail('"risk" must be an object')
        allowed = set(RiskMetadata.__dataclass_fields__)
        unknown = sorted(set(risk) - allowed)
        if unknown:
            raise _fail(f'"risk" has unknown field {unknown[0]!r} (use {", ".join(sorted(allowed))})')
        if not all(v is None or isinstance(v, bool) for v in risk.values()):
            raise _fail('"risk" fields must be true, false or null')
        risk = RiskMetadata(**risk)
    return ProposedAction(tool=tool.strip(), arguments=arguments, user_request=texts["user_request"],
                          description=texts["description"], provenance=dict(provenance),
                          untrusted_context=tuple(context), risk=risk)
