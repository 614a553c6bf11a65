"""Privacy (issue 6.3): whole turns -- a spoken device command, a spoken question for the (local) LLM, an MQTT
announcement -- run by `python -m voice_agent.cli process ... --json` inside a network namespace that has only
loopback (`unshare -n`), with mosquitto and the scripted LLM server started INSIDE the namespace. Nothing needs the
internet. Afterwards: no audio was stored anywhere under the data dir, HOME or TMPDIR, and the audit log and its
directory are private (0600/0700) although the process ran with umask 000.

Config files being created 0600 by the installer is checked in tests/test_service.py; the audit log's own modes
whatever the umask, and transcript retention, in tests/test_audit.py."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.speech import espeak

from voice_agent.audio import write_wav

ROOT = Path(__file__).resolve().parent.parent
AUDIO_SUFFIXES = {".wav", ".raw", ".pcm", ".flac", ".ogg", ".mp3", ".opus", ".webm", ".s16", ".npy"}

DRIVER = r'''
import json, os, socket, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["TESTS_DIR"])
from support.broker import Broker, Client
from support.openai_server import OpenAIServerProcess

a = json.loads(sys.argv[1])
out = {}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3).close()
    out["internet"] = "reachable"
except OSError as exc:
    out["internet"] = f"unreachable: {exc}"
out["interfaces"] = sorted(name for _, name in socket.if_nameindex())
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
script = {"rules": [{"when_user": ".", "reply": "It is sunny and twenty degrees."}]}
with Broker(Path(a["work"]), port=a["port"]) as broker, OpenAIServerProcess(script, Path(a["work"]) / "llm") as llm:
    cfg = Path(a["config"])
    cfg.write_text(cfg.read_text().replace("LLM_URL", llm.base_url))
    with Client(broker, ["zigbee2mqtt/#", "voice-agent/living_room/availability"]) as sub:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()
               and k not in ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")}
        env.update(HOME=a["home"], TMPDIR=a["tmp"], NO_PROXY="*", no_proxy="*")
        # -v: the printed events carry what was said (this test checks the turns by their text; issue 11)
        proc = subprocess.Popen([sys.executable, "-m", "voice_agent.cli", "--config", str(cfg), "-v", "process",
                                 *a["clips"], "--json", "--no-wake"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=a["root"], preexec_fn=lambda: os.umask(0))
        online = sub.wait_for(lambda m: any(x.text == "online" for x in m), 120)
        lines, turns = [], 0
        for line in proc.stdout:  # announce in the quiet spell after both spoken turns
            lines.append(line)
            if '"turn_end"' in line:
                turns += 1
                if turns == 2:
                    sub.publish("voice-agent/living_room/announce", "The laundry is done.")
        stdout, stderr = proc.communicate(timeout=300)
        stdout = "".join(lines) + stdout
        time.sleep(0.5)
        out.update(rc=proc.returncode, online=online, stderr=stderr[-3000:],
                   events=[json.loads(l) for l in stdout.splitlines() if l.startswith("{")],
                   device_commands=[[m.topic, m.text] for m in sub.messages if m.topic.startswith("zigbee2mqtt/")])
    out["llm_requests"] = len(llm.requests())
print("RESULT " + json.dumps(out))
'''


def audio_files(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and (p.suffix.lower() in AUDIO_SUFFIXES or p.read_bytes()[:4] in (b"RIFF", b"fLaC", b"OggS")):
                found.append(str(p))
    return found


def test_whole_turns_offline_in_a_loopback_only_network_namespace(tmp_path):
    probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here (CI runs as root): {probe.stderr.strip()}")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is missing")
    clips_dir, home, tmp, data, work = (tmp_path / d for d in ("clips", "home", "tmp", "data", "work"))
    for d in (clips_dir, home, tmp, work):
        d.mkdir()
    clips = []
    for i, text in enumerate(["turn off the kitchen lights", "what is the weather like today"]):
        clips.append(str(clips_dir / f"turn{i}.wav"))
        write_wav(clips[-1], espeak(text, voice=("en-us+m3", "en-us")[i]).pcm, 16000)
    clips.append(str(clips_dir / "quiet.wav"))  # a quiet spell in which the announcement is spoken
    import numpy as np

    write_wav(clips[-1], np.zeros(16000 * 6, np.int16), 16000)
    port = 18830
    home_toml = (ROOT / "tests/data/home.toml").read_text()
    home_toml = home_toml.replace('[mqtt]\nhost = "127.0.0.1"\nport = 1883', f'[mqtt]\nhost = "127.0.0.1"\nport = {port}')
    home_toml = home_toml.replace("[appliance]\n", f'[appliance]\ndata_dir = "{data}"\n')
    home_toml = home_toml.replace('base_url = "http://127.0.0.1:8000/v1"', 'base_url = "LLM_URL"')
    cfg = work / "config.toml"
    cfg.write_text(home_toml)
    before = set(audio_files(home, tmp))
    args = {"work": str(work), "port": port, "config": str(cfg), "home": str(home), "tmp": str(tmp),
            "clips": clips, "root": str(ROOT)}
    env = {**os.environ, "TESTS_DIR": str(ROOT / "tests"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", DRIVER, json.dumps(args)], check=False,
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"driver failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    out = json.loads(lines[0][7:])
    assert out["internet"].startswith("unreachable"), out["internet"]
    assert out["interfaces"] == ["lo"], out["interfaces"]
    assert out["rc"] == 0, out["stderr"]
    events = out["events"]
    kinds = [e["type"] for e in events]
    transcripts = [e["text"].lower() for e in events if e["type"] == "transcript"]
    assert any("kitchen" in t for t in transcripts) and any("today" in t for t in transcripts), (transcripts, events)
    assert [e["name"] for e in events if e["type"] == "action_executed"] == ["set_light"], events
    assert out["device_commands"] == [["zigbee2mqtt/kitchen_light/set", '{"state": "OFF"}']]
    assert "sunny" in " ".join(e["text"] for e in events if e["type"] == "reply"), events
    assert out["llm_requests"] >= 1
    assert [e["text"] for e in events if e["type"] == "announcement"] == ["The laundry is done."], kinds
    assert "error" not in kinds, [e for e in events if e["type"] == "error"]
    # no audio stored by default
    assert audio_files(data) == [] and sorted(set(audio_files(home, tmp)) - before) == []
    # the audit log is private although the process ran with umask 000
    audit = data / "audit.db"
    assert audit.exists(), sorted(p.name for p in data.iterdir())
    for p in data.iterdir():
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    print(f"\nprivacy: {len(events)} events from 2 spoken turns + 1 announcement with only loopback "
          f"({out['internet']}); audio files stored: 0")
