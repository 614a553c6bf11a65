"""The risk classifier: a fixed policy (user overrides, declared metadata) over feature-based hazard checks.

No model, no network: a few regular expressions and set lookups per action."""

from __future__ import annotations

from ..config import SafetyConfig
from ..tools.base import UNTRUSTED
from . import hazards as hz
from .action import DECISIONS, ProposedAction, RiskDecision
from .features import Facts, extract
from .recipients import Directory, audience
from .text import INJECTION, SEND_VERBS, as_text, flatten, tokens, words

CATASTROPHIC = 0.5
_SOURCE_WORDS = {"message": "a message", "web": "a web page", "tool_result": "a tool's output",
                 "announcement": "an announcement"}
_POSTING = words("post publish tweet")


class RiskClassifier:
    """`classify(action)` -> allow | confirm | deny with a score and plain reasons."""

    def __init__(self, safety: SafetyConfig | None = None) -> None:
        self.safety = safety or SafetyConfig()
        self.directory = Directory(self.safety.household, self.safety.trusted_contacts)
        for tool, decision in self.safety.overrides.items():
            if decision not in DECISIONS:
                from ..errors import ConfigError
                raise ConfigError(f"safety.overrides.{tool} is {decision!r}; use allow, confirm or deny",
                                  code="config-invalid")

    def hazards(self, action: ProposedAction, f: Facts) -> list[hz.Hazard]:
        implicit = bool(f.verbs & SEND_VERBS) or bool(action.risk and action.risk.external_recipient)
        who = audience(action.arguments, self.directory, implicit_external=implicit)
        if not who.any and f.verbs & _POSTING:
            who = type(who)(public=("the public",))
        found: list[hz.Hazard] = []
        command_hazards, commands_read_only = hz.commands(action)
        found += command_hazards
        read_only = hz.is_read_only(f, action) or commands_read_only
        granted, revoking = hz.access(f, who)
        if not revoking:
            found += hz.disclosure(f, action, who)
        if read_only and not command_hazards:
            return found
        security, direction_known = hz.security(f, action)
        found += security + granted
        found += hz.money(f, action, self.safety.money_threshold)
        if not revoking:
            found += hz.deletion(f)
        found += hz.overwrite(f) + hz.credentials(f) + hz.protective(f) + hz.physical(f)
        if (action.risk is not None and action.risk.security_device and not direction_known and not found
                and not read_only and not revoking):
            found.append(hz.Hazard(0.55, "changes a security device and I cannot tell if that is safe", "security"))
        return found

    def _untrusted(self, action: ProposedAction) -> list[str]:
        """Reasons the action's arguments come from untrusted content, not from the user."""
        reasons = []
        sources = sorted({v for v in action.provenance.values() if v in UNTRUSTED})
        if sources:
            args = ", ".join(sorted(k for k, v in action.provenance.items() if v in UNTRUSTED))
            reasons.append(f"the {args} came from {' and '.join(_SOURCE_WORDS.get(s, s) for s in sources)}, not from you")
        if action.untrusted_context and not sources:
            said = action.user_request.lower()
            context = " ".join(action.untrusted_context).lower()
            if not said.strip():
                reasons.append("nobody asked for this: it came from untrusted text")
            else:
                for path, value in flatten(action.arguments):
                    text = as_text(value).strip().lower()
                    if len(text) >= 4 and text in context and text not in said:
                        reasons.append(f"{path} appears in untrusted text, not in your request")
                        break
        return reasons

    def classify(self, action: ProposedAction) -> RiskDecision:
        f = extract(action)
        found = self.hazards(action, f)
        reasons = [h.reason for h in sorted(found, key=lambda h: -h.severity)]
        score = max((h.severity for h in found), default=0.05 if hz.is_read_only(f, action) else 0.15)
        untrusted = self._untrusted(action)
        if untrusted:
            reasons += untrusted
            pushy = INJECTION & set(tokens(" ".join(action.untrusted_context)))
            if pushy:
                score = max(score, 0.9)
                reasons.append("the untrusted text pushes for it (" + ", ".join(sorted(pushy)[:3]) + ")")
            else:
                score = max(score, 0.35)
        catastrophic = score >= CATASTROPHIC
        if untrusted:
            decision = "deny" if catastrophic else "confirm"
        else:
            decision = "confirm" if catastrophic else "allow"
        override = self.safety.overrides.get(action.tool)
        if override == "deny":
            decision = "deny"
            reasons.append("your settings block this tool")
        elif override == "confirm" and decision == "allow":
            decision = "confirm"
            reasons.append("your settings ask for confirmation for this tool")
        elif override == "allow" and decision != "allow":
            if untrusted:
                reasons.append("your settings allow this tool, but not on the word of untrusted content")
            else:
                decision = "allow"
                reasons.append("your settings allow this tool without asking")
        if not reasons:
            reasons.append("reads information only" if score <= 0.05 else "limited in scope and easy to undo")
        tiers = {h.tier for h in found if h.severity >= CATASTROPHIC}
        needs_pin = bool(self.safety.pin) and decision == "confirm" and bool(tiers & hz.TIERS_FOR_PIN)
        return RiskDecision(decision=decision, score=round(min(score, 1.0), 3), reasons=tuple(reasons),
                            catastrophic=catastrophic, needs_pin=needs_pin)
