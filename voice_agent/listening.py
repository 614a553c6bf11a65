"""The audio front end of one microphone: wake word, pre-roll, the microphone gate, endpointing and the early
transcription started at the first pause. It turns a stream of `AudioChunk`s into utterances for its owner.

Modes: "wake" (only the wake word is listened for), "listen" (an utterance is being endpointed, with an optional
no-speech timeout), "busy" (a turn is running: nothing is endpointed). While the device itself speaks, or for a short
tail after it, the microphone is gated; with barge-in on, only the wake word is heard then, and it interrupts."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from .audio import AudioChunk
from .config import Config
from .events import EventBus, SpeechEnd, SpeechStart, Wake
from .stt import SttResult, Transcriber
from .vad import Endpointer, FrameVad, Signal
from .wake import WakeWordDetector

WAKE_PRIME_MS = 800
"""Audio kept from before the wake word fired: people often start the command before the detector is sure."""


@dataclass(frozen=True)
class Utterance:
    """What the person said, as audio, with the transcription that may already be running since the first pause."""

    audio: bytes
    early: asyncio.Task[SttResult] | None = None


class Listener:
    def __init__(self, cfg: Config, bus: EventBus, stt: Transcriber, wake: WakeWordDetector | None,
                 vad: FrameVad | None, *, wake_enabled: bool, is_speaking: Callable[[], bool],
                 on_utterance: Callable[[Utterance], None], on_timeout: Callable[[], None],
                 on_barge_in: Callable[[], None]) -> None:
        self.cfg, self.bus, self.stt, self.wake = cfg, bus, stt, wake
        self.wake_enabled = wake_enabled and wake is not None
        self.is_speaking, self.on_utterance, self.on_timeout, self.on_barge_in = (
            is_speaking, on_utterance, on_timeout, on_barge_in)
        self.endpointer = Endpointer(cfg.vad, vad=vad)
        self._recent: collections.deque[bytes] = collections.deque(maxlen=WAKE_PRIME_MS // 80 + 1)
        self.mode = "wake" if self.wake_enabled else "listen"
        self._early: tuple[asyncio.Task, int] | None = None
        self._fed: collections.deque[tuple[float, float]] = collections.deque(maxlen=400)
        self._gate_until = 0.0

    # ---- control, by the owner ---------------------------------------------------------------------------------
    def listen(self, timeout_s: float | None, prime: bytes = b"") -> None:
        """Endpoint the next utterance; give up after `timeout_s` without speech (None or 0: never)."""
        self.mode = "listen"
        self.endpointer.reset(timeout_s or 0, prime=prime, prime_ms=WAKE_PRIME_MS)
        self._fed.clear()
        self._early = None

    def hold(self) -> None:
        """A turn is running: hear the wake word (for barge-in) but endpoint nothing."""
        self.mode = "busy"

    def idle(self) -> None:
        """Back to waiting for the wake word (or, without one, to listening with no timeout)."""
        self.mode = "wake" if self.wake_enabled else "listen"
        if self.mode == "listen":
            self.endpointer.reset(0)
            self._fed.clear()
        if self.wake is not None:
            self.wake.reset()

    def gate(self, seconds: float) -> None:
        """Keep the microphone closed this long from now (the tail of the device's own speech)."""
        self._gate_until = time.monotonic() + seconds

    @property
    def gated(self) -> bool:
        return self.is_speaking() or time.monotonic() < self._gate_until

    @property
    def in_speech(self) -> bool:
        return self.endpointer.in_speech

    # ---- audio -------------------------------------------------------------------------------------------------
    async def feed(self, chunk: AudioChunk) -> None:
        # The wake detector hears every chunk, whatever the mode, so its feature history is always current (a
        # stale history could re-trigger on the previous "hey jarvis" after a turn). ~3 ms per 80 ms chunk.
        det = None
        if self.wake_enabled or (self.cfg.audio.barge_in and self.wake is not None):
            det = await asyncio.to_thread(self.wake.process, chunk.audio)
        self._recent.append(chunk.audio)
        if self.mode == "busy" or self.gated:
            if det is not None and self.cfg.audio.barge_in and self.is_speaking():
                self.bus.emit(Wake(det.model, round(det.score, 3)))
                self.on_barge_in()
            return
        if self.mode == "wake":
            if det is not None:
                self.bus.emit(Wake(det.model, round(det.score, 3)))
                # the command often starts before the detector fires: keep what was just heard as pre-roll
                self.listen(self.cfg.vad.no_speech_timeout_s, prime=b"".join(self._recent))
            return
        # a microphone hands a chunk over once its last sample is captured: its first sample was heard earlier
        self._fed.append((self.endpointer.stream_ms, self.bus.now_ms() - chunk.duration_ms))
        for ep in self.endpointer.process(chunk.audio):
            self._on_endpoint(ep.signal, self._wall_ms(ep.stream_ms))

    def _wall_ms(self, stream_ms: float) -> float:
        """Wall-clock time (bus ms) at which the audio at endpointer position `stream_ms` was heard."""
        for start, wall in reversed(self._fed):
            if start <= stream_ms:
                return wall + (stream_ms - start)
        return self.bus.now_ms()

    def _on_endpoint(self, signal: Signal, at_ms: float) -> None:
        if signal is Signal.SPEECH_START:
            self.bus.emit(SpeechStart())
        elif signal is Signal.PAUSE:
            audio = self.endpointer.speech_audio()
            self._early = (asyncio.create_task(asyncio.to_thread(self.stt.transcribe, audio)), len(audio))
        elif signal is Signal.RESUME:
            self._early = None  # stale: the user kept talking
        elif signal is Signal.SPEECH_END:
            audio = self.endpointer.speech_audio()
            self.bus.emit(SpeechEnd(int(len(audio) / 32)), t_ms=min(at_ms, self.bus.now_ms()))
            early = self._early[0] if self._early and self._early[1] == len(audio) else None
            self.hold()
            self.on_utterance(Utterance(audio, early))
        elif signal is Signal.TIMEOUT:
            self.on_timeout()
