"""Test audio with known truth: commands spoken by espeak-ng voices (never only the appliance's own Piper voice),
optionally mixed with noise, and recordings from PyPI packages fetched at set-up (tests/support/testdata.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from voice_agent.audio import AudioClip, read_wav, silence

from .testdata import folder

CACHE = Path(os.environ.get("VOICE_AGENT_TEST_CACHE", Path(tempfile.gettempdir()) / "voice-agent-test-cache"))
VOICES = ("en-us", "en-us+f3", "en-us+m3", "en+f4")


def espeak(text: str, voice: str = "en-us", speed: int = 150, pad_ms: tuple[int, int] = (400, 300),
           noise_snr_db: float | None = None, seed: int = 0) -> AudioClip:
    """Speak `text` with espeak-ng, resample to 16 kHz and optionally add white+babble-like noise at an SNR."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"{text}|{voice}|{speed}".encode()).hexdigest()[:16]
    wav = CACHE / f"espeak-{key}.wav"
    if not wav.exists():
        tmp = wav.with_suffix(".tmp.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True)
        tmp.replace(wav)
    clip = read_wav(wav)
    pcm = np.concatenate([silence(pad_ms[0]), clip.pcm, silence(pad_ms[1])])
    if noise_snr_db is not None:
        pcm = add_noise(pcm, noise_snr_db, seed)
    return AudioClip(pcm)


def add_noise(pcm: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = pcm.astype(np.float32)
    speech_power = np.mean(x[np.abs(x) > 500] ** 2) if np.any(np.abs(x) > 500) else np.mean(x**2)
    white = rng.normal(size=len(x)).astype(np.float32)
    hum = np.sin(2 * np.pi * 120 * np.arange(len(x)) / 16000).astype(np.float32)  # mains hum / fridge
    noise = white + 0.5 * hum
    noise *= np.sqrt(speech_power / (10 ** (snr_db / 10)) / np.mean(noise**2))
    return np.clip(x + noise, -32768, 32767).astype(np.int16)


def sample_clips() -> list[tuple[Path, str]]:
    """pytest-audioeval's English sample clips with reference transcripts (MIT). They sound synthetic (digital
    silence, "hello world", counting): a check of the recogniser on clean read text, not on human speech."""
    en = folder("audioeval")
    return [(w, w.with_suffix(".txt").read_text().strip()) for w in sorted(en.glob("*.wav"))]


def telephone_speech() -> tuple[Path, list[tuple[float, float, str]]]:
    """pyannote-audio's 30 s two-speaker telephone recording (real human speech) and its timed reference."""
    d = folder("telephone")
    segs = []
    for line in (d / "sample.stm").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and not line.startswith(";;"):
            segs.append((float(parts[3]), float(parts[4]), parts[5]))
    return d / "sample.wav", segs


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _spell(match) -> str:
    n = int(match.group())
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return match.group()


def normalise(text: str) -> str:
    """Lower case, numbers spelled out ("1-2-3" -> "one two three"), hyphens as spaces."""
    import re

    return re.sub(r"\d+", _spell, text.lower().replace("-", " "))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after normalisation (jiwer)."""
    import jiwer

    tr = jiwer.Compose([jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                        jiwer.ReduceToListOfListOfWords()])
    return jiwer.wer(normalise(reference), normalise(hypothesis), reference_transform=tr, hypothesis_transform=tr)
