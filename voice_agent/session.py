"""One conversation's state: the microphone of a room, a satellite, or a text client each have their own `Session`.

What lives here must never leak from one conversation into another: the user's words of the turn in progress, the
untrusted text the turn has read (tool results, message bodies, announcements), and an action waiting for a spoken
yes. A "yes" only ever answers the question asked in its own session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .tools.base import UntrustedText

if TYPE_CHECKING:
    from .safety import ProposedAction, RiskDecision
    from .tools.base import ToolCall


@dataclass(frozen=True)
class PendingAction:
    """A flagged action that runs only if the same session answers with a clear yes before `expires_at`."""

    call: ToolCall
    action: ProposedAction
    decision: RiskDecision
    audit_id: int | None
    prompt: str
    expires_at: float
    """time.monotonic() deadline."""


MAX_UNTRUSTED_CHARS = 4000
"""Each untrusted text is kept up to this length (enough to judge what it asks for)."""


@dataclass
class Session:
    room: str = ""
    """The room (area) this conversation happens in; empty when unknown (a text client)."""
    name: str = "local"
    """Who is on the other end: "local" (this appliance's microphone), a satellite's name, "text"."""
    request: str = ""
    """The user's own words in the turn in progress."""
    untrusted: list[UntrustedText] = field(default_factory=list)
    """Untrusted texts seen in the turn in progress."""
    pending: PendingAction | None = None
    """An action waiting for this session's spoken yes."""

    def new_turn(self, request: str = "") -> None:
        self.request = request
        self.untrusted.clear()

    def note_untrusted(self, text: str, source: str = "a tool's output") -> None:
        """Record untrusted text read in this turn; `source` names it as a person would ("your email")."""
        if text:
            self.untrusted.append(UntrustedText(source, text[:MAX_UNTRUSTED_CHARS]))

    @property
    def untrusted_texts(self) -> tuple[str, ...]:
        return tuple(u.text for u in self.untrusted)
