"""ALSA test devices: the default capture device reads raw 16 kHz s16le audio from a FIFO that a feeder thread
fills at real-time pace (as a microphone delivers it), and the default playback device writes raw s16le to a file.
No sound card needed; the real sounddevice/PortAudio path runs in a child process whose HOME holds the .asoundrc."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

ASOUNDRC = """\
pcm.!default {{
  type asym
  playback.pcm "agentout"
  capture.pcm "agentin"
}}
pcm.agentout {{
  type file
  slave.pcm "null"
  file "{out}"
  format "raw"
}}
pcm.agentin {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{inp}"
  format "raw"
}}
"""


class CaptureFeeder(threading.Thread):
    """Writes audio into the capture FIFO at real-time pace, then silence until stopped. ALSA opens the device
    several times while PortAudio enumerates devices; each reopen just continues the stream."""

    def __init__(self, fifo: Path, pcm: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.fifo, self.data = fifo, np.asarray(pcm, np.int16).tobytes()
        self.stopped = threading.Event()
        self.fed_bytes = 0

    def run(self) -> None:
        silence = b"\x00" * 2560
        t0 = None
        while not self.stopped.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.02)
                continue
            os.set_blocking(fd, True)
            try:
                t0 = t0 or time.monotonic()
                while not self.stopped.is_set():
                    block = self.data[self.fed_bytes : self.fed_bytes + 2560] or silence
                    os.write(fd, block)
                    self.fed_bytes += len(block)
                    delay = t0 + self.fed_bytes / 32000 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            except (BrokenPipeError, OSError):
                pass
            finally:
                os.close(fd)

    def stop(self) -> None:
        self.stopped.set()


class SwitchableMic(threading.Thread):
    """The capture FIFO's writer (the 'microphone'), which can vanish and come back with new audio."""

    def __init__(self, fifo: Path) -> None:
        super().__init__(daemon=True)
        self.fifo = fifo
        self.present = threading.Event()
        self.present.set()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.queue = b""
        self.connections = 0

    def say(self, pcm: np.ndarray) -> None:
        with self.lock:
            self.queue += np.asarray(pcm, np.int16).tobytes()

    def run(self) -> None:
        while not self.stopped.is_set():
            if not self.present.is_set():
                time.sleep(0.05)
                continue
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.02)
                continue
            os.set_blocking(fd, True)
            self.connections += 1
            t0, fed = time.monotonic(), 0
            try:
                while self.present.is_set() and not self.stopped.is_set():
                    with self.lock:
                        block, self.queue = self.queue[:2560], self.queue[2560:]
                    block = block.ljust(2560, b"\0")
                    os.write(fd, block)
                    fed += len(block)
                    delay = t0 + fed / 32000 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            except OSError:
                pass
            finally:
                os.close(fd)  # the reader now sees end-of-file: the device is gone


def make_alsa_home(home: Path, capture: np.ndarray) -> tuple[CaptureFeeder, Path]:
    """Write .asoundrc and the capture FIFO into `home`; returns (started feeder, playback_file)."""
    home.mkdir(parents=True, exist_ok=True)
    fifo, out = home / "capture.fifo", home / "playback.raw"
    if not fifo.exists():
        os.mkfifo(fifo)
    (home / ".asoundrc").write_text(ASOUNDRC.format(out=out, inp=fifo))
    feeder = CaptureFeeder(fifo, capture)
    feeder.start()
    return feeder, out
