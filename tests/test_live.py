"""`voice-agent run` as a real process on ALSA test devices (file capture, file playback) through sounddevice, with
a real mosquitto: a spoken command switches the light; an announcement published on the broker comes out of the
speaker as speech (checked by transcribing the playback file back); a malformed payload changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support.alsa import make_alsa_home
from support.live import STOP_BOUND_S, Events, write_config
from support.broker import Client
from support.speech import espeak
from voice_agent.audio import silence

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def live(tmp_path, broker):
    procs, feeders = [], []

    def start(capture: np.ndarray, extra_config: str = "", env_extra: dict | None = None):
        home = tmp_path / "home"
        feeder, playback = make_alsa_home(home, capture)
        feeders.append(feeder)
        cfg = write_config(tmp_path / "config.toml", broker, tmp_path / "data", extra_config)
        env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
        for var in ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM"):  # not under systemd: -v shows text
            env.pop(var, None)
        env.update(env_extra or {})
        # -v: the printed events carry what was said and announced (checked below by their text; issue 11)
        proc = subprocess.Popen([sys.executable, "-m", "voice_agent.cli", "--config", str(cfg), "-v", "run", "--json"],
                                stdout=subprocess.PIPE, stderr=open(tmp_path / "stderr.log", "w"), text=True, env=env,
                                cwd=ROOT)
        procs.append(proc)
        return proc, Events(proc), playback

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for f in feeders:
        f.stop()


def test_live_loop_command_and_announcement(live, broker, engines, tmp_path):
    command = espeak("hey jarvis, turn off the kitchen lights", voice="en-us+m3").pcm
    capture = np.concatenate([silence(1500), command])
    with Client(broker, ["zigbee2mqtt/#", "voice-agent/#"]) as sub:
        proc, events, playback = live(capture)
        assert events.wait(lambda ev: any(e["type"] == "turn_end" for e in ev), 120), (tmp_path / "stderr.log").read_text()
        assert sub.wait_for(lambda m: any(x.topic == "zigbee2mqtt/kitchen_light/set" for x in m), 20)
        assert json.loads(sub.on("zigbee2mqtt/kitchen_light/set")[0].payload) == {"state": "OFF"}
        assert any(e["type"] == "first_audio" for e in events.items)

        # malformed payloads change nothing; a good announcement is spoken through the speaker path
        before = len(events.items)
        for bad in (b"\xff\xfe\x00bad", b'{"text": ', b"x" * 10000, b'{"priority": "urgent"}'):
            sub.publish("voice-agent/living_room/announce", bad)
        sub.publish("voice-agent/living_room/announce", json.dumps({"text": "The washing machine has finished."}))
        assert events.wait(lambda ev: any(e["type"] == "announcement" for e in ev[before:]), 60)
        announced = [e for e in events.items[before:] if e["type"] == "announcement"]
        assert [a["text"] for a in announced] == ["The washing machine has finished."]
        assert not [e for e in events.items[before:] if e["type"] == "tool_call"]
        # its speech (not only the chime before it, 240 ms) has been handed to the device once its tts_done comes
        start = events.items.index(announced[0])
        assert events.wait(lambda ev: any(e["type"] == "tts_done" and e["audio_ms"] > 1000 for e in ev[start:]), 60), \
            events.items[start:]
        assert proc.poll() is None, "the appliance died"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_BOUND_S) == 0

    played = np.frombuffer(playback.read_bytes(), np.int16)
    from voice_agent.audio import resample

    text = engines.stt.transcribe(resample(played, 22050, 16000)).text.lower()
    assert "kitchen light" in text and "washing machine" in text, text


def test_systemd_notify_ready_after_models_then_watchdog_and_stopping(live, tmp_path):
    """`voice-agent run` under Type=notify: READY=1 only once models are loaded and warm, watchdog pings from the
    event loop at WATCHDOG_USEC/2, STOPPING=1 on SIGTERM. The socket is a real unix datagram socket."""
    import socket

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(120)
    proc, events, _ = live(silence(1000), env_extra={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []
    while not any(m.startswith("READY=1") or "\nREADY=1" in m for m in messages):
        messages.append(sock.recv(4096).decode())
    stderr = (tmp_path / "stderr.log").read_text()
    assert "models ready" in stderr, "READY=1 came before the models were loaded"
    assert any("STATUS=loading" in m for m in messages[:-1]), messages
    pings = 0
    while pings < 3:
        if "WATCHDOG=1" in sock.recv(4096).decode():
            pings += 1
    proc.send_signal(signal.SIGTERM)
    rest = []
    while not any("STOPPING=1" in m for m in rest):
        rest.append(sock.recv(4096).decode())
    assert proc.wait(STOP_BOUND_S) == 0
    sock.close()
