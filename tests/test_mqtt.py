"""MqttLink against a real mosquitto started by each test: availability and last will, Home Assistant discovery,
announcements (good and bad payloads), broker down at start, broker restarted mid-run, bounded outbox."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.support.broker import (
    Broker,
    Client,
    Collector,
    spawn_link_process,
    wait_until,
)
from voice_agent.announcements import AnnouncementRequest
from voice_agent.config import ApplianceConfig
from voice_agent.errors import MqttError
from voice_agent.mqtt import MqttLink

WAIT = 60.0  # generous: a loaded 2-core CI machine
APPLIANCE = ApplianceConfig(room="kitchen", name="Kitchen Voice")
TOPICS = ["voice-agent/#", "homeassistant/#"]


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def make_link():
    links: list[MqttLink] = []

    def make(broker: Broker, on_announcement=None, **kw) -> MqttLink:
        mqtt_overrides = kw.pop("mqtt", {})
        link = MqttLink(broker.mqtt_config(**mqtt_overrides), kw.pop("appliance", APPLIANCE),
                        on_announcement or Collector(), reconnect_min_s=0.2, reconnect_max_s=2.0, **kw)
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop(flush_timeout=2)


def seqs(messages) -> list[int]:
    """Sequence numbers in order of first arrival (QoS 1 may repeat a message after an outage)."""
    seen: list[int] = []
    for m in messages:
        n = json.loads(m.payload)["seq"]
        if n not in seen:
            seen.append(n)
    return seen


def test_connects_announces_online_and_goes_offline_on_stop(broker, make_link):
    changes = Collector()
    link = make_link(broker, on_connection_change=changes)
    link.start()
    assert link.wait_connected(WAIT), broker.log_text()
    assert link.connected and changes.wait_for(lambda c: c == [True])
    with Client(broker, "voice-agent/kitchen/availability") as late:  # retained: a newcomer sees it
        assert late.wait_for(lambda ms: any(m.retain and m.text == "online" for m in ms))
    link.publish_state("listening")
    link.stop()
    assert not link.connected and changes.wait_for(lambda c: c == [True, False])
    with Client(broker, ["voice-agent/kitchen/availability", "voice-agent/kitchen/state"]) as late:
        assert late.wait_for(lambda ms: {(m.topic, m.text, m.retain) for m in ms} == {
            ("voice-agent/kitchen/availability", "offline", True), ("voice-agent/kitchen/state", "listening", True)})


def test_last_will_marks_offline_after_kill_9(broker):
    watcher = Client(broker, "voice-agent/kitchen/availability").start()
    child = spawn_link_process(broker.mqtt_config(), APPLIANCE)
    try:
        assert child.stdout.readline().strip() == "CONNECTED", child.stderr.read()
        assert watcher.wait_for(lambda ms: ms and ms[-1].text == "online")
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        assert watcher.wait_for(lambda ms: ms[-1].text == "offline"), broker.log_text()
    finally:
        child.kill()
        child.wait()
        watcher.stop()
    with Client(broker, "voice-agent/kitchen/availability") as late:
        assert late.wait_for(lambda ms: [(m.text, m.retain) for m in ms] == [("offline", True)])


def test_home_assistant_discovery_is_retained_and_drives_announcements(broker, make_link):
    heard = Collector()
    link = make_link(broker, heard)
    link.start()
    assert link.wait_connected(WAIT)
    with Client(broker, "homeassistant/#") as ha:
        assert ha.wait_for(lambda ms: len(ms) >= 3)
        configs = {m.topic: json.loads(m.payload) for m in ha.messages}
        assert all(m.retain for m in ha.messages)
    notify = configs["homeassistant/notify/voice_agent_kitchen/announce/config"]
    state = configs["homeassistant/sensor/voice_agent_kitchen/state/config"]
    for cfg in configs.values():
        assert cfg["availability_topic"] == "voice-agent/kitchen/availability"
        assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")
        assert cfg["device"]["identifiers"] == ["voice_agent_kitchen"] and cfg["device"]["name"] == "Kitchen Voice"
        assert cfg["unique_id"].startswith("voice_agent_kitchen_")
    assert notify["command_topic"] == link.announce_topic == "voice-agent/kitchen/announce"
    assert state["state_topic"] == "voice-agent/kitchen/state"
    assert "awaiting_confirmation" in state["options"]
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    # Home Assistant's notify action publishes the plain message on the notify entity's command topic
    with Client(broker) as ha_notify:
        ha_notify.publish(notify["command_topic"], "Dinner is ready")
    assert heard.wait_for(lambda got: got == [AnnouncementRequest("Dinner is ready")])


def test_announcements_plain_and_json_arrive(broker, make_link):
    heard = Collector()
    link = make_link(broker, heard)
    link.start()
    assert link.wait_connected(WAIT)
    with Client(broker) as pub:
        pub.publish(link.announce_topic, "The laundry is done.")
        pub.publish(link.announce_topic, json.dumps({"text": "Smoke in the <b>kitchen</b>!", "priority": "urgent",
                                                     "chime": True}))
        pub.publish(link.announce_topic, json.dumps({"text": "Caf\u00e9 \u2615 open"}).encode())
    assert heard.wait_for(lambda got: len(got) == 3)
    assert heard.snapshot() == [
        AnnouncementRequest("The laundry is done."),
        AnnouncementRequest("Smoke in the kitchen !", priority="urgent", chime=True),
        AnnouncementRequest("Caf\u00e9 \u2615 open"),
    ]


BAD_PAYLOADS = [
    (b"\xff\xfe\xfa not utf-8", "mqtt-payload-not-utf8"),
    (b"x" * 4097, "mqtt-payload-too-large"),
    (b'{"text": "unterminated', "mqtt-payload-invalid"),
    (b'{"text": 42}', "mqtt-payload-invalid"),
    (b'{"message": "no text key"}', "mqtt-payload-invalid"),
    (b'{"text": "hi", "priority": "panic"}', "mqtt-payload-invalid"),
    (b'{"text": "hi", "chime": "yes"}', "mqtt-payload-invalid"),
    (b'{"text": ' + b"[" * 2000 + b"]" * 2000 + b"}", "mqtt-payload-invalid"),
    (b"\x00\x01\x02\x1b[31m\x7f", "mqtt-payload-invalid"),
    (b"<script></script><speak/>", "mqtt-payload-invalid"),
    (b"", "mqtt-payload-invalid"),
]


def test_bad_payloads_are_dropped_with_one_log_line_and_the_link_carries_on(broker, make_link, caplog):
    heard = Collector()
    link = make_link(broker, heard)
    link.start()
    assert link.wait_connected(WAIT)
    caplog.set_level(logging.WARNING, logger="voice_agent.mqtt")
    with Client(broker) as pub:
        for payload, _code in BAD_PAYLOADS:
            pub.publish(link.announce_topic, payload)
        pub.publish(link.announce_topic, "still alive")
        assert heard.wait_for(lambda got: len(got) >= 1)
        assert heard.snapshot() == [AnnouncementRequest("still alive")]
        drops = [r.getMessage() for r in caplog.records if "dropped a payload" in r.getMessage()]
        assert len(drops) == len(BAD_PAYLOADS)
        for line, (_payload, code) in zip(drops, BAD_PAYLOADS):
            assert f"[{code}]" in line
        assert all(len(line) < 300 for line in drops)  # one short line each, never the payload dumped
        # a retained announcement is stale by definition: never replayed on (re)subscribe
        pub.publish(link.announce_topic, "old news", retain=True)
        pub.publish(link.announce_topic, "fresh news")
    assert heard.wait_for(lambda got: len(got) == 3)  # both live copies arrive ...
    link.stop()
    heard2 = Collector()
    link2 = make_link(broker, heard2)
    link2.start()
    assert link2.wait_connected(WAIT)
    with Client(broker) as pub:
        pub.publish(link2.announce_topic, "after")
    assert heard2.wait_for(lambda got: got == [AnnouncementRequest("after")])  # ... the retained one is ignored
    assert any("retained" in r.getMessage() for r in caplog.records)


def test_payload_limit_is_configurable(broker, make_link):
    heard = Collector()
    link = make_link(broker, heard, mqtt={"max_payload_bytes": 64})
    link.start()
    assert link.wait_connected(WAIT)
    with Client(broker) as pub:
        pub.publish(link.announce_topic, "y" * 65)
        pub.publish(link.announce_topic, "z" * 64)
    assert heard.wait_for(lambda got: len(got) == 1)
    assert heard.snapshot() == [AnnouncementRequest("z" * 64)]


def test_callback_exceptions_never_kill_the_network_thread(broker, make_link, caplog):
    calls = Collector()

    def explode(req: AnnouncementRequest) -> None:
        calls(req)
        if req.text == "boom":
            raise RuntimeError("pipeline bug")

    link = make_link(broker, explode)
    link.start()
    assert link.wait_connected(WAIT)
    with Client(broker) as pub:
        pub.publish(link.announce_topic, "boom")
        pub.publish(link.announce_topic, "next")
    assert calls.wait_for(lambda got: [r.text for r in got] == ["boom", "next"])
    assert link.connected
    assert any("on_announcement raised" in r.getMessage() for r in caplog.records)


def test_broker_down_at_start_then_up_delivers_everything_in_order(tmp_path, make_link):
    broker = Broker(tmp_path)
    broker.start()  # register a persistent observer session, then take the broker down
    Client(broker, TOPICS, client_id="observer", clean_session=False).start().stop()
    broker.stop()
    link = make_link(broker)
    link.start()
    link.publish_state("thinking")
    for i in range(100):
        link.publish_event({"type": "transcript", "seq": i})
    assert not link.connected and link.pending == 101
    broker.start()
    try:
        assert link.wait_connected(WAIT), broker.log_text()
        with Client(broker, TOPICS, client_id="observer", clean_session=False) as obs:
            assert obs.wait_for(lambda ms: len(seqs(m for m in ms if m.topic.endswith("/event"))) == 100)
            assert seqs(obs.on("voice-agent/kitchen/event")) == list(range(100))
            assert [m.text for m in obs.on("voice-agent/kitchen/state")][-1] == "thinking"
            assert obs.wait_for(lambda ms: any(m.topic.endswith("/availability") and m.text == "online" for m in ms))
        with Client(broker, "voice-agent/kitchen/state") as late:
            assert late.wait_for(lambda ms: [(m.text, m.retain) for m in ms] == [("thinking", True)])
    finally:
        broker.stop()


def test_broker_restart_mid_run_reconnects_resubscribes_and_loses_nothing(tmp_path, make_link):
    """A publisher keeps publishing while the broker is stopped under it: messages in flight at the moment of the
    stop, messages published before the link noticed and messages published during the outage all arrive, in
    order, and the announce subscription is back after the restart."""
    broker = Broker(tmp_path)
    broker.start()
    heard = Collector()
    link = make_link(broker, heard)
    link.start()
    obs = Client(broker, TOPICS, client_id="observer", clean_session=False).start()
    total, published = 1500, [0]

    def publisher() -> None:
        for i in range(total):
            link.publish_event({"seq": i})
            published[0] = i + 1
            time.sleep(0.002)  # pacing only, so the outage falls in the middle of the stream

    def events() -> list[int]:
        return seqs(obs.on("voice-agent/kitchen/event"))

    try:
        assert link.wait_connected(WAIT)
        worker = threading.Thread(target=publisher, daemon=True)
        worker.start()
        assert wait_until(lambda: len(events()) >= 200, WAIT)
        broker.stop()
        at_stop = published[0]
        assert wait_until(lambda: not link.connected, WAIT)
        assert wait_until(lambda: published[0] >= min(total, at_stop + 200), WAIT)
        link.publish_state("speaking")
        broker.start()
        assert link.wait_connected(WAIT), broker.log_text()
        worker.join(WAIT)
        assert obs.wait_for(lambda ms: len(seqs(m for m in ms if m.topic.endswith("/event"))) == total), events()[-5:]
        assert events() == list(range(total))
        assert obs.wait_for(lambda ms: "speaking" in [m.text for m in ms if m.topic.endswith("/state")])
        with Client(broker) as pub:  # resubscribed: an announcement after the restart arrives
            pub.publish(link.announce_topic, "back again")
        assert heard.wait_for(lambda got: AnnouncementRequest("back again") in got)
        assert wait_until(lambda: link.pending == 0, WAIT)
        assert link.dropped == 0
        print(f"\nrestart: {total} events, {at_stop} published before the stop, "
              f"{len(obs.on('voice-agent/kitchen/event')) - total} duplicate(s), none lost or reordered")
    finally:
        obs.stop()
        broker.stop()


def test_outbox_is_bounded_and_keeps_the_newest(tmp_path, make_link, caplog):
    broker = Broker(tmp_path)
    broker.start()
    Client(broker, TOPICS, client_id="observer", clean_session=False).start().stop()
    broker.stop()
    link = make_link(broker, outbox_limit=10)
    link.start()
    for i in range(25):
        link.publish_event({"seq": i})
    assert link.pending == 10 and link.dropped == 15
    assert sum("outbox full" in r.getMessage() for r in caplog.records) == 1
    broker.start()
    try:
        assert link.wait_connected(WAIT)
        with Client(broker, TOPICS, client_id="observer", clean_session=False) as obs:
            assert obs.wait_for(lambda ms: len(seqs(m for m in ms if m.topic.endswith("/event"))) == 10)
            assert seqs(obs.on("voice-agent/kitchen/event")) == list(range(15, 25))
    finally:
        broker.stop()


def test_configuration_errors_are_typed(tmp_path):
    from voice_agent.config import MqttConfig

    with pytest.raises(MqttError) as err:
        MqttLink(MqttConfig(tls=True, ca_file=str(tmp_path / "missing.pem")), APPLIANCE, print)
    assert err.value.code == "mqtt-tls-ca-missing" and "missing.pem" in str(err.value)
    bad_ca = tmp_path / "bad.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(MqttError) as err:
        MqttLink(MqttConfig(tls=True, ca_file=str(bad_ca)), APPLIANCE, print)
    assert err.value.code == "mqtt-tls-ca-invalid"
    with pytest.raises(MqttError) as err:
        MqttLink(MqttConfig(announce_topic="voice-agent/+/announce"), APPLIANCE, print)
    assert err.value.code == "mqtt-topic-invalid"
    link = MqttLink(MqttConfig(), ApplianceConfig(room="Living Room / Upstairs"), print)
    assert link.announce_topic == "voice-agent/living_room_upstairs/announce"
    with pytest.raises(MqttError) as err:
        link.publish_state("dancing")
    assert err.value.code == "mqtt-state-invalid"
    with pytest.raises(MqttError) as err:
        link.publish("a/#", "x")
    assert err.value.code == "mqtt-topic-invalid"
