"""What leaves the appliance over MQTT (issue 11.1), with the real appliance on spoken turns and a subscriber on `#`
of a real mosquitto: by default the event feed carries event types, states, labels and timings only; personal text
(transcripts, arguments, results, replies) appears only in the fields the owner opted into, and secrets (the PIN)
never; Home Assistant's sensor shows the state, not text. The printed events follow the same rule."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path

import pytest
from support.appliance import converse_clips
from support.broker import Client
from support.speech import espeak

from voice_agent.events import (
    EVENT_TYPES,
    PERSONAL_KINDS,
    ActionExecuted,
    ErrorEvent,
    Event,
    Reply,
    Stamped,
    ToolCallEvent,
    Transcript,
)
from voice_agent.privacy import EventView, Redactor
from voice_agent.privacy.redact import digits_of

ROOT = Path(__file__).resolve().parent.parent
PERSONAL_FIELDS = {"text", "arguments", "result", "prompt", "reasons", "reason", "message"}


def turns():
    return [espeak("hey jarvis, turn off the kitchen lights", voice="en-us+m3"),
            espeak("hey jarvis, my bank pin is four seven one one and I think I am pregnant", voice="en-us")]


def feed_messages(sub: Client, room: str = "living_room") -> list[dict]:
    return [json.loads(m.payload) for m in sub.on(f"voice-agent/{room}/event")]


def everything_but_device_commands(sub: Client) -> str:
    return "\n".join(f"{m.topic} {m.text}" for m in sub.messages if not m.topic.startswith("zigbee2mqtt/")).lower()


def test_default_feed_has_types_states_and_timings_only_and_discovery_shows_no_text(cfg, engines, broker):
    with Client(broker, "#") as sub:
        run = converse_clips(cfg, engines, turns(), wake=True, use_llm=False,
                             after=lambda app, n: app.mqtt.wait_connected(1))
        assert sub.wait_for(lambda m: sum(1 for x in m if x.topic.endswith("/event")
                                          and json.loads(x.payload)["type"] == "turn_end") >= 2, 30)
        feed = feed_messages(sub)
        wire = everything_but_device_commands(sub)
        discovery = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.startswith("homeassistant/")}
        commands = [(m.topic, m.text) for m in sub.messages if m.topic.startswith("zigbee2mqtt/")]
    # positive control: inside the process the text was there
    said = " ".join(e["text"] for e in run.of("transcript")).lower()
    assert "kitchen" in said and "pregnant" in said, said
    assert [e["name"] for e in run.of("action_executed")] == ["set_light"]
    # on the wire: the same events, without their text
    assert [e["type"] for e in feed][-len(run.events):] == run.types()  # (the feed also has the first state)
    for e in feed:
        assert not set(e) & PERSONAL_FIELDS, e
    for marker in ("kitchen light", "pregnant", "bank", "4711", "four seven", "turned off", "language model"):
        assert marker not in wire, (marker, wire[:2000])
    assert commands == [("zigbee2mqtt/kitchen_light/set", '{"state": "OFF"}')]  # the command itself still goes out
    sensor = next(v for k, v in discovery.items() if k.endswith("/last_event/config"))
    assert "json_attributes_topic" not in sensor and sensor["value_template"] == "{{ value_json.type }}"
    assert not any("json_attributes" in k for v in discovery.values() for k in v)


def test_opted_in_fields_appear_and_secrets_stay_masked(cfg, engines, broker):
    c = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, feed_transcripts=True, feed_replies=True),
                            safety=dataclasses.replace(cfg.safety, pin="4711"))
    with Client(broker, "#") as sub:
        run = converse_clips(c, engines, turns(), wake=True, use_llm=False)
        assert sub.wait_for(lambda m: sum(1 for x in m if x.topic.endswith("/event")
                                          and json.loads(x.payload)["type"] == "turn_end") >= 2, 30)
        feed = feed_messages(sub)
        wire = everything_but_device_commands(sub)
    transcripts = [e["text"] for e in feed if e["type"] == "transcript"]
    assert any("pregnant" in t.lower() for t in transcripts), transcripts  # opted in: there
    assert all("4711" not in t and "four seven" not in t.lower() for t in transcripts), transcripts
    inside = " ".join(e["text"] for e in run.of("transcript"))
    assert "47" in digits_of(inside), inside  # the PIN (or a near miss of it: "471") was recognised in the process
    assert not [t for t in transcripts if "47" in digits_of(t)], transcripts
    assert [e for e in feed if e["type"] == "reply"] and all("text" in e for e in feed if e["type"] == "reply")
    assert all("arguments" not in e for e in feed if e["type"] == "tool_call")  # not opted in
    assert "4711" not in wire and "four seven one one" not in wire


def test_every_event_field_is_classified_and_an_unclassified_text_field_is_left_out():
    """Default deny: a text field nobody declared personal or a label never leaves the process."""
    from voice_agent.privacy.view import LABELS

    for cls in EVENT_TYPES.values():
        for f in dataclasses.fields(cls):
            kind = f.metadata.get("personal")
            assert kind in PERSONAL_KINDS or f.name in LABELS or f.type in ("int", "float", "bool"), (cls, f.name)

    @dataclasses.dataclass(frozen=True)
    class Gossip(Event):
        type = "gossip"  # type: ignore[assignment]
        whispered: str
        loudness: int

    assert EventView().event(Gossip("my bank pin is 4711", 3)) == {"type": "gossip", "loudness": 3}


def test_view_shapes_and_masks():
    r = Redactor.from_config(type("C", (), {"safety": type("S", (), {"pin": "4711"})()})())
    quiet, loud = EventView(redactor=r), EventView.everything(r)
    t = Transcript("yes four seven one one", 812)
    assert quiet.event(t) == {"type": "transcript", "stt_ms": 812, "early": False}
    assert loud.event(t)["text"] == "yes [redacted]"
    call = ToolCallEvent("wifi_share", {"password": "hunter2", "to": "Bob"}, "llm")
    assert quiet.event(call) == {"type": "tool_call", "name": "wifi_share", "source": "llm"}
    assert loud.event(call)["arguments"] == {"password": "[redacted]", "to": "Bob"}
    assert EventView(frozenset({"results"}), r).event(ActionExecuted("mail_read", True, "code: 4711"))["result"] \
        == "code: [redacted]"
    assert quiet.event(ErrorEvent("tool-failed", "the mail said ...")) == {"type": "error", "code": "tool-failed"}
    with pytest.raises(ValueError):
        EventView(frozenset({"everything"}))


def test_printed_events_follow_the_view():
    from voice_agent.app import human_printer, json_printer

    out = io.StringIO()
    for printer in (human_printer(out), json_printer(out)):
        printer(Stamped(Reply("Your mother writes: bring the kids"), 5.0))
        printer(Stamped(Transcript("I think I am pregnant", 300), 6.0))
    assert "kids" not in out.getvalue() and "pregnant" not in out.getvalue()
    assert "reply" in out.getvalue() and "transcript" in out.getvalue()
    out = io.StringIO()
    human_printer(out, EventView.everything())(Stamped(Transcript("I think I am pregnant", 300), 6.0))
    assert "pregnant" in out.getvalue()


def test_log_lines_mask_secrets_and_personal_text(caplog):
    from voice_agent.privacy.journal import LogPrivacy, Personal, configure

    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(LogPrivacy())
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        configure(Redactor(secrets=("s3cret-pw",), pins=("4711",)), show_text=False)
        logging.getLogger("voice_agent.test").warning("said %s; broker password s3cret-pw; pin 4-7-1-1",
                                                      Personal("I think I am pregnant"))
        logging.getLogger("httpx").debug("request body: I think I am pregnant")
        try:
            raise RuntimeError("token=abc123 failed")
        except RuntimeError:
            logging.getLogger("voice_agent.test").exception("boom")
        configure(Redactor(), show_text=True)
        logging.getLogger("voice_agent.test").warning("said %s", Personal("hello there"))
    finally:
        configure(Redactor(), show_text=False)
        root.removeHandler(handler)
        root.setLevel(old)
    text = handler.stream.getvalue()
    assert "pregnant" not in text and "s3cret-pw" not in text and "4-7-1-1" not in text, text
    assert "<21 chars>" in text and "token=[redacted]" in text and "abc123" not in text
    assert "hello there" in text


@pytest.mark.parametrize("env,journal_text,verbose,shown", [
    ({}, False, False, False),
    ({}, False, True, True),
    ({"INVOCATION_ID": "abc"}, False, True, False),
    ({"JOURNAL_STREAM": "8:1234"}, False, True, False),
    ({"NOTIFY_SOCKET": "/run/systemd/notify"}, False, True, False),
    ({"INVOCATION_ID": "abc"}, True, True, True),
    ({"INVOCATION_ID": "abc"}, True, False, False),
])
def test_when_text_may_be_printed(env, journal_text, verbose, shown):
    from voice_agent.privacy.journal import text_allowed

    assert text_allowed(verbose, journal_text, env) is shown


def test_what_mcp_servers_write_to_stderr_follows_the_journal_rule(tmp_path):
    """An MCP server's stderr used to go straight to the appliance's stderr, i.e. the journal: whatever the server
    logged (what it was asked, what it read) landed there. Now each line is a log record whose text is personal."""
    import asyncio
    import time

    from voice_agent.app import build_household
    from voice_agent.config import McpServerConfig, load_config
    from voice_agent.intents import LocalIntents
    from voice_agent.privacy.journal import LogPrivacy, configure

    chatty = McpServerConfig(name="chatty", command="sh", start_timeout_s=5,
                             args=["-c", "echo 'reading mail: I think I am pregnant, pin 4711' >&2; exit 3"])
    base = load_config(ROOT / "tests/data/home.toml")
    cfg = dataclasses.replace(base, mcp_servers=[chatty],
                              appliance=dataclasses.replace(base.appliance, data_dir=str(tmp_path / "data")))
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(LogPrivacy())
    root = logging.getLogger()
    root.addHandler(handler)
    configure(Redactor.from_config(cfg), show_text=False)

    async def main() -> None:
        home = await build_household(cfg, LocalIntents(cfg.devices), use_mqtt=False, use_llm=False, audit=False)
        await home.aclose()

    try:
        asyncio.run(main())
        deadline = time.monotonic() + 10
        while "chars>" not in handler.stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        root.removeHandler(handler)
    text = handler.stream.getvalue()
    assert "<45 chars>" in text, text  # the line arrived, as a log record ...
    assert "pregnant" not in text and "4711" not in text, text  # ... without its text
