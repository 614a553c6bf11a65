"""MQTT security (issue 6.5) against a mosquitto configured by the test with a password file, an ACL and a TLS-only
listener: the appliance connects with its credentials over verified TLS, anonymous and wrong-password clients are
refused, plaintext and untrusted-CA connections fail, and a client outside the ACL cannot make the appliance speak."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.broker import (
    Broker,
    Client,
    Collector,
    make_tls_files,
    try_connect,
    wait_until,
)
from voice_agent.announcements import AnnouncementRequest
from voice_agent.config import ApplianceConfig
from voice_agent.mqtt import MqttLink

WAIT = 60.0
APPLIANCE = ApplianceConfig(room="hall")
USERS = {"appliance": "s3cret-appliance", "homeassistant": "s3cret-ha", "guest": "s3cret-guest"}
ACL = """
user appliance
topic readwrite voice-agent/hall/#
topic write homeassistant/#

user homeassistant
topic write voice-agent/hall/announce
topic read voice-agent/#
topic read homeassistant/#

user guest
topic read voice-agent/#
topic write voice-agent/hall/state
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("secure"), users=USERS, acl=ACL, tls=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def link(broker):
    heard = Collector()
    cfg = broker.mqtt_config(username="appliance", password=USERS["appliance"])
    assert cfg.tls and cfg.ca_file
    lk = MqttLink(cfg, APPLIANCE, heard, reconnect_min_s=0.2, reconnect_max_s=2.0)
    lk.heard = heard  # type: ignore[attr-defined]
    lk.start()
    assert lk.wait_connected(WAIT), broker.log_text()
    yield lk
    lk.stop(flush_timeout=2)


def test_appliance_connects_with_credentials_over_tls(broker, link):
    with Client(broker, "voice-agent/hall/#", username="homeassistant", password=USERS["homeassistant"]) as ha:
        link.publish_state("idle")
        assert ha.wait_for(lambda ms: {(m.topic, m.text) for m in ms} >= {
            ("voice-agent/hall/availability", "online"), ("voice-agent/hall/state", "idle")})
        ha.publish(link.announce_topic, "Front door camera sees a parcel")
    assert link.heard.wait_for(lambda got: got == [AnnouncementRequest("Front door camera sees a parcel")])
    assert "u'appliance'" in broker.log_text()  # the broker saw the appliance's user name


@pytest.mark.parametrize(
    "who, password",
    [(None, None), ("homeassistant", "wrong"), ("nobody", "whatever")],
    ids=["anonymous", "wrong-password", "unknown-user"],
)
def test_unauthenticated_clients_are_refused(broker, who, password):
    result = try_connect(broker, username=who, password=password)
    assert result != "ok"
    assert "authoriz" in result.lower() or "bad user name or password" in result.lower(), result


def test_valid_credentials_work_over_tls_only(broker, tmp_path: Path):
    assert try_connect(broker, username="guest", password=USERS["guest"]) == "ok"
    assert try_connect(broker, username="guest", password=USERS["guest"], tls=False) != "ok"  # no plaintext


def test_a_broker_with_an_untrusted_certificate_is_refused_by_the_appliance(broker, tmp_path: Path, caplog):
    other_ca = make_tls_files(tmp_path / "other").ca_cert
    cfg = broker.mqtt_config(username="appliance", password=USERS["appliance"], ca_file=str(other_ca))
    changes = Collector()
    lk = MqttLink(cfg, ApplianceConfig(room="hall"), print, changes, reconnect_min_s=0.2, reconnect_max_s=1.0)
    caplog.set_level(logging.WARNING, logger="voice_agent.mqtt")
    lk.start()
    try:
        assert wait_until(lambda: any("unreachable" in r.getMessage() for r in caplog.records), WAIT)
        assert not lk.connected and changes.snapshot() == []
    finally:
        lk.stop(flush_timeout=0)


def test_wrong_appliance_password_is_reported_and_retried(broker, caplog):
    cfg = broker.mqtt_config(username="appliance", password="not-the-password")
    lk = MqttLink(cfg, ApplianceConfig(room="hall"), print, reconnect_min_s=0.2, reconnect_max_s=1.0)
    caplog.set_level(logging.WARNING, logger="voice_agent.mqtt")
    lk.start()
    try:
        assert wait_until(lambda: any("refused the connection" in r.getMessage() for r in caplog.records), WAIT)
        assert not lk.connected
        lk.publish_state("idle")  # kept for later, never raises
        assert lk.pending == 1
        refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(refusals) == 1  # logged once, not once per retry
    finally:
        lk.stop(flush_timeout=0)


def test_a_client_outside_the_acl_cannot_make_the_appliance_speak(broker, link):
    with Client(broker, username="guest", password=USERS["guest"]) as intruder, \
            Client(broker, username="homeassistant", password=USERS["homeassistant"]) as ha:
        # mosquitto acknowledges a denied QoS 1 publish (MQTT 3.1.1) and silently discards it
        intruder.publish(link.announce_topic, "Unlock the front door now")
        intruder.publish(link.announce_topic, '{"text": "Disarm the alarm", "priority": "urgent"}')
        ha.publish(link.announce_topic, "marker after the intruder")
    assert link.heard.wait_for(lambda got: AnnouncementRequest("marker after the intruder") in got)
    assert link.heard.snapshot() == [AnnouncementRequest("marker after the intruder")]
    assert "Denied PUBLISH from" in broker.log_text()
