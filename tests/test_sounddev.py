"""The live microphone's hand-over from PortAudio's thread to the event loop (voice_agent/sounddev.py), exercised
with real threads, a real event loop and real signals. The whole device path runs in tests/test_shutdown.py."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import numpy as np
import pytest

from voice_agent.errors import AudioDeviceError
from voice_agent.sounddev import RUNAWAY_WINDOW_S, _Handoff

BLOCK = np.zeros(1280, np.int16)  # 80 ms at 16 kHz


def test_a_cancel_that_arrives_with_a_block_is_not_swallowed():
    """The stop of `voice-agent run` cancels the capture loop while blocks keep arriving. A block and the cancel in
    the same loop iteration must still end the waiting task (asyncio.wait_for on 3.11 returned the block instead)."""

    async def main() -> int:
        swallowed = 0
        for _ in range(50):
            handoff = _Handoff(asyncio.get_running_loop(), 16000)
            task = asyncio.create_task(handoff.get(5.0))
            await asyncio.sleep(0)  # the task now waits for a block
            handoff.put(BLOCK)
            await asyncio.sleep(0)  # the block's wake-up runs: the task is ready to return it ...
            task.cancel()  # ... when the cancel arrives
            try:
                await task
                swallowed += 1
            except asyncio.CancelledError:
                pass
        return swallowed

    assert asyncio.run(main()) == 0


def test_a_device_flooding_blocks_does_not_drop_a_signal():
    """A device that delivers blocks far faster than real time (rate set so that the runaway check does not end
    it here) must not fill the loop's self-pipe: asyncio's signal handling writes to the same pipe."""

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        handoff = _Handoff(loop, 10**9)
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, got.set)
        stop = threading.Event()

        def flood() -> None:
            n = 0
            while not stop.is_set():
                handoff.put(BLOCK)
                n += 1
                if n == 20000:
                    os.kill(os.getpid(), signal.SIGUSR1)

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            async with asyncio.timeout(10):
                while not got.is_set():
                    try:
                        await handoff.get(1.0)
                    except AudioDeviceError:
                        pass
                    await asyncio.sleep(0.01)  # a busy loop that falls behind, as under load
            return True
        except TimeoutError:
            return False
        finally:
            stop.set()
            t.join(5)
            loop.remove_signal_handler(signal.SIGUSR1)

    assert asyncio.run(main()), "SIGUSR1 never reached the event loop"


def test_a_runaway_device_is_reported_lost_and_a_real_time_one_is_not():
    async def main() -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        fast = _Handoff(loop, 16000)
        for _ in range(int(RUNAWAY_WINDOW_S / 0.08) + 1):
            if not fast.put(BLOCK):
                break
        with pytest.raises(AudioDeviceError) as err:
            while True:
                await fast.get(1.0)
        paced = _Handoff(loop, 16000)
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < RUNAWAY_WINDOW_S * 1.5:  # real time, in 80 ms blocks
            assert paced.put(BLOCK)
            await paced.get(1.0)
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * 0.08 - time.monotonic()))
        return err.value.code, n

    code, n = asyncio.run(main())
    assert code == "audio-device-runaway"
    assert n >= RUNAWAY_WINDOW_S / 0.08  # the paced device delivered more than one window and was never refused


def test_a_silent_device_is_reported_stalled():
    async def main() -> str:
        handoff = _Handoff(asyncio.get_running_loop(), 16000)
        with pytest.raises(AudioDeviceError) as err:
            await handoff.get(0.2)
        return err.value.code

    assert asyncio.run(main()) == "audio-device-stalled"
