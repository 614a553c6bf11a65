"""The benchmark's spoken command set: home commands said by several espeak-ng voices (never the appliance's own Piper
voice), clean and with fan-like noise, each with its known text and the true end of speech; plus ≥30 s of audio
without the wake word for the listening-CPU measurement. espeak-ng output is cached under
`~/.cache/voice-agent/bench`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import RATE, read_wav, silence
from ..errors import VoiceAgentError

WAKE_PHRASE = "hey jarvis"
VOICES = ("en-us", "en-us+f3", "en-us+m3", "en+f4")
QUICK_VOICES = ("en-us+f3",)
NOISE_SNR_DB = 20.0

# What a person says after the wake word. The expected intent is what the appliance's own local parser makes of the
# exact text (see pipeline.py), so the benchmark checks recognition without a second hand-written truth table.
COMMANDS = (
    "turn off the kitchen light",
    "lock the front door",
    "set the thermostat to 21 degrees",
    "set a timer for five minutes",
    "set the living room lamp to 40 percent",
    "what time is it",
    "close the garage door",
    "turn on the living room lamp",
)
QUICK_COMMANDS = ("turn off the kitchen light", "what time is it")

# Sentences without the wake word, for the listening-CPU window (said while the appliance only waits for the word).
CHATTER = (
    "I think we should have pasta for dinner tonight, with a green salad on the side.",
    "The train was late again this morning, so I missed the first half of the meeting.",
    "Could you pass me the newspaper? I want to read the article about the new library.",
    "My sister is coming to visit next weekend, and she is bringing her two dogs.",
    "The garden needs watering, the tomatoes look thirsty after three hot days.",
    "Remember to buy milk, eggs, bread and some coffee on your way back home.",
)


class BenchError(VoiceAgentError):
    """The benchmark could not prepare or run something (a tool missing, a server that did not start)."""


@dataclass(frozen=True)
class CommandClip:
    """One spoken command: `pcm` is 16 kHz int16 mono with leading/trailing silence; `speech_end_ms` is where the
    voice truly stops (from the clean signal, so noise does not move it)."""

    id: str
    text: str  # what follows the wake word
    voice: str
    noisy: bool
    pcm: np.ndarray
    speech_end_ms: float

    @property
    def spoken(self) -> str:
        return f"{WAKE_PHRASE}, {self.text}"

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.pcm) / RATE


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    d = base / "voice-agent" / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def espeak_pcm(text: str, voice: str, speed: int = 150) -> np.ndarray:
    """espeak-ng speech as 16 kHz int16 (cached)."""
    exe = shutil.which("espeak-ng")
    key = hashlib.sha1(f"{text}|{voice}|{speed}".encode()).hexdigest()[:16]
    wav = cache_dir() / f"espeak-{key}.wav"
    if not wav.is_file():
        if exe is None:
            raise BenchError("espeak-ng is not installed; the benchmark speaks its commands with it",
                             code="bench-no-espeak", fix="apt-get install espeak-ng  (or: make setup)")
        tmp = wav.with_name(wav.name + ".tmp")
        try:
            subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True,
                           capture_output=True, timeout=60)
        except subprocess.CalledProcessError as exc:
            raise BenchError(f"espeak-ng failed for voice {voice!r}: {exc.stderr.decode(errors='replace').strip()}",
                             code="bench-espeak-failed") from exc
        tmp.replace(wav)
    return read_wav(wav).pcm


def speech_end_ms(pcm: np.ndarray, floor_db: float = -40.0, frame_ms: int = 10) -> float:
    """End of the last 10 ms frame whose RMS is within `floor_db` of the loudest frame."""
    n = RATE * frame_ms // 1000
    frames = pcm[: len(pcm) - len(pcm) % n].astype(np.float32).reshape(-1, n)
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-9
    voiced = np.nonzero(20 * np.log10(rms / rms.max()) > floor_db)[0]
    return float((voiced[-1] + 1) * frame_ms) if len(voiced) else 0.0


def fan_noise(n: int, seed: int) -> np.ndarray:
    """Stationary noise like a fan or fridge: pink-ish noise plus mains hum, unit power."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum /= np.sqrt(np.maximum(f, 50.0))  # 1/f power
    pink = np.fft.irfft(spectrum, n)
    hum = 0.3 * np.sin(2 * np.pi * 100 * np.arange(n) / RATE)
    x = pink / pink.std() + hum
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def add_noise(pcm: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    x = pcm.astype(np.float32)
    loud = np.abs(x) > 500
    power = float(np.mean(x[loud] ** 2)) if loud.any() else float(np.mean(x**2))
    noise = fan_noise(len(x), seed) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(x + noise, -32768, 32767).astype(np.int16)


def command_clip(text: str, voice: str, noisy: bool, lead_ms: int = 400, tail_ms: int = 1000,
                 wake: bool = True) -> CommandClip:
    spoken = f"{WAKE_PHRASE}, {text}" if wake else text
    pcm = espeak_pcm(spoken, voice)
    end = speech_end_ms(pcm)
    pcm = np.concatenate([silence(lead_ms), pcm[: int(end * RATE / 1000)], silence(tail_ms)])
    if noisy:
        pcm = add_noise(pcm, NOISE_SNR_DB, seed=int(hashlib.sha1(spoken.encode()).hexdigest()[:6], 16))
    cid = f"{voice}{'/noisy' if noisy else ''}/{text}"
    return CommandClip(cid, text, voice, noisy, pcm, lead_ms + end)


def command_set(quick: bool = False) -> list[CommandClip]:
    """The commands × voices × (clean, noisy). Quick: two commands, one voice, clean and noisy."""
    commands, voices = (QUICK_COMMANDS, QUICK_VOICES) if quick else (COMMANDS, VOICES)
    return [command_clip(c, v, noisy) for noisy in (False, True) for v in voices for c in commands]


def babble(seconds: float, seed: int = 7) -> np.ndarray:
    """Speech-like noise: several chatter sentences by different voices, reversed and overlapped (no words, and
    never the wake word), at a moderate level."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    out = np.zeros(n, np.float32)
    talkers = [espeak_pcm(s, VOICES[i % len(VOICES)])[::-1].astype(np.float32) for i, s in enumerate(CHATTER)]
    for k in range(4):  # four overlapping talkers
        pos = int(rng.integers(0, RATE))
        while pos < n:
            t = talkers[int(rng.integers(len(talkers)))]
            m = min(len(t), n - pos)
            out[pos : pos + m] += t[:m]
            pos += m + int(rng.integers(RATE // 10, RATE // 2))
    out *= 3000.0 / (np.sqrt(np.mean(out**2)) + 1e-9)
    return np.clip(out, -32768, 32767).astype(np.int16)


def non_wake_audio(seconds: float) -> list[np.ndarray]:
    """At least `seconds` of audio with no wake word: babble, then chatter sentences, then babble with fan noise."""
    part = max(1.0, seconds / 3)
    clips = [babble(part)]
    sentences: list[np.ndarray] = []
    total = 0.0
    i = 0
    while total < part:
        pcm = espeak_pcm(CHATTER[i % len(CHATTER)], VOICES[i % len(VOICES)])
        sentences.append(np.concatenate([pcm, silence(400)]))
        total += len(sentences[-1]) / RATE
        i += 1
    clips.append(np.concatenate(sentences))
    clips.append(add_noise(babble(part, seed=11), 10.0, seed=3))
    return clips
