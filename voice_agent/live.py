"""`voice-agent run`: the live appliance. Microphone and speaker through sounddevice, with retries when a device is
missing or unplugged; MQTT announcements; systemd readiness and watchdog."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from importlib import resources

from .app import build_app, human_printer, json_printer, load_engines
from .audio import read_wav
from .audio_io import FileSource, SoundDeviceSource, SoundDeviceSpeaker
from .config import Config
from .errors import AudioDeviceError
from .privacy.journal import printed_view

log = logging.getLogger(__name__)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def has_device(kind: str, device: str) -> tuple[bool, str]:
    """Is there a usable capture ("input") or playback ("output") device? Returns (ok, detail)."""
    try:
        import sounddevice as sd

        arg = int(device) if device.isdigit() else (device or None)
        info = sd.query_devices(arg, kind)
        return True, str(info["name"])
    except Exception as exc:  # PortAudio raises several kinds
        return False, str(exc) or f"no {kind} device"


async def run_live(cfg: Config, *, wake_enabled: bool = True, json_events: bool = False) -> int:
    from .service import Notifier

    notifier = Notifier()
    notifier.status("loading models")
    engines = load_engines(cfg, wake=wake_enabled, progress=lambda m: (_say(f"… {m}"), notifier.status(m)))
    out_ok, out_name = has_device("output", cfg.audio.output_device)
    speaker = SoundDeviceSpeaker(cfg.audio.output_device)  # retries the device on every reply
    if not out_ok:
        _say(f"no playback device ({out_name}); replies are synthesised but not played until one appears")
    app = await build_app(cfg, engines, speaker, wake_enabled=wake_enabled)
    app.bus.subscribe((json_printer if json_events else human_printer)(sys.stdout, printed_view()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchdog = asyncio.create_task(notifier.watchdog_loop(lambda: not stop.is_set()))
    notifier.ready(f"listening for {cfg.wake.model}" if wake_enabled else "listening")
    _say(f"ready: say \"{cfg.wake.model.replace('_', ' ')}\" and a command (Ctrl-C stops)" if wake_enabled else "ready")

    async def listen_forever() -> None:
        demo_done = False
        while not stop.is_set():
            in_ok, detail = has_device("input", cfg.audio.input_device)
            if not in_ok:
                if not demo_done:
                    demo_done = True
                    _say(f"no capture device ({detail}).\nrunning one turn on the bundled sample recording instead:")
                    sample = read_wav(str(resources.files("voice_agent").joinpath("data/sample_command.wav")))
                    await app.appliance.run(FileSource([sample], ready=app.appliance.wait_ready))
                    _say(f"waiting for a microphone (retrying every {cfg.audio.device_retry_s:g} s); "
                         "announcements over MQTT still work. Ctrl-C stops.")
                await asyncio.sleep(cfg.audio.device_retry_s)
                continue
            try:
                await app.appliance.run(SoundDeviceSource(cfg.audio.input_device))
            except AudioDeviceError as exc:
                log.warning("%s; retrying in %g s", exc, cfg.audio.device_retry_s)
                _say(f"microphone lost ({exc.message}); retrying in {cfg.audio.device_retry_s:g} s")
                await asyncio.sleep(cfg.audio.device_retry_s)

    listener = asyncio.create_task(listen_forever())
    await stop.wait()
    notifier.stopping()
    listener.cancel()
    watchdog.cancel()
    await asyncio.gather(listener, watchdog, return_exceptions=True)
    await app.aclose()
    _say("stopped")
    return 0
