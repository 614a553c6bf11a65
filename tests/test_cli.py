"""The command line as a user meets it: every command explains itself, errors are one clear line with a fix, and
`process` drives the same pipeline as the microphone with events as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.broker import Client
from support.speech import espeak
from voice_agent.audio import write_wav

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["run", "process", "transcribe", "say", "doctor", "classify", "log", "models", "config", "bench"]


def cli(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 300):
    import os

    return subprocess.run([sys.executable, "-m", "voice_agent.cli", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_help_teaches_every_command():
    top = cli("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and len(sub.stdout) > 100, name
    assert "examples:" in top.stdout


def test_process_json_events_publish_and_reply_audio(tmp_path, broker):
    cfg = tmp_path / "config.toml"
    text = (ROOT / "tests/data/home.toml").read_text().replace("port = 1883", f"port = {broker.port}")
    cfg.write_text(text.replace("[appliance]\n", f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n'))
    wav = tmp_path / "cmd.wav"
    write_wav(wav, espeak("hey jarvis, turn off the kitchen lights", voice="en-us+m3").pcm, 16000)
    with Client(broker, "zigbee2mqtt/#") as sub:
        proc = cli("--config", str(cfg), "process", str(wav), "--json", "--out", str(tmp_path / "reply.wav"),
                   "--no-llm")
        assert proc.returncode == 0, proc.stderr
        assert sub.wait_for(lambda m: len(m) >= 1, 20)
        assert json.loads(sub.messages[0].payload) == {"state": "OFF"}
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all("type" in e and "t_ms" in e for e in events)
    kinds = [e["type"] for e in events]
    for k in ("wake", "speech_start", "speech_end", "transcript", "tool_call", "reply", "first_audio"):
        assert k in kinds, k
    end = [e for e in events if e["type"] == "speech_end"][-1]["t_ms"]
    first = [e for e in events if e["type"] == "first_audio"][0]["t_ms"]
    assert first > end  # the wait a person feels is measurable from the stream
    assert (tmp_path / "reply.wav").stat().st_size > 20000


def test_transcribe_and_say_round_trip(tmp_path):
    out = tmp_path / "said.wav"
    assert cli("say", "The garage door is closed.", "--out", str(out)).returncode == 0
    proc = cli("transcribe", str(out))
    assert proc.returncode == 0 and "garage door" in proc.stdout.lower()


@pytest.mark.parametrize("toml,needle", [
    ("[vad]\nend_silence_ms = \"soon\"\n", "line 2: `vad.end_silence_ms` must be int"),
    ("[wake]\nmodle = \"hey_jarvis\"\n", "`wake.modle` is not a known setting"),
    ("[[devices]]\nname = \"x\"\nkind = \"toaster\"\ntopic = \"t\"\n", "`devices[0].kind` must be one of"),
    ("[llm\nbase_url = 1\n", "not valid TOML"),
])
def test_config_errors_name_the_key_the_file_and_the_line(tmp_path, toml, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    proc = cli("--config", str(cfg), "config", "check")
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and needle in proc.stderr and "Traceback" not in proc.stderr


def test_doctor_reports_failures_with_fixes(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[mqtt]\nport = 9\n[llm]\nbase_url = "http://127.0.0.1:9/v1"\n')
    proc = cli("--config", str(cfg), "doctor")
    assert proc.returncode == 1
    assert "ok    model: speech recognition" in proc.stdout and "ok    model: wake word" in proc.stdout
    assert "FAIL  mqtt broker" in proc.stdout and "FAIL  language model" in proc.stdout
    assert proc.stdout.count("fix:") >= 2


def test_classify_command_interface():
    lines = "\n".join([
        json.dumps({"tool": "bank_transfer", "arguments": {"to": "stranger@example.com", "amount": 5000}}),
        "{not json",
        json.dumps({"tool": "set_light", "arguments": {"device": "kitchen light", "on": False}}),
    ])
    proc = cli("classify", input=lines + "\n")
    out = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(out) == 3
    assert out[0]["catastrophic"] is True and out[0]["decision"] in ("confirm", "deny")
    assert "error" in out[1]
    assert out[2]["decision"] == "allow" and set(out[2]) == {"catastrophic", "decision", "score", "reasons"}
