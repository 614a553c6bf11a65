"""The single execution point. Every action, whichever path proposed it (local intents, the LLM, a timer), passes
here: argument validation, the catastrophic-action classifier, the audit log (written before and after), and — for
flagged actions — a spoken confirmation that must arrive in a fresh utterance before anything runs.

The executor is shared by every conversation and keeps no conversation state of its own: the user's words, the
untrusted text a turn has read and the action waiting for a yes live in the caller's `Session`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from .audit import AuditLog
from .config import SafetyConfig
from .errors import AuditError, ToolError
from .events import ActionCancelled, ActionExecuted, ConfirmationRequested, ErrorEvent, EventBus, Risk, ToolCallEvent
from .safety import ProposedAction, RiskClassifier, affirmative, describe_action
from .session import PendingAction, Session
from .tools.base import ToolCall, ToolRegistry, ToolResult

log = logging.getLogger(__name__)


@dataclass
class Executor:
    registry: ToolRegistry
    classifier: RiskClassifier
    audit: AuditLog | None
    bus: EventBus
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def _provenance(self, call: ToolCall, session: Session) -> dict[str, str]:
        if call.source == "local":
            return {k: "user" for k in call.arguments}
        if call.source == "announcement":
            return {k: "announcement" for k in call.arguments}
        prov = dict(call.provenance)
        said = session.request.lower()
        for k, v in call.arguments.items():
            if k in prov:
                continue
            text = str(v).lower().strip()
            if text and any(text in u.lower() for u in session.untrusted_texts) and text not in said:
                prov[k] = "tool_result"
            else:
                prov[k] = "user" if text and text in said else "llm"
        return prov

    async def execute(self, call: ToolCall, session: Session) -> ToolResult:
        """Validate, classify, audit, and run (or ask, or refuse), on behalf of `session`. Never raises. A flagged
        action becomes `session.pending` and the result is "pending_confirmation" with the question to ask."""
        user_request = session.request
        self.bus.emit(ToolCallEvent(call.name, call.arguments, call.source))
        try:
            tool = self.registry.validate(call)
        except ToolError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))
            return ToolResult("error", exc.message)
        call = replace(call, provenance=self._provenance(call, session))
        action = ProposedAction(tool=call.name, arguments=call.arguments, description=tool.spec.description,
                                user_request=user_request, provenance=call.provenance,
                                untrusted_context=session.untrusted_texts, risk=tool.spec.risk)
        decision = self.classifier.classify(action)
        self.bus.emit(Risk(call.name, decision.decision, round(decision.score, 3), list(decision.reasons)))
        try:
            if self.audit is None:
                raise AuditError("the audit log could not be opened", code="audit-unavailable")
            audit_id = self.audit.propose(call, decision.decision, decision.score, decision.reasons, user_request,
                                          summary=describe_action(action))
        except AuditError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))
            if decision.decision != "allow":
                return self._refuse(call, "I can't record actions in my audit log right now, so I won't do that.")
            log.warning("audit log unavailable; running harmless action %s unlogged: %s", call.name, exc)
            audit_id = None
        if decision.decision == "deny":
            why = decision.reasons[0] if decision.reasons else "it looks too risky"
            self._finish(audit_id, "denied", why)
            self.bus.emit(ActionCancelled(call.name, f"denied: {why}"))
            return ToolResult("denied", f"I won't {describe_action(action)}: {why}.")
        if decision.decision == "confirm":
            prompt = f"Do you want me to {describe_action(action)}?"
            prompt += " Say yes and your PIN to confirm." if decision.needs_pin and self.safety.pin else " Say yes to confirm."
            session.pending = PendingAction(call, action, decision, audit_id, prompt,
                                            time.monotonic() + self.safety.confirm_timeout_s)
            self.bus.emit(ConfirmationRequested(call.name, prompt))
            return ToolResult("pending_confirmation", prompt)
        return await self._run(call, tool, audit_id, session)

    async def _run(self, call: ToolCall, tool, audit_id: int | None, session: Session,
                   confirmation: str = "") -> ToolResult:
        try:
            result = await tool.run(call.arguments)
        except ToolError as exc:
            result = ToolResult("error", exc.message)
        except Exception as exc:  # a tool must never take the appliance down
            log.exception("tool %s failed", call.name)
            result = ToolResult("error", f"The {call.name} action failed: {exc}")
        self._finish(audit_id, "executed" if result.ok else "failed", result.text, confirmation)
        if result.ok:
            self.bus.emit(ActionExecuted(call.name, True, result.text))
        else:
            self.bus.emit(ErrorEvent("tool-failed", result.text))
        session.note_untrusted(result.text, f"the {call.name} result")  # untrusted content for later calls
        return result

    def _finish(self, audit_id: int | None, status: str, outcome: str, confirmation: str = "") -> None:
        if self.audit is None or audit_id is None:
            return
        try:
            self.audit.finish(audit_id, status, outcome, confirmation)
        except AuditError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))

    def _refuse(self, call: ToolCall, text: str) -> ToolResult:
        self.bus.emit(ActionCancelled(call.name, text))
        return ToolResult("denied", text)

    async def resolve(self, session: Session, utterance: str | None) -> ToolResult:
        """The session's answer to its confirmation prompt: only a clear yes (and the PIN, when required) runs the
        action. The pending action is consumed whatever the answer."""
        p, session.pending = session.pending, None
        if p is None:
            return ToolResult("error", "There is nothing waiting for confirmation.")
        what = describe_action(p.action)
        heard = (utterance or "").strip()
        if not heard or time.monotonic() > p.expires_at + 0.5:
            reason = "no answer"
        else:
            verdict = affirmative(heard)
            if verdict is True and p.decision.needs_pin and self.safety.pin and not _has_pin(heard, self.safety.pin):
                reason = "wrong or missing PIN"
            elif verdict is True:
                try:
                    tool = self.registry.validate(p.call)
                except ToolError as exc:
                    self._finish(p.audit_id, "failed", exc.message, heard)
                    return ToolResult("error", exc.message)
                return await self._run(p.call, tool, p.audit_id, session, confirmation=heard)
            else:
                reason = "you said no" if verdict is False else "I didn't hear a clear yes"
        self._finish(p.audit_id, "cancelled", reason, heard)
        self.bus.emit(ActionCancelled(p.call.name, reason))
        return ToolResult("cancelled", f"Okay, I won't {what}." if reason == "you said no"
                          else f"{reason[0].upper()}{reason[1:]}, so I cancelled: {what}.")


def _has_pin(text: str, pin: str) -> bool:
    words = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
             "seven": "7", "eight": "8", "nine": "9"}
    digits = "".join(words.get(w, "".join(ch for ch in w if ch.isdigit()))
                     for w in text.lower().replace("-", " ").replace(",", " ").split())
    return pin in digits
