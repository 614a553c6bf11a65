"""Where audio comes from and goes to: the source and speaker protocols, WAV files fed at microphone pace, and sinks
that collect audio for `--out` and tests. The live microphone and speaker are in `sounddev.py`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import numpy as np

from .audio import CHUNK_SAMPLES, RATE, AudioChunk, AudioClip, resample, silence

log = logging.getLogger(__name__)


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
