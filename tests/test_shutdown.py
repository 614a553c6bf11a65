"""SIGTERM stops the real `voice-agent run` process cleanly in every state it can be in: exit code 0 within the bound
systemd needs (TimeoutStopSec=20 in our unit; a watchdog restart is a stop too), the audit log closed (its
write-ahead log checkpointed and removed), and the MQTT link closed with its `offline` message and a DISCONNECT.

The process runs on the ALSA test devices (tests/support/alsa.py) with a real mosquitto, real models, and real
server processes for the LLM. The microphone-back state (vanished, back, a command, SIGTERM) is
tests/test_faults.py::test_live_appliance_survives_its_microphone_vanishing_and_takes_a_command_when_it_returns."""

from __future__ import annotations

import time

import numpy as np
import pytest
from support.blackhole import BlackholeServer
from support.broker import Broker, Client
from support.live import STOP_BOUND_S, LiveAppliance
from support.openai_server import OpenAIServerProcess
from support.speech import espeak

from voice_agent.audio import silence

pytestmark = pytest.mark.slow
AVAILABILITY = "voice-agent/living_room/availability"
STORY = " ".join(f"Sentence number {n} of a long story about the sea and a lighthouse keeper." for n in range(1, 25))


def command(text: str) -> np.ndarray:
    return np.concatenate([silence(500), espeak(f"hey jarvis, {text}", voice="en-us+m3").pcm])


def stop_and_check(live: LiveAppliance, what: str, during: tuple[str, ...] = ()) -> float:
    """SIGTERM; `during`: event types that must have come, and no turn_end, by the time the signal is sent."""
    assert live.proc.poll() is None, f"the appliance died before the stop ({what}):\n{live.stderr()[-3000:]}"
    seen = [e["type"] for e in live.events.items]
    rc, took = live.terminate()
    if during:
        assert set(during) <= set(seen) and "turn_end" not in seen, f"{what}: not in that state: {seen}"
    log = live.stderr()
    assert rc == 0, f"{what}: exit {rc} after {took:.1f} s (bound {STOP_BOUND_S} s)\n{log[-4000:]}"
    assert "stopped" in log.splitlines(), log[-2000:]
    assert "Traceback" not in log, log[-4000:]
    assert live.audit_closed_cleanly(), f"{what}: the audit log was not closed"
    return took


def wait_online(sub: Client, live: LiveAppliance) -> None:
    assert sub.wait_for(lambda m: any(x.topic == AVAILABILITY and x.text == "online" for x in m), 180), \
        live.stderr()[-3000:]


def assert_mqtt_closed(sub: Client, broker: Broker) -> None:
    assert sub.wait_for(lambda m: bool(m) and m[-1].topic == AVAILABILITY and m[-1].text == "offline", 10), \
        "no offline message"
    log = broker.log_text()
    assert "Client voice-agent-living_room disconnected" in log, log[-2000:]


def test_sigterm_when_idle(broker, tmp_path):
    """(With --private-broker, as `make run` starts it: a broker is running, so it is used and none is started.)"""
    with LiveAppliance(tmp_path, broker, run_args=("--private-broker",)) as live, \
            Client(broker, [AVAILABILITY, "voice-agent/#"]) as sub:
        wait_online(sub, live)
        time.sleep(1)
        stop_and_check(live, "idle")
        assert_mqtt_closed(sub, broker)
    assert "private" not in live.stderr()


def test_sigterm_mid_turn(broker, tmp_path):
    """While the command is being transcribed and understood (right after the end of speech)."""
    with LiveAppliance(tmp_path, broker) as live, Client(broker, [AVAILABILITY]) as sub:
        wait_online(sub, live)
        live.say(command("turn off the kitchen lights"))
        assert live.events.wait_type("speech_end", 60), live.stderr()[-3000:]
        stop_and_check(live, "mid-turn", during=("speech_end",))
        assert_mqtt_closed(sub, broker)


