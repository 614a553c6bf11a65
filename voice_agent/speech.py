"""The speaking side: reply sentences -> Piper (in a worker thread) -> speaker, pipelined so the next sentence is
synthesised while the current one plays. Conversation replies and announcements share this one path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio_io import Speaker
from .errors import TtsError
from .events import ErrorEvent, EventBus, FirstAudio, TtsDone
from .privacy import Personal
from .tts import Synthesizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Utterance:
    text: str
    turn: int  # replies of one turn share a number; FirstAudio fires once per turn
    gen: int = 0  # interrupt() bumps the generation: older audio is never played


@dataclass(frozen=True)
class _Audio:
    pcm: np.ndarray
    rate: int
    text: str
    turn: int
    last_of_text: bool
    gen: int = 0


class SpeechOutput:
    def __init__(self, tts: Synthesizer, speaker: Speaker, bus: EventBus,
                 on_speaking: Callable[[bool], None] = lambda s: None) -> None:
        self.tts, self.speaker, self.bus, self.on_speaking = tts, speaker, bus, on_speaking
        self._text_q: asyncio.Queue[Utterance] = asyncio.Queue()
        self._audio_q: asyncio.Queue[_Audio] = asyncio.Queue()
        self._pending = 0  # utterances queued or in flight
        self._idle = asyncio.Event()
        self._idle.set()
        self._first_audio_turn = -1  # turn numbers only grow: FirstAudio once per turn
        self._tasks: list[asyncio.Task] = []
        self.spoken: list[tuple[int, str]] = []  # (turn, text) fully played, for the history after a barge-in
        self._gen = 0
        self._played_ms = 0.0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._synth_loop(), name="tts"),
                       asyncio.create_task(self._play_loop(), name="speaker")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def say(self, text: str, turn: int) -> None:
        if not text.strip():
            return
        self._pending += 1
        self._idle.clear()
        self._text_q.put_nowait(Utterance(text, turn, self._gen))

    def chime(self, turn: int) -> None:
        """A short two-tone chime before an announcement."""
        rate = self.tts.rate
        t = np.arange(int(rate * 0.12)) / rate
        tone = np.concatenate([np.sin(2 * np.pi * 880 * t), np.sin(2 * np.pi * 660 * t)])
        pcm = (tone * np.hanning(len(tone)) * 12000).astype(np.int16)
        self._pending += 1
        self._idle.clear()
        self._audio_q.put_nowait(_Audio(pcm, rate, "", turn, True, self._gen))

    @property
    def busy(self) -> bool:
        return self._pending > 0

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def spoken_in_turn(self, turn: int) -> list[str]:
        return [text for t, text in self.spoken if t == turn]

    def interrupt(self) -> None:
        """Barge-in: drop everything queued and cut the audio now (the speaker stops within one 100 ms block).
        Idle at once: a text still being synthesised is abandoned at its next sentence and its audio never
        plays, so nothing of it may keep the microphone gated."""
        self._gen += 1
        self.speaker.stop()
        for q in (self._text_q, self._audio_q):
            while not q.empty():
                q.get_nowait()
        if self._pending:
            self._pending = 1
            self._done_one()

    def _done_one(self) -> None:
        self._pending = max(0, self._pending - 1)
        if self._pending == 0:
            self._idle.set()
            self.on_speaking(False)

    async def _synth_loop(self) -> None:
        while True:
            utt = await self._text_q.get()
            loop = asyncio.get_running_loop()
            parts: asyncio.Queue = asyncio.Queue()

            def produce(text: str = utt.text, gen: int = utt.gen) -> None:
                try:
                    for a in self.tts.stream(text):
                        if gen != self._gen:  # interrupted: stop synthesising the rest
                            break
                        loop.call_soon_threadsafe(parts.put_nowait, a)
                except TtsError as exc:
                    loop.call_soon_threadsafe(parts.put_nowait, exc)
                loop.call_soon_threadsafe(parts.put_nowait, None)

            worker = asyncio.create_task(asyncio.to_thread(produce))
            got_any = False
            while True:
                a = await parts.get()
                if isinstance(a, TtsError):
                    self.bus.emit(ErrorEvent(a.code, a.message))
                    continue
                if a is None:
                    break
                got_any = True
                if utt.gen == self._gen:
                    self._audio_q.put_nowait(_Audio(a.pcm, a.rate, utt.text, utt.turn, False, utt.gen))
            await worker
            # a marker that closes this text (carries no audio when synthesis produced none)
            self._audio_q.put_nowait(_Audio(np.zeros(0, np.int16), self.tts.rate, utt.text, utt.turn, True, utt.gen))
            if not got_any:
                log.debug("no audio for %r", Personal(utt.text))

    async def _play_loop(self) -> None:
        while True:
            a = await self._audio_q.get()
            stale = a.gen != self._gen
            if len(a.pcm) and not stale:
                if a.turn > self._first_audio_turn:
                    self._first_audio_turn = a.turn
                    self.bus.emit(FirstAudio())
                self.on_speaking(True)
                try:
                    await self.speaker.play(a.pcm, a.rate)
                except Exception as exc:  # a lost speaker must not stop the appliance
                    self.bus.emit(ErrorEvent(getattr(exc, "code", "audio-output"), str(exc)))
                self._played_ms += 1000.0 * len(a.pcm) / a.rate
            if a.last_of_text:
                if a.text and not stale:
                    self.spoken.append((a.turn, a.text))
                    del self.spoken[:-50]
                self.bus.emit(TtsDone(int(self._played_ms)))
                self._played_ms = 0.0
                if not stale:  # interrupt() already counted the texts of older generations as done
                    self._done_one()
