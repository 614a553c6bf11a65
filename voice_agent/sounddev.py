"""Live microphone and speaker through sounddevice (PortAudio), at the device's native rate, resampled.

Every PortAudio call that can touch a device (probe, open, start, write, abort, close) runs on a daemon thread of
the device's own (`DaemonWorker`), never on the event loop: an ALSA plugin or driver may block there indefinitely,
and the event loop must stay free to take signals, serve MQTT and the watchdog, and stop within a bounded time.

Capture blocks reach the loop through `_Handoff`, which keeps at most one wake-up of the loop in flight. A wake-up
per block would let a device that delivers audio far faster than real time (an unplugged device whose driver
returns empty reads at once) fill the loop's self-pipe, which asyncio's signal handling shares: SIGTERM would be
dropped. Such a runaway device is reported as lost, as are a device that stops delivering (stall) and one whose
stream ends."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from .audio import CHUNK_SAMPLES, RATE, AudioChunk, resample
from .daemon_worker import DaemonWorker
from .errors import AudioDeviceError

log = logging.getLogger(__name__)
STALL_S = 5.0  # a capture stream silent this long (no blocks at all) is reopened
RUNAWAY_WINDOW_S = 4.0  # this much audio arriving in under RUNAWAY_WINDOW_S / RUNAWAY_FACTOR of wall time ...
RUNAWAY_FACTOR = 4.0  # ... means the device runs far faster than any real clock: it is broken or gone
MAX_BLOCKS = 200  # capture blocks waiting for the loop (16 s at 80 ms); beyond that the oldest are dropped


def device_arg(device: str | int | None) -> str | int | None:
    if device in (None, ""):
        return None
    if isinstance(device, str) and device.isdigit():
        return int(device)
    return device


class _Handoff:
    """Capture blocks from PortAudio's callback thread to the event loop, plus how the stream ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: int) -> None:
        self._loop, self._rate = loop, rate
        self._lock = threading.Lock()
        self._blocks: collections.deque[np.ndarray] = collections.deque()
        self._end: AudioDeviceError | None = None
        self._wake_pending = False
        self._ready = asyncio.Event()
        self._window_start: float | None = None
        self._window_samples = 0
        self.dropped = 0

    # -- PortAudio's thread ----------------------------------------------------------------------------------
    def put(self, block: np.ndarray) -> bool:
        """Queue a block; False once the stream is over (the callback then aborts the stream)."""
        with self._lock:
            if self._end is not None:
                return False
            if self._runaway(len(block)):
                self._end_locked(AudioDeviceError(
                    "the capture device delivers audio far faster than real time (unplugged or broken?)",
                    code="audio-device-runaway"))
                return False
            if len(self._blocks) >= MAX_BLOCKS:  # the loop fell behind: drop the oldest audio, never block
                self._blocks.popleft()
                self.dropped += 1
            self._blocks.append(block)
            self._wake_locked()
            return True

    def end(self, error: AudioDeviceError) -> None:
        with self._lock:
            self._end_locked(error)

    def _runaway(self, samples: int) -> bool:
        now = time.monotonic()
        if self._window_start is None:
            self._window_start = now
        self._window_samples += samples
        if self._window_samples < RUNAWAY_WINDOW_S * self._rate:
            return False
        too_fast = now - self._window_start < RUNAWAY_WINDOW_S / RUNAWAY_FACTOR
        self._window_start, self._window_samples = now, 0
        return too_fast

    def _end_locked(self, error: AudioDeviceError) -> None:
        if self._end is None:
            self._end = error
            self._wake_locked()

    def _wake_locked(self) -> None:
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._woken)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    # -- the event loop ----------------------------------------------------------------------------------------
    def _woken(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()

    async def get(self, stall_s: float) -> np.ndarray:
        """The next block. Raises AudioDeviceError when the stream ended, ran away or stalled for `stall_s`."""
        while True:
            with self._lock:
                if self._blocks:
                    return self._blocks.popleft()
                if self._end is not None:
                    raise self._end
                self._ready.clear()
            try:
                async with asyncio.timeout(stall_s):  # not wait_for: on 3.11 it can swallow a cancellation
                    await self._ready.wait()
            except TimeoutError:
                raise AudioDeviceError(f"no audio from the capture device for {stall_s:g} s",
                                       code="audio-device-stalled") from None


class _Capture:
    """One capture stream's PortAudio side; every method runs on the source's DaemonWorker."""

    def __init__(self, device: str | int | None) -> None:
        self.device = device
        self.stream: Any = None
        self.closed = False

    def probe(self) -> int:
        """The rate to capture at: 16 kHz if the device takes it, else its default rate."""
        import sounddevice as sd

        try:
            info = sd.query_devices(self.device, "input")
        except Exception as exc:
            raise AudioDeviceError(f"no usable capture device ({exc})", code="audio-no-input",
                                   fix="plug in a microphone or set audio.input_device") from exc
        try:
            sd.check_input_settings(self.device, channels=1, dtype="int16", samplerate=RATE)
            return RATE
        except Exception:
            return int(info["default_samplerate"]) or RATE

    def open(self, rate: int, block_ms: int, handoff: _Handoff) -> None:
        import sounddevice as sd

        def callback(indata, frames, time_info, status):  # PortAudio's thread
            if status:
                log.debug("capture status: %s", status)
            if not handoff.put(indata[:, 0].copy()):
                raise sd.CallbackAbort

        def finished() -> None:
            handoff.end(AudioDeviceError("the capture device stopped (unplugged?)", code="audio-device-lost"))

        if self.closed:  # the source was closed while this call waited its turn
            return
        try:
            self.stream = sd.InputStream(device=self.device, channels=1, dtype="int16", samplerate=rate,
                                         blocksize=int(rate * block_ms / 1000), callback=callback,
                                         finished_callback=finished)
            self.stream.start()
        except Exception as exc:
            self.close()
            raise AudioDeviceError(f"cannot open capture device ({exc})", code="audio-no-input",
                                   fix="check audio.input_device and `voice-agent doctor`") from exc

    def close(self) -> None:
        self.closed = True
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.abort(ignore_errors=True)  # abort, not stop: stop waits for a read that may never return
            stream.close(ignore_errors=True)


class SoundDeviceSource:
    """The live microphone. A missing, unplugged, stalled or runaway device raises AudioDeviceError; the caller
    retries with a new source. `close()` never blocks: the stream is closed on the device's own thread."""

    def __init__(self, device: str | int | None = None, block_ms: int = 80) -> None:
        self.device = device_arg(device)
        self.block_ms = block_ms
        self.dropped_blocks = 0
        self._worker = DaemonWorker("capture-device")
        self._capture = _Capture(self.device)
        self._closed = False

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        loop = asyncio.get_running_loop()
        try:
            rate = await self._worker.call(self._capture.probe)
            handoff = _Handoff(loop, rate)
            await self._worker.call(self._capture.open, rate, self.block_ms, handoff)
            pending = np.zeros(0, np.int16)
            pos = 0
            while True:
                block = await handoff.get(STALL_S)
                if handoff.dropped != self.dropped_blocks:
                    self.dropped_blocks = handoff.dropped
                    if self.dropped_blocks in (1, 100, 1000):
                        log.warning("capture overrun: %d audio blocks dropped so far", self.dropped_blocks)
                pending = np.concatenate([pending, resample(block, rate, RATE)])
                while len(pending) >= CHUNK_SAMPLES:
                    out, pending = pending[:CHUNK_SAMPLES], pending[CHUNK_SAMPLES:]
                    yield AudioChunk(out.tobytes(), timestamp_ms=1000.0 * pos / RATE)
                    pos += CHUNK_SAMPLES
        finally:
            self.close()

    def close(self) -> None:
        """Abort and close the stream on the device thread (after an open still in progress); returns at once."""
        if not self._closed:
            self._closed = True
            self._capture.closed = True  # an open still queued will not start
            self._worker.submit(self._capture.close)
            self._worker.stop()

    async def wait_closed(self) -> None:
        """After `close()`: until the stream is closed and the device thread has ended."""
        await self._worker.wait_stopped()


class SoundDeviceSpeaker:
    """Playback through sounddevice at the device's rate. `stop()` cuts playback at once (barge-in). Opening and
    writing run on the speaker's own daemon thread."""

    def __init__(self, device: str | int | None = None) -> None:
        self.device = device_arg(device)
        self._stream: Any = None
        self._rate = 0
        self._stopped = False
        self._warned = False
        self._worker = DaemonWorker("playback-device")
        self._closed = False
        self.played_samples = 0

    def _open(self, rate: int) -> Any:  # the worker thread
        import sounddevice as sd

        if self._stream is not None and self._rate == rate:
            return self._stream
        self._close()
        try:
            self._stream = sd.OutputStream(device=self.device, channels=1, dtype="int16", samplerate=rate)
            self._stream.start()
        except Exception as exc:
            self._stream = None
            raise AudioDeviceError(f"cannot open playback device ({exc})", code="audio-no-output",
                                   fix="check audio.output_device and `voice-agent doctor`") from exc
        self._rate = rate
        return self._stream

    def _close(self) -> None:  # the worker thread
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)

    async def play(self, pcm: np.ndarray, rate: int) -> None:
        """Play, or — with no usable device — log once and drop the audio; every call tries the device again, so
        a speaker plugged in later is picked up."""
        if self._closed:
            return
        self._stopped = False
        try:
            stream = await self._worker.call(self._open, rate)
            step = rate // 10  # write 100 ms at a time so stop() takes effect quickly
            for i in range(0, len(pcm), step):
                if self._stopped:
                    return
                await self._worker.call(stream.write, np.ascontiguousarray(pcm[i : i + step]))
                self.played_samples += len(pcm[i : i + step])
            self._warned = False
        except AudioDeviceError as exc:
            self._unavailable(exc)
        except Exception as exc:  # PortAudioError when unplugged mid-write
            self._worker.submit(self._close)
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("playback device unavailable (%s); speech is dropped until it is back", exc)

    async def drain(self) -> None:
        return None  # stream.write blocks until the device accepted the audio

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        """Close the stream on the device thread (after a write in progress); returns at once."""
        if not self._closed:
            self._closed = self._stopped = True
            self._worker.submit(self._close)
            self._worker.stop()

    async def wait_closed(self) -> None:
        """After `close()`: until the stream is closed and the device thread has ended."""
        await self._worker.wait_stopped()