def test_sigterm_while_speaking(broker, tmp_path):
    """While a long LLM reply streams in and is being synthesised and played."""
    script = {"rules": [{"when_user": ".", "reply": STORY}], "tokens_per_s": 30}
    with OpenAIServerProcess(script, tmp_path / "llm") as srv, \
            LiveAppliance(tmp_path, broker, llm_url=srv.base_url, llm_timeout_s=120) as live, \
            Client(broker, [AVAILABILITY]) as sub:
        wait_online(sub, live)
        live.say(command("tell me a long story about the sea"))
        assert live.events.wait_type("first_audio", 120), live.stderr()[-3000:]
        stop_and_check(live, "speaking", during=("first_audio",))
        assert_mqtt_closed(sub, broker)


def test_sigterm_after_the_microphone_vanished(broker, tmp_path):
    """The capture device is gone; the appliance is waiting for it to open again."""
    with LiveAppliance(tmp_path, broker) as live, Client(broker, [AVAILABILITY]) as sub:
        wait_online(sub, live)
        time.sleep(3)  # the capture stream is open and running
        live.mic.present.clear()
        assert live.wait_stderr("microphone lost", 30), live.stderr()[-3000:]
        time.sleep(3)  # past the retry delay: the new stream is being opened on a device with no audio
        stop_and_check(live, "microphone lost")
        assert_mqtt_closed(sub, broker)


def test_sigterm_with_the_broker_down(tmp_path):
    """Also what a newcomer sees with no broker: one line that says it is unreachable and how to fix it, however
    many reconnect attempts fail, and no debug noise."""
    down = Broker(tmp_path / "broker")  # configured, never started: nothing listens on its port
    with LiveAppliance(tmp_path, down) as live:
        assert live.wait_stderr("ready:", 180), live.stderr()[-3000:]
        time.sleep(6)  # several reconnect attempts (1 s, 2 s, 4 s backoff)
        stop_and_check(live, "broker down")
    lines = live.stderr().splitlines()
    unreachable = [line for line in lines if "unreachable" in line]
    assert len(unreachable) == 1 and "enabled = false" in unreachable[0], lines
    assert not [line for line in lines if line.startswith("DEBUG")], lines


def test_make_run_starts_a_private_broker_when_none_is_running_and_stops_it(tmp_path):
    """`make run` (voice-agent run --private-broker) on a machine whose configured local broker is not running:
    a private mosquitto is started on that port, announcements published there are spoken, and it is gone after the
    appliance stops."""
    from voice_agent.private_broker import listening

    down = Broker(tmp_path / "broker")  # the configured port, with nothing listening
    assert not listening(down.host, down.port)
    with LiveAppliance(tmp_path, down, run_args=("--private-broker",)) as live:
        assert live.wait_stderr("started a private MQTT broker", 180), live.stderr()[-3000:]
        with Client(down, [AVAILABILITY]) as sub:
            wait_online(sub, live)
            sub.publish("voice-agent/living_room/announce", "The washing machine has finished.")
            assert live.events.wait(lambda ev: any(e["type"] == "announcement" for e in ev), 60), live.stderr()
            assert live.events.wait(lambda ev: any(e["type"] == "tts_done" for e in ev), 60)
            stop_and_check(live, "private broker")
    assert not listening(down.host, down.port), "the private broker outlived the appliance"


def test_sigterm_while_the_llm_server_stalls(broker, tmp_path):
    """The LLM server accepted the request and never answers."""
    with BlackholeServer() as llm, LiveAppliance(tmp_path, broker, llm_url=llm.base_url, llm_timeout_s=300) as live, \
            Client(broker, [AVAILABILITY]) as sub:
        wait_online(sub, live)
        live.say(command("tell me a long story about the sea"))
        assert llm.wait_accepted(120), f"the LLM was never asked:\n{live.stderr()[-3000:]}"
        time.sleep(1)
        stop_and_check(live, "LLM stalled", during=("speech_end",))
        assert_mqtt_closed(sub, broker)
