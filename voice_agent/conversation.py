"""What a conversation does with the words a person said, however they arrived (this appliance's microphone, a
satellite, a typed `voice-agent ask`): answer the session's pending confirmation, or understand the request — the
local intents first, the LLM for everything else — and act through the single execution point.

A `Conversation` speaks through the `say` callback it is given; it knows nothing about audio."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from .agent import STOP_STATUSES
from .audit import AuditLog
from .errors import LlmError
from .events import ErrorEvent, EventBus, IntentMatched
from .executor import Executor
from .intents import LocalIntents
from .session import Session
from .tools.base import ToolCall, ToolResult

log = logging.getLogger(__name__)

NO_LLM_REPLY = ("Sorry, my language model isn't reachable. I can still do home commands like lights, locks, the "
                "thermostat and timers.")  # a short first sentence: Piper speaks it while the rest is synthesised
NOT_UNDERSTOOD = "Sorry, I didn't catch that."
BAD_LLM_REPLY = "Sorry, my language model gave an answer I couldn't use, so I did nothing."

Say = Callable[[str], None]
Retranscribe = Callable[[], Awaitable[str | None]]
"""Transcribe the turn's audio again without the home-biased prompt; None when there is no audio (a text turn)."""


class Conversation:
    def __init__(self, session: Session, intents: LocalIntents, executor: Executor, bus: EventBus, say: Say,
                 agent=None, audit: AuditLog | None = None) -> None:
        self.session, self.intents, self.executor, self.bus, self.say = session, intents, executor, bus, say
        self.agent = agent
        """The LLM agent of this conversation (it keeps this conversation's history), or None."""
        self.audit = audit
        self._stops: list[ToolResult] = []

    @property
    def pending(self):
        return self.session.pending

    async def handle(self, text: str | None, retranscribe: Retranscribe | None = None) -> None:
        """One turn: `text` is what the person said (None: they said nothing while a confirmation was pending)."""
        if self.session.pending is not None:
            await self.respond_to_confirmation(text)
        elif text:
            self.session.new_turn(text)
            await self._understand(text, retranscribe)

    async def respond_to_confirmation(self, text: str | None) -> None:
        result = await self.executor.resolve(self.session, text)
        self.say(result.text)

    async def _understand(self, text: str, retranscribe: Retranscribe | None) -> None:
        t0 = time.perf_counter()
        local = self.intents.understand(text)
        if local is None and retranscribe is not None and self.agent is not None and self.intents.mentions_home(text):
            # Not a home command, yet it names parts of the home: the home-biased prompt may have pulled words
            # toward device names, so the language model gets an unbiased transcription instead.
            unbiased = await retranscribe()
            if unbiased and unbiased != text:
                text = unbiased
                self.session.new_turn(text)
            local = self.intents.understand(text)
        if local is not None:
            self.bus.emit(IntentMatched(local.intent, "local", int((time.perf_counter() - t0) * 1000)))
            if local.intent == "AgentActivityToday":
                self.say(self.audit.summary_today() if self.audit else "I keep no record of my actions.")
                return
            if local.answer:
                self.say(local.answer)
                return
            replies = []
            for call in local.calls:
                result = await self.executor.execute(call, self.session)
                replies.append(result.text)
                if result.status in ("pending_confirmation", "denied"):
                    break
            self.say(" ".join(replies))
            return
        if self.agent is None:
            self.bus.emit(ErrorEvent("llm-not-configured", "no language model is configured"))
            self.say(NO_LLM_REPLY)
            return
        await self._ask_llm(text, t0)

    async def _ask_llm(self, text: str, t0: float) -> None:
        self.bus.emit(IntentMatched("llm", "llm", int((time.perf_counter() - t0) * 1000)))
        self._stops = stops = []
        said = 0
        try:
            async with contextlib.aclosing(self.agent.respond(text)) as sentences:  # a barge-in closes the stream
                async for sentence in sentences:
                    said += bool(sentence.strip())
                    self.say(sentence)
        except LlmError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))
            self.say(NO_LLM_REPLY if exc.code in ("llm-unreachable", "llm-timeout") else BAD_LLM_REPLY)
            return
        for result in stops:
            self.say(result.text)
        if not said and not stops:  # the model ended without a word (e.g. after a failed tool call)
            self.say("Sorry, I couldn't do that.")

    async def execute_llm_call(self, call: ToolCall) -> ToolResult:
        """The LLM agent's way to act: through the executor, on behalf of this conversation's session."""
        result = await self.executor.execute(call, self.session)
        if result.status in STOP_STATUSES:  # the agent ends its turn on these; we speak their text
            self._stops.append(result)
        return result

    def record_spoken(self, text: str) -> None:
        """After a barge-in: the LLM history keeps only what was actually said."""
        if self.agent is not None:
            self.agent.record_spoken(text)
