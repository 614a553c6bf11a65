"""Audio as typed chunks, and WAV input/output with format conversion.

Internally the appliance works on 16 kHz, 16-bit, mono PCM. Anything else is converted on the way in (WAV files of
other rates, stereo, 8/24/32-bit integer or float, via libsndfile) or rejected with a clear `AudioFormatError`."""

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
MAX_SECONDS = 600  # longer recordings are cut: a turn is never this long


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


def decode_wav(data: bytes, name: str = "<audio>") -> AudioClip:
    """Decode WAV bytes (PCM 8/16/24/32-bit or float, any rate, any channels) to 16 kHz mono int16 with libsndfile.
    Raises AudioFormatError with a message naming the file."""
    import soundfile as sf

    if not data:
        raise AudioFormatError(f"{name}: the file is empty", code="audio-empty")
    if len(data) < 44 or data[:4] not in (b"RIFF", b"RIFX", b"RF64") or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{name}: not a WAV file (no RIFF/WAVE header)", code="audio-not-wav")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels = f.samplerate, f.channels
            if channels < 1 or not 4000 <= rate <= 384000:
                raise AudioFormatError(f"{name}: implausible header (rate {rate} Hz, {channels} channels)",
                                       code="audio-bad-header")
            if f.frames > rate * MAX_SECONDS * 2 and f.frames * channels > 1 << 31:
                raise AudioFormatError(f"{name}: claims {f.frames} frames, too long", code="audio-too-long")
            x = f.read(frames=rate * MAX_SECONDS, dtype="float32", always_2d=True)
    except AudioFormatError:
        raise
    except Exception as exc:  # libsndfile reports malformed files in several ways
        raise AudioFormatError(f"{name}: not a readable WAV file ({exc})", code="audio-not-wav") from exc
    if x.size == 0:
        raise AudioFormatError(f"{name}: the file holds no audio samples", code="audio-empty")
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)  # float WAVs may hold NaN/inf
    pcm = resample(np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16), rate, RATE)
    if pcm.size == 0:  # a few samples at a high rate resample to nothing
        raise AudioFormatError(f"{name}: too short to hold any audio at {RATE} Hz", code="audio-empty")
    return AudioClip(pcm)


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
