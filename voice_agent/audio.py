"""Audio as typed chunks, and WAV input/output with format conversion.

Internally the appliance works on 16 kHz, 16-bit, mono PCM. Anything else is converted on the way in (WAV files of
other rates, stereo, 8/24/32-bit) or rejected with a clear `AudioFormatError`."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioFormatError

RATE = 16000
WIDTH = 2
CHANNELS = 1
CHUNK_SAMPLES = 1280  # 80 ms: openWakeWord's native step, four 20 ms VAD frames


@dataclass(frozen=True)
class AudioChunk:
    """A slice of PCM audio. `timestamp_ms` is the stream position of its first sample."""

    audio: bytes
    rate: int = RATE
    width: int = WIDTH
    channels: int = CHANNELS
    timestamp_ms: float = 0.0

    @property
    def samples(self) -> int:
        return len(self.audio) // (self.width * self.channels)

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.samples / self.rate


@dataclass(frozen=True)
class AudioClip:
    """A whole recording at 16 kHz mono int16."""

    pcm: np.ndarray  # int16, shape (n,)
    rate: int = RATE

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.rate

    def chunks(self, samples: int = CHUNK_SAMPLES, start_ms: float = 0.0) -> list[AudioChunk]:
        out = []
        for i in range(0, len(self.pcm), samples):
            block = self.pcm[i : i + samples]
            if len(block) < samples:
                block = np.concatenate([block, np.zeros(samples - len(block), np.int16)])
            out.append(AudioChunk(block.tobytes(), timestamp_ms=start_ms + 1000.0 * i / self.rate))
        return out


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """High-quality resampling (soxr) of float32 or int16 mono audio; returns the input dtype."""
    if src_rate == dst_rate:
        return x
    import soxr

    dtype = x.dtype
    y = soxr.resample(x.astype(np.float32), src_rate, dst_rate)
    if dtype == np.int16:
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return y.astype(dtype)


def _decode_pcm(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:  # unsigned 8-bit
        x = (np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, "<i2")
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        v = b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16)
        v = np.where(v & 0x800000, v - 0x1000000, v)
        x = (v >> 8).astype(np.int16)
    elif width == 4:
        x = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    else:
        raise AudioFormatError(f"unsupported sample width {width * 8} bits", code="audio-unsupported-width")
    if channels > 1:
        x = x.reshape(-1, channels).astype(np.int32).mean(axis=1).astype(np.int16)
    return x


def decode_wav(data: bytes, name: str = "<audio>") -> AudioClip:
    """Decode WAV bytes to 16 kHz mono int16, converting rate, channels and width. Raises AudioFormatError."""
    if not data:
        raise AudioFormatError(f"{name}: the file is empty", code="audio-empty")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, width, channels, frames = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError, ValueError) as exc:
        raise AudioFormatError(f"{name}: not a readable PCM WAV file ({exc})", code="audio-not-wav") from exc
    if channels < 1 or rate < 4000 or rate > 384000:
        raise AudioFormatError(f"{name}: implausible header (rate {rate} Hz, {channels} channels)", code="audio-bad-header")
    usable = len(raw) - len(raw) % (width * channels)
    if usable == 0:
        raise AudioFormatError(f"{name}: the file holds no audio samples", code="audio-empty")
    pcm = _decode_pcm(raw[:usable], width, channels)
    return AudioClip(resample(pcm, rate, RATE))


def read_wav(path: str | Path) -> AudioClip:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise AudioFormatError(f"{p}: cannot read ({exc.strerror})", code="audio-unreadable") from exc
    return decode_wav(data, str(p))


def encode_wav(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    Path(path).write_bytes(encode_wav(pcm, rate))


def silence(ms: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(rate * ms / 1000), np.int16)
