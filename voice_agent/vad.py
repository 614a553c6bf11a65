"""Endpointing with webrtcvad: speech start (with a pre-roll so the first syllable is kept), an early pause (to
start transcribing before the user is surely done), and end of speech after a configurable silence."""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass

import webrtcvad

from .audio import RATE
from .config import VadConfig

FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
START_WINDOW = 5  # frames considered for the start decision
START_VOICED = 3  # voiced frames among them that start speech


class Signal(enum.Enum):
    SPEECH_START = "speech_start"
    PAUSE = "pause"  # early pause: a good moment to start transcribing
    RESUME = "resume"  # speech came back after a pause: the early transcript is stale
    SPEECH_END = "speech_end"
    TIMEOUT = "timeout"  # nobody spoke


@dataclass(frozen=True)
class Endpoint:
    signal: Signal
    stream_ms: float  # stream position (ms since reset) where the signal belongs
    trailing_silence_ms: float = 0.0


class Endpointer:
    def __init__(self, cfg: VadConfig, no_speech_timeout_s: float | None = None) -> None:
        self.cfg = cfg
        self._vad = webrtcvad.Vad(cfg.aggressiveness)
        self.no_speech_timeout_s = cfg.no_speech_timeout_s if no_speech_timeout_s is None else no_speech_timeout_s
        self.reset()

    def reset(self, no_speech_timeout_s: float | None = None) -> None:
        if no_speech_timeout_s is not None:
            self.no_speech_timeout_s = no_speech_timeout_s
        self._pending = b""
        self._pre = collections.deque(maxlen=max(1, self.cfg.pre_roll_ms // FRAME_MS))
        self._window: collections.deque[bool] = collections.deque(maxlen=START_WINDOW)
        self._speech: list[bytes] = []
        self.in_speech = False
        self._silence_frames = 0
        self._paused = False
        self._frames = 0
        self._voiced_frames = 0
        self.ended = False

    @property
    def stream_ms(self) -> float:
        return self._frames * FRAME_MS

    def utterance(self) -> bytes:
        """Audio from the pre-roll to now (trailing silence included)."""
        return b"".join(self._speech)

    def speech_audio(self) -> bytes:
        """Audio from the pre-roll to the last voiced frame."""
        keep = len(self._speech) - self._silence_frames
        return b"".join(self._speech[: max(keep, 0)])

    def process(self, pcm: bytes) -> list[Endpoint]:
        if self.ended:
            return []
        out: list[Endpoint] = []
        data = self._pending + pcm
        n = len(data) - len(data) % FRAME_BYTES
        self._pending = data[n:]
        for i in range(0, n, FRAME_BYTES):
            frame = data[i : i + FRAME_BYTES]
            self._frames += 1
            voiced = self._vad.is_speech(frame, RATE)
            ev = self._frame(frame, voiced)
            if ev:
                out.append(ev)
                if ev.signal in (Signal.SPEECH_END, Signal.TIMEOUT):
                    self.ended = True
                    break
        return out

    def _frame(self, frame: bytes, voiced: bool) -> Endpoint | None:
        if not self.in_speech:
            self._pre.append(frame)
            self._window.append(voiced)
            if sum(self._window) >= START_VOICED:
                self.in_speech = True
                self._speech = list(self._pre)
                self._pre.clear()
                self._silence_frames = 0
                return Endpoint(Signal.SPEECH_START, self.stream_ms - START_WINDOW * FRAME_MS)
            if self.no_speech_timeout_s and self.stream_ms >= self.no_speech_timeout_s * 1000:
                return Endpoint(Signal.TIMEOUT, self.stream_ms)
            return None
        self._speech.append(frame)
        if voiced:
            self._voiced_frames += 1
            self._silence_frames = 0
            if self._paused:
                self._paused = False
                return Endpoint(Signal.RESUME, self.stream_ms)
            if len(self._speech) * FRAME_MS >= self.cfg.max_utterance_s * 1000:
                return Endpoint(Signal.SPEECH_END, self.stream_ms)
            return None
        self._silence_frames += 1
        silence_ms = self._silence_frames * FRAME_MS
        if silence_ms >= self.cfg.end_silence_ms:
            return Endpoint(Signal.SPEECH_END, self.stream_ms - silence_ms, silence_ms)
        if not self._paused and self.cfg.early_pause_ms and silence_ms >= self.cfg.early_pause_ms:
            self._paused = True
            return Endpoint(Signal.PAUSE, self.stream_ms - silence_ms, silence_ms)
        return None
