"""Speaking announcements (MQTT, timers, the announce tool): one at a time, through the same speech path as replies,
queued behind a conversation unless urgent. An announcement is only ever spoken, never understood as a command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .announcements import AnnouncementRequest
from .events import Announcement, EventBus
from .speech import SpeechOutput

POLL_S = 0.05


class Announcer:
    def __init__(self, bus: EventBus, speech: SpeechOutput, in_conversation: Callable[[], bool],
                 next_turn: Callable[[], int], after: Callable[[], None]) -> None:
        self.bus, self.speech = bus, speech
        self.in_conversation = in_conversation
        """True while the user is talking to the device (normal announcements wait)."""
        self.next_turn = next_turn
        """A fresh speech turn number for each announcement."""
        self.after = after
        """Called once an announcement has been played (the owner gates its microphone)."""
        self._queue: asyncio.Queue[AnnouncementRequest] = asyncio.Queue()

    def announce(self, req: AnnouncementRequest) -> None:
        """Queue an announcement (from another thread use loop.call_soon_threadsafe)."""
        self._queue.put_nowait(req)

    async def run(self) -> None:
        while True:
            req = await self._queue.get()
            if req.priority != "urgent":  # queued behind a conversation: never talk over the user
                while self.in_conversation():
                    await asyncio.sleep(POLL_S)
            self.bus.emit(Announcement(req.text, req.priority))
            turn = self.next_turn()
            if req.chime:
                self.speech.chime(turn)
            self.speech.say(req.text, turn)
            await self.speech.wait_idle()
            self.after()
