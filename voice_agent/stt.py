"""Speech-to-text with faster-whisper, loaded from a local model directory (never a hub), biased toward the
home's own device and room names through an initial prompt (see `LocalIntents.stt_prompt`)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from .config import SttConfig
from .errors import ModelError, SttError
from .models import STT_MODELS, model_dir, verify

# Whisper hallucinates these on near-silence; a transcript that is only one of them is treated as no speech.
_NOISE_ONLY = re.compile(r"^\W*(thank you|thanks for watching|you|bye)?\W*$", re.I)


@dataclass(frozen=True)
class SttResult:
    text: str
    seconds: float
    audio_s: float

    @property
    def rtf(self) -> float:
        return self.seconds / self.audio_s if self.audio_s else 0.0


class Transcriber:
    def __init__(self, cfg: SttConfig, prompt: str | None = None, verify_files: bool = True) -> None:
        name = STT_MODELS[cfg.model]
        path = model_dir(name)
        if verify_files:
            verify(name)
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=cfg.threads,
                                       local_files_only=True)
        except Exception as exc:
            raise ModelError(f"speech model {name!r} in {path} failed to load ({exc})", code="model-corrupt",
                             fix="voice-agent models verify") from exc
        self.cfg = cfg
        self.name = name
        self.prompt = prompt or None

    def transcribe(self, pcm: bytes | np.ndarray, biased: bool = True) -> SttResult:
        """Transcribe 16 kHz mono int16 audio, with the home's prompt unless `biased` is False. Runs in a worker
        thread; materialises the lazy segments here."""
        audio = np.frombuffer(pcm, np.int16) if isinstance(pcm, bytes) else pcm
        if audio.size == 0:
            raise SttError("no audio to transcribe", code="stt-no-audio")
        t0 = time.perf_counter()
        x = audio.astype(np.float32) / 32768.0
        try:
            segments, _info = self._model.transcribe(
                x, language=self.cfg.language if not self.cfg.model.endswith(".en") else "en",
                beam_size=self.cfg.beam_size, condition_on_previous_text=False, without_timestamps=True,
                initial_prompt=self.prompt if biased else None, vad_filter=False,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        except Exception as exc:
            raise SttError(f"transcription failed ({exc})", code="stt-failed") from exc
        if _NOISE_ONLY.match(text):
            text = ""
        return SttResult(text, time.perf_counter() - t0, len(audio) / 16000)

    def transcribe_long(self, pcm: np.ndarray, biased: bool = False) -> SttResult:
        """Transcribe a recording of any length (`voice-agent transcribe`) with faster-whisper's own long-form
        settings: timestamps, each 30 s window conditioned on the text before it, beam search with temperature
        fallback. The command path (`transcribe`) trades these for speed on short utterances; a recording must
        lose nothing against the raw model (tests/test_stt.py compares both on a 30 s telephone call)."""
        if pcm.size == 0:
            raise SttError("no audio to transcribe", code="stt-no-audio")
        t0 = time.perf_counter()
        try:
            segments, _info = self._model.transcribe(
                pcm.astype(np.float32) / 32768.0,
                language=self.cfg.language if not self.cfg.model.endswith(".en") else "en",
                initial_prompt=self.prompt if biased else None)
            text = " ".join(s.text.strip() for s in segments).strip()
        except Exception as exc:
            raise SttError(f"transcription failed ({exc})", code="stt-failed") from exc
        return SttResult(text, time.perf_counter() - t0, len(pcm) / 16000)

    def warm(self) -> None:
        self.transcribe(np.zeros(16000, np.int16))
