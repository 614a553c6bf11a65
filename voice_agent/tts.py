"""Text-to-speech with Piper, from the voice package's .onnx file. Audio is streamed sentence by sentence."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .config import TtsConfig
from .errors import ModelError, TtsError
from .models import model_file, verify

VOICES = {"en_US-joe-medium": "piper-joe-medium"}


@dataclass(frozen=True)
class SpeechAudio:
    pcm: np.ndarray  # int16 mono
    rate: int
    seconds_to_produce: float


class Synthesizer:
    def __init__(self, cfg: TtsConfig, verify_files: bool = True) -> None:
        if cfg.voice not in VOICES:
            raise ModelError(f"unknown Piper voice {cfg.voice!r}; bundled: {', '.join(VOICES)}", code="model-unknown",
                             fix="set tts.voice in the config")
        name = VOICES[cfg.voice]
        if verify_files:
            verify(name)
        from piper import PiperVoice, SynthesisConfig

        onnx = model_file(name, f"{cfg.voice}.onnx")
        try:
            self._voice = PiperVoice.load(onnx, config_path=model_file(name, f"{cfg.voice}.onnx.json"))
        except Exception as exc:
            raise ModelError(f"Piper voice {cfg.voice!r} ({onnx}) failed to load ({exc})", code="model-corrupt",
                             fix="voice-agent models verify") from exc
        self._syn = SynthesisConfig(length_scale=cfg.length_scale)
        self.rate: int = self._voice.config.sample_rate

    def stream(self, text: str) -> Iterator[SpeechAudio]:
        """Yield audio per sentence as Piper produces it."""
        text = _speakable(text)
        if not text:
            return
        t0 = time.perf_counter()
        try:
            for chunk in self._voice.synthesize(text, self._syn):
                yield SpeechAudio(chunk.audio_int16_array, chunk.sample_rate, time.perf_counter() - t0)
                t0 = time.perf_counter()
        except Exception as exc:
            raise TtsError(f"speech synthesis failed ({exc})", code="tts-failed") from exc

    def synthesize(self, text: str) -> np.ndarray:
        parts = [a.pcm for a in self.stream(text)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def warm(self) -> None:
        self.synthesize("Ready.")


def _speakable(text: str) -> str:
    text = re.sub(r"[*_`#>|]+", " ", text)  # markdown the model may emit
    return re.sub(r"\s+", " ", text).strip()
