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
from .audio_io import FileSource
from .config import Config
from .errors import AudioDeviceError
from .privacy.journal import printed_view
from .shutdown import Deadline, settle
from .sounddev import SoundDeviceSource, SoundDeviceSpeaker

log = logging.getLogger(__name__)
# The whole stop is bounded by STOP_DEADLINE_S (systemd's TimeoutStopSec=20 in our unit kills us after that); its
# steps by their own, smaller bounds, so a hung peer costs a few seconds and still leaves the rest closed properly.
STOP_DEADLINE_S = 8.0
LISTENER_STOP_S = 2.0  # the microphone loop and the turn in flight
CLOSE_S = 4.0  # pipeline, MCP servers, LLM client, MQTT (offline message, disconnect), audit log
DEVICE_CLOSE_S = 1.0  # each audio device's stream; PortAudio is terminated at exit only once they are closed


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


async def run_live(cfg: Config, *, wake_enabled: bool = True, json_events: bool = False,
                   private_broker: bool = False) -> int:
    from .mqtt_topics import topics_for
    from .private_broker import start_if_wanted
    from .service import Notifier

    notifier = Notifier()
    notifier.status("loading models")
    engines = load_engines(cfg, wake=wake_enabled, progress=lambda m: (_say(f"… {m}"), notifier.status(m)))
    out_ok, out_name = has_device("output", cfg.audio.output_device)
    speaker = SoundDeviceSpeaker(cfg.audio.output_device)  # retries the device on every reply
    if not out_ok:
        _say(f"no playback device ({out_name}); replies are synthesised but not played until one appears")
    broker = start_if_wanted(cfg.mqtt, topics_for(cfg.mqtt, cfg.appliance).announce, _say) if private_broker else None
    app = await build_app(cfg, engines, speaker, wake_enabled=wake_enabled)
    app.bus.subscribe((json_printer if json_events else human_printer)(sys.stdout, printed_view()))
    stop = asyncio.Event()
    deadline = Deadline(STOP_DEADLINE_S)

    def on_signal() -> None:
        deadline.arm()  # from here on the process ends within STOP_DEADLINE_S, whatever hangs
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    watchdog = asyncio.create_task(notifier.watchdog_loop(lambda: not stop.is_set()))
    notifier.ready(f"listening for {cfg.wake.model}" if wake_enabled else "listening")
    _say(f"ready: say \"{cfg.wake.model.replace('_', ' ')}\" and a command (Ctrl-C stops)" if wake_enabled else "ready")

    sources: list[SoundDeviceSource] = []

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
            source = SoundDeviceSource(cfg.audio.input_device)
            sources[:] = [source]
            try:
                await app.appliance.run(source)
            except AudioDeviceError as exc:
                log.info("%s; retrying in %g s", exc, cfg.audio.device_retry_s)
                _say(f"microphone lost ({exc.message}); retrying in {cfg.audio.device_retry_s:g} s")
                await asyncio.sleep(cfg.audio.device_retry_s)
            finally:
                source.close()  # at once, also when cancelled: the stream closes on the device's own thread

    listener = asyncio.create_task(listen_forever())
    await stop.wait()
    notifier.stopping()
    _say("stopping")
    listener.cancel()
    watchdog.cancel()
    await settle(asyncio.gather(listener, watchdog, return_exceptions=True), LISTENER_STOP_S, "the microphone loop")
    await settle(app.aclose(), CLOSE_S, "closing the pipeline and its links")
    if broker is not None:
        broker.stop()  # after the link said goodbye on it
    speaker.close()
    for device in (*sources, speaker):
        await settle(device.wait_closed(), DEVICE_CLOSE_S, f"closing the {type(device).__name__}")
    notifier.close()
    _say("stopped")
    return 0
