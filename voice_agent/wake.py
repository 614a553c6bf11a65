"""Wake word detection with openWakeWord models (pyopen-wakeword: tflite runtime bundled, models from the package)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ModelError
from .models import model_file, verify

WAKE_MODELS = ("hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy", "okay_nabu")


@dataclass(frozen=True)
class Detection:
    model: str
    score: float


class WakeWordDetector:
    """Streaming detector: feed 16 kHz int16 mono bytes, get a Detection when the score crosses the threshold."""

    def __init__(self, model: str = "hey_jarvis", threshold: float = 0.5, refractory_chunks: int = 10) -> None:
        if model not in WAKE_MODELS:
            raise ModelError(f"unknown wake word model {model!r}; choose one of {', '.join(WAKE_MODELS)}",
                             code="model-unknown", fix="set wake.model in the config")
        from pyopen_wakeword import OpenWakeWord, OpenWakeWordFeatures

        verify("openwakeword")  # a corrupt .tflite may load and simply never fire
        try:
            self._features = OpenWakeWordFeatures(
                melspectrogram_model=model_file("openwakeword", "melspectrogram.tflite"),
                embedding_model=model_file("openwakeword", "embedding_model.tflite"),
                libtensorflowlite_c_path=_tflite_lib(),
            )
            self._model = OpenWakeWord.from_model(model_file("openwakeword", f"{model}.tflite"), _tflite_lib())
        except ModelError:
            raise
        except Exception as exc:  # the tflite runtime reports corrupt files in many ways
            raise ModelError(f"wake word model {model!r} failed to load ({exc})", code="model-corrupt",
                             fix="voice-agent models verify") from exc
        self.name = model
        self.threshold = threshold
        self.refractory_chunks = refractory_chunks
        self._cooldown = 0
        self.last_score = 0.0

    def process(self, pcm: bytes) -> Detection | None:
        best = 0.0
        for emb in self._features.process_streaming(pcm):
            for p in self._model.process_streaming(emb):
                best = max(best, float(p))
        self.last_score = best
        if self._cooldown > 0:
            self._cooldown -= 1
            return None
        if best >= self.threshold:
            self._cooldown = self.refractory_chunks
            self._model.reset()
            return Detection(self.name, best)
        return None

    def reset(self, full: bool = False) -> None:
        """Forget the wake word's recent evidence. The feature front-end keeps its audio history unless `full`
        (a new, unrelated audio stream): resetting it replays 8 s of autofill silence (~0.3 s of CPU)."""
        if full:
            self._features.reset()
        self._model.reset()
        self._cooldown = 0


def _tflite_lib() -> str:
    from pyopen_wakeword import openwakeword

    return str(openwakeword._find_tensorflowlite_c())
