"""A whole day with the appliance, checked for privacy (issue 11): the real `voice-agent run -v` as systemd starts it
(INVOCATION_ID and JOURNAL_STREAM set; stdout and stderr captured as the journal would keep them), a microphone
(ALSA capture from a FIFO) on which a person speaks whenever the appliance is idle, a real mosquitto with a
subscriber on `#`, the home MCP server (mail) and a scripted OpenAI-compatible LLM server.

The day: a device command; a PIN-protected action and its spoken answer with the PIN; "read my latest email" (the
LLM reads it through MCP and quotes it); a sentence with a bank PIN and a pregnancy; an announcement over MQTT.
Afterwards no transcript, argument, result, reply or PIN text may appear on any MQTT topic (device commands aside,
which carry only the device state), in the journal, or in Home Assistant's discovery configs; the data dir never
holds the PIN, and after `voice-agent log --forget` none of the day's text at all. Positive controls: the LLM
server received the words and the mail body (so they existed in the process), and the day's events all happened."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.alsa import ASOUNDRC, SwitchableMic
from support.broker import Broker, Client
from support.openai_server import OpenAIServerProcess
from support.speech import espeak


from voice_agent.privacy.redact import DIGIT_RUN, digits_of, near

ROOT = Path(__file__).resolve().parent.parent
HOME_MCP = ROOT / "tests/support/home_mcp_server.py"

SCRIPT = {
    "model": "day-model",
    "rules": [
        {"when_user": "mail|e-mail", "tool_calls": [{"name": "mail_read", "arguments": {"id": "m1"}}]},
        {"when_tool": "", "tool_name": "mail_read", "reply": "Your mother writes: {tool_result}"},
        # the PIN sentence leads to an action, so what was said (with the PIN) is written to the audit log
        {"when_user": "pregnan", "tool_calls": [{"name": "mail_list", "arguments": {}}]},
        {"when_tool": "", "tool_name": "mail_list", "reply": "Congratulations, and take good care of yourself."},
    ],
    "fallback": "Congratulations, and take good care of yourself.",
}
# text that must stay inside the process unless opted in: said, read, replied, the PIN
MARKERS = ("pregnant", "bank", "latest", "sunday", "bring the kids", "mom@family", "congratulations",
           "prescription", "pharmacy", "front door", "kitchen light", "turned off", "4711", "four seven", "47 11",
           "4-7-1-1", "your pin")
DEVICE_PAYLOADS = {'{"state": "OFF"}', '{"state": "ON"}', '{"state": "LOCK"}', '{"state": "UNLOCK"}'}


def feed_of(sub: Client) -> list[dict]:
    return [json.loads(m.payload) for m in sub.on("voice-agent/living_room/event")]


def write_config(path: Path, broker: Broker, llm_url: str, data: Path, ledger: Path) -> Path:
    home = (ROOT / "tests/data/home.toml").read_text()
    home = home.replace('[mqtt]\nhost = "127.0.0.1"\nport = 1883', f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}')
    home = home.replace("[appliance]\n", f'[appliance]\ndata_dir = "{data}"\n')
    home = home.replace('base_url = "http://127.0.0.1:8000/v1"', f'base_url = "{llm_url}"')
    home = home.replace('model = "default"', 'model = "day-model"')
    home += (f'\n[safety]\npin = "4711"\nconfirm_timeout_s = 30\n\n[[mcp_servers]]\nname = "home"\n'
             f'command = "{sys.executable}"\nargs = ["{HOME_MCP}"]\n'
             f'env = {{HOME_MCP_LEDGER = "{ledger}", PYTHONPATH = "{ROOT}"}}\n')
    path.write_text(home)
    return path


@pytest.mark.slow
def test_a_day_of_turns_leaves_no_private_text_anywhere(tmp_path):
    data, home, work = tmp_path / "data", tmp_path / "home", tmp_path / "work"
    for d in (home, work):
        d.mkdir()
    fifo, playback = home / "capture.fifo", home / "playback.raw"
    os.mkfifo(fifo)
    (home / ".asoundrc").write_text(ASOUNDRC.format(out=playback, inp=fifo))
    mic = SwitchableMic(fifo)  # silence, and speech when say() is called, at real-time pace
    mic.present.set()
    mic.start()
    journal = work / "journal.log"
    broker = Broker(work).start()
    proc = None
    try:
        with OpenAIServerProcess(SCRIPT, work / "llm") as llm, Client(broker, "#") as sub:
            cfg = write_config(work / "config.toml", broker, llm.base_url, data, work / "ledger.jsonl")
            env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
            env.update(HOME=str(home), PYTHONUNBUFFERED="1", INVOCATION_ID="4c1d4f0c0ffee", JOURNAL_STREAM="8:4242")
            with open(journal, "w") as out:
                proc = subprocess.Popen([sys.executable, "-m", "voice_agent.cli", "--config", str(cfg), "-v", "run"],
                                        stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

            def state_is(*states: str, after: int = 0, timeout: float = 120) -> bool:
                return sub.wait_for(lambda m: any(e["type"] == "state" and e["state"] in states
                                                  for e in feed_of(sub)[after:]), timeout)

            def turn(text: str, voice: str = "en-us", until=("idle",)) -> None:
                assert proc.poll() is None, journal.read_text()[-3000:]
                mark = len(feed_of(sub))
                mic.say(espeak(text, voice=voice).pcm)
                assert sub.wait_for(lambda m: any(e["type"] == "turn_end" for e in feed_of(sub)[mark:]), 180), \
                    (text, feed_of(sub)[mark:], journal.read_text()[-3000:])
                assert state_is(*until, after=mark), (text, feed_of(sub)[mark:])
                time.sleep(0.8)  # past the microphone's gate tail

            assert sub.wait_for(lambda m: proc.poll() is not None or any(
                x.topic.endswith("/availability") and x.text == "online" for x in m), 300), journal.read_text()[-3000:]
            assert proc.poll() is None, journal.read_text()[-3000:]
            assert state_is("idle"), journal.read_text()[-3000:]
            time.sleep(2)
            turn("hey jarvis, turn off the kitchen lights", "en-us+m3")
            turn("hey jarvis, unlock the front door", until=("awaiting_confirmation",))
            turn("yes, four seven one one")
            turn("hey jarvis, read my latest email", "en-us+f3")
            turn("hey jarvis, my bank pin is four seven one one, and I think I am pregnant")
            mark = len(feed_of(sub))
            sub.publish("voice-agent/living_room/announce", "Your prescription is ready at the pharmacy.")
            assert sub.wait_for(lambda m: any(e["type"] == "tts_done" for e in feed_of(sub)[mark:]), 120)
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, journal.read_text()[-3000:]
            feed = feed_of(sub)
            messages = list(sub.messages)
            requests = json.dumps(llm.requests()).lower()
    finally:
        mic.stopped.set()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()

    # positive controls: the day happened, and its words existed inside the appliance
    kinds = [e["type"] for e in feed]
    assert kinds.count("transcript") >= 5 and kinds.count("announcement") == 1, kinds
    assert "confirmation_requested" in kinds, kinds
    names = [e["name"] for e in feed if e["type"] == "action_executed"]
    assert "set_light" in names and "mail_read" in names and "mail_list" in names, names
    assert "pregnant" in requests and "bring the kids" in requests, requests[-2000:]

    # MQTT: nothing personal on any topic; device topics carry only the device state
    for m in messages:
        if m.topic.startswith("zigbee2mqtt/"):
            assert m.text in DEVICE_PAYLOADS, (m.topic, m.text)
            continue
        if m.topic == "voice-agent/living_room/announce":  # what the test itself published to the appliance
            continue
        low = m.text.lower()
        for marker in MARKERS:
            assert marker not in low, (marker, m.topic, m.text)
    for e in feed:
        assert not set(e) & {"text", "arguments", "result", "prompt", "reasons", "reason", "message"}, e
    discovery = [json.loads(m.payload) for m in messages if m.topic.startswith("homeassistant/")]
    assert discovery and not any("json_attributes_topic" in d for d in discovery), discovery

    # the journal (stdout and stderr under systemd, with -v): events and logs, no text
    text = journal.read_text().lower()
    assert "transcript" in text and "action_executed" in text and "debug" in text, text[-2000:]
    for marker in MARKERS:
        assert marker not in text, (marker, [line for line in text.splitlines() if marker in line][:5])

    # the data dir: never the PIN; after `log --forget`, none of the day's text
    def stored() -> bytes:
        return b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file()).lower()

    assert b"kitchen light" in stored() and b"pregnant" in stored()  # kept transcript_retention_days, as configured
    for pin in (b"4711", b"four seven one one", b"4-7-1-1", b"47 11"):
        assert pin not in stored()
    with sqlite3.connect(data / "audit.db") as db:  # every text value, every digit run: not the PIN, not near it
        values = [v for row in db.execute("SELECT * FROM actions") for v in row if isinstance(v, str)]
    assert any("pregnant" in v.lower() for v in values), values
    for v in values:
        assert not any(near(digits_of(run.group()), "4711") for run in DIGIT_RUN.finditer(v)), v
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")}
    done = subprocess.run([sys.executable, "-m", "voice_agent.cli", "--config", str(cfg), "log", "--forget"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    left = stored()
    for marker in MARKERS + ("unlock", "yes"):
        assert marker.encode() not in left, marker
