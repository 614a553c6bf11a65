"""Speaking announcements (MQTT, timers, the announce tool): one at a time, through the same speech path as replies,
queued behind a conversation unless urgent. An announcement is only ever spoken, never understood as a command.

The queue is bounded (`limit`): urgent announcements are spoken first and, when the queue is full, an urgent one
takes the place of the newest normal one; an announcement identical to one already waiting is merged into it; the
rest of the excess is dropped with one log line per flood. The wake word silences the announcement being spoken
(the owner wires that up), unless its text itself contains the wake phrase, which would let it interrupt itself."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable

from .announcements import AnnouncementRequest
from .events import Announcement, EventBus
from .speech import SpeechOutput

log = logging.getLogger(__name__)

POLL_S = 0.05


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


class Announcer:
    def __init__(self, bus: EventBus, speech: SpeechOutput, in_conversation: Callable[[], bool],
                 next_turn: Callable[[], int], after: Callable[[], None], *, limit: int = 10,
                 wake_phrase: str = "") -> None:
        self.bus, self.speech = bus, speech
        self.in_conversation = in_conversation
        """True while the user is talking to the device (normal announcements wait)."""
        self.next_turn = next_turn
        """A fresh speech turn number for each announcement."""
        self.after = after
        """Called once an announcement has been played to its end (the owner gates its microphone)."""
        self.limit = limit
        self.wake_phrase = _letters(wake_phrase)
        self._urgent: deque[AnnouncementRequest] = deque()
        self._normal: deque[AnnouncementRequest] = deque()
        self._wakeup = asyncio.Event()
        self.current: AnnouncementRequest | None = None
        """The announcement being spoken now."""
        self.dropped = 0
        """Announcements dropped because the queue was full (since start)."""
        self.merged = 0
        """Announcements merged into an identical one already waiting."""
        self._flood = False  # dropping since the queue was last empty (logged once)
        self._silenced = False

    # ---- queueing (event loop thread) --------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._normal)

    def announce(self, req: AnnouncementRequest) -> None:
        """Queue an announcement (from another thread use loop.call_soon_threadsafe)."""
        if any(q.text == req.text for q in (*self._urgent, *self._normal)):
            self.merged += 1
            return
        if self.waiting >= self.limit:
            if req.priority == "urgent" and self._normal:
                self._drop(self._normal.pop())  # the newest normal one makes room
            else:
                self._drop(req)
                return
        (self._urgent if req.priority == "urgent" else self._normal).append(req)
        self._wakeup.set()

    def _drop(self, req: AnnouncementRequest) -> None:
        self.dropped += 1
        if not self._flood:
            self._flood = True
            log.warning("announcement queue full (%d waiting): dropping the excess, urgent ones kept first",
                        self.limit)

    # ---- silencing ---------------------------------------------------------------------------------------------
    @property
    def interruptible(self) -> bool:
        """An announcement is playing and the wake word may silence it."""
        return (self.current is not None and self.speech.busy
                and not (self.wake_phrase and self.wake_phrase in _letters(self.current.text)))

    def silence(self) -> None:
        """Cut the announcement being spoken (the wake word was heard); the queue stays."""
        if self.current is not None:
            self._silenced = True
            self.speech.interrupt()

    # ---- speaking ----------------------------------------------------------------------------------------------
    def _next(self) -> AnnouncementRequest | None:
        if self._urgent:
            return self._urgent.popleft()
        if self._normal and not self.in_conversation():  # never talk over the user
            return self._normal.popleft()
        return None

    async def run(self) -> None:
        while True:
            req = self._next()
            if req is None:
                if not self.waiting:
                    self._flood = False
                    self._wakeup.clear()
                    await self._wakeup.wait()
                else:  # only normal ones, and a conversation is going on
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), POLL_S)
                    except TimeoutError:
                        pass
                continue
            await self._speak(req)

    async def _speak(self, req: AnnouncementRequest) -> None:
        self.bus.emit(Announcement(req.text, req.priority))
        turn = self.next_turn()
        self.current, self._silenced = req, False
        try:
            if req.chime:
                self.speech.chime(turn)
            self.speech.say(req.text, turn)
            await self.speech.wait_idle()
        finally:
            self.current = None
        if not self._silenced:  # silenced: the person is talking to us now; no gate over their words
            self.after()
