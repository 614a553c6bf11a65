"""Where audio comes from and goes to: WAV files fed at microphone pace, sounddevice capture and playback (at the
device's native rate, resampled), and sinks that collect audio for `--out` and tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import numpy as np

from .audio import CHUNK_SAMPLES, RATE, AudioChunk, AudioClip, resample, silence
from .errors import AudioDeviceError

log = logging.getLogger(__name__)
STALL_S = 5.0  # a capture stream silent this long (no blocks at all) is reopened


class AudioSource(Protocol):
    def chunks(self) -> AsyncIterator[AudioChunk]: ...


class Speaker(Protocol):
    async def play(self, pcm: np.ndarray, rate: int) -> None: ...
    async def drain(self) -> None: ...
    def stop(self) -> None: ...


class FileSource:
    """Feeds clips as a microphone would: at real-time pace unless `fast`. After each clip it feeds trailing silence
    and then waits for `ready()` (the appliance finished the turn) before the next clip, like a person does."""

    def __init__(self, clips: Sequence[AudioClip], *, fast: bool = False, tail_ms: float = 1200,
                 ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self.clips, self.fast, self.tail_ms, self.ready = list(clips), fast, tail_ms, ready
        self.samples_fed = 0
        # The pace clock: stream sample n (counted over all clips) is scheduled to be captured at clock_t0 + n / RATE,
        # for the stretch being fed (the clock restarts after each wait for `ready`).
        self.clock_t0: float | None = None

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        t0 = self.clock_t0 = time.monotonic()
        for clip in self.clips:
            padded = AudioClip(np.concatenate([clip.pcm, silence(self.tail_ms)]))
            for chunk in padded.chunks(CHUNK_SAMPLES, 1000.0 * self.samples_fed / RATE):
                if not self.fast:  # handed over when its last sample is "captured", as a microphone does
                    delay = t0 + (self.samples_fed + chunk.samples) / RATE - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                self.samples_fed += chunk.samples
                yield chunk
            if self.ready is not None:
                await self.ready()
                t0 = time.monotonic() - self.samples_fed / RATE  # the wait is not audio: restart the pace clock
                self.clock_t0 = t0


class SoundDeviceSource:
    """Live microphone through sounddevice (PortAudio). Captures at the device's native rate and resamples to
    16 kHz. A missing or unplugged device raises AudioDeviceError; the appliance retries."""

    def __init__(self, device: str | int | None = None, block_ms: int = 80) -> None:
        self.device = _device_arg(device)
        self.block_ms = block_ms
        self.dropped_blocks = 0

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        import sounddevice as sd

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(maxsize=200)
        try:
            info = sd.query_devices(self.device, "input")
            rate = int(info["default_samplerate"]) or RATE
            try:
                sd.check_input_settings(self.device, channels=1, dtype="int16", samplerate=RATE)
                rate = RATE
            except Exception:
                pass
        except Exception as exc:
            raise AudioDeviceError(f"no usable capture device ({exc})", code="audio-no-input",
                                   fix="plug in a microphone or set audio.input_device") from exc

        def deliver(block: np.ndarray | None) -> None:  # event loop
            if block is not None and queue.full():  # the loop fell behind: drop the oldest audio, never block
                queue.get_nowait()
                self.dropped_blocks += 1
                if self.dropped_blocks in (1, 100, 1000):
                    log.warning("capture overrun: %d audio blocks dropped so far", self.dropped_blocks)
            queue.put_nowait(block)

        def callback(indata, frames, time_info, status):  # PortAudio thread
            if status:
                log.debug("capture status: %s", status)
            try:
                loop.call_soon_threadsafe(deliver, indata[:, 0].copy())
            except RuntimeError:  # loop closed
                pass

        def finished():
            try:
                loop.call_soon_threadsafe(deliver, None)
            except RuntimeError:
                pass

        try:
            stream = sd.InputStream(device=self.device, channels=1, dtype="int16", samplerate=rate,
                                    blocksize=int(rate * self.block_ms / 1000), callback=callback,
                                    finished_callback=finished)
            stream.start()
        except Exception as exc:
            raise AudioDeviceError(f"cannot open capture device ({exc})", code="audio-no-input",
                                   fix="check audio.input_device and `voice-agent doctor`") from exc
        pending = np.zeros(0, np.int16)
        pos = 0
        try:
            while True:
                try:
                    block = await asyncio.wait_for(queue.get(), STALL_S)
                except asyncio.TimeoutError:
                    raise AudioDeviceError(f"no audio from the capture device for {STALL_S:g} s",
                                           code="audio-device-stalled") from None
                if block is None:
                    raise AudioDeviceError("the capture device stopped (unplugged?)", code="audio-device-lost")
                pending = np.concatenate([pending, resample(block, rate, RATE)])
                while len(pending) >= CHUNK_SAMPLES:
                    out, pending = pending[:CHUNK_SAMPLES], pending[CHUNK_SAMPLES:]
                    yield AudioChunk(out.tobytes(), timestamp_ms=1000.0 * pos / RATE)
                    pos += CHUNK_SAMPLES
        finally:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)


class SoundDeviceSpeaker:
    """Playback through sounddevice at the device's rate. `stop()` cuts playback at once (barge-in)."""

    def __init__(self, device: str | int | None = None) -> None:
        self.device = _device_arg(device)
        self._stream = None
        self._rate = 0
        self._stopped = False
        self._warned = False
        self.played_samples = 0

    def _open(self, rate: int):
        import sounddevice as sd

        if self._stream is not None and self._rate == rate:
            return self._stream
        self.close()
        try:
            self._stream = sd.OutputStream(device=self.device, channels=1, dtype="int16", samplerate=rate)
            self._stream.start()
        except Exception as exc:
            self._stream = None
            raise AudioDeviceError(f"cannot open playback device ({exc})", code="audio-no-output",
                                   fix="check audio.output_device and `voice-agent doctor`") from exc
        self._rate = rate
        return self._stream

    async def play(self, pcm: np.ndarray, rate: int) -> None:
        """Play, or — with no usable device — log once and drop the audio; every call tries the device again, so
        a speaker plugged in later is picked up."""
        self._stopped = False
        try:
            stream = await asyncio.to_thread(self._open, rate)
            step = rate // 10  # write 100 ms at a time so stop() takes effect quickly
            for i in range(0, len(pcm), step):
                if self._stopped:
                    return
                await asyncio.to_thread(stream.write, np.ascontiguousarray(pcm[i : i + step]))
                self.played_samples += len(pcm[i : i + step])
            self._warned = False
        except Exception as exc:  # AudioDeviceError from _open, PortAudioError when unplugged mid-write
            self.close()
            if not self._warned:
                self._warned = True
                log.warning("playback device unavailable (%s); speech is dropped until it is back", exc)

    async def drain(self) -> None:
        return None  # stream.write blocks until the device accepted the audio

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close(ignore_errors=True)
            finally:
                self._stream = None


class CollectingSpeaker:
    """Collects what would be played (for `--out`, tests and benchmarks). With `realtime`, playing takes as long
    as the audio lasts, as a real speaker does; `stop()` drops the rest."""

    def __init__(self, realtime: bool = False, rate: int = 22050) -> None:
        self.realtime = realtime
        self.rate = rate
        self.parts: list[np.ndarray] = []
        self._stopped = False
        self.samples_at_stop: list[int] = []  # how much had been played each time stop() was called

    async def play(self, pcm: np.ndarray, rate: int) -> None:
        self._stopped = False
        if rate != self.rate:
            pcm = resample(pcm, rate, self.rate)
        step = self.rate // 10
        for i in range(0, len(pcm), step):
            if self._stopped:
                return
            part = pcm[i : i + step]
            self.parts.append(part)
            if self.realtime:
                await asyncio.sleep(len(part) / self.rate)

    async def drain(self) -> None:
        return None

    def stop(self) -> None:
        self._stopped = True
        self.samples_at_stop.append(sum(len(p) for p in self.parts))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.int16)


def _device_arg(device: str | int | None) -> str | int | None:
    if device in (None, ""):
        return None
    if isinstance(device, str) and device.isdigit():
        return int(device)
    return device
