"""The appliance's MQTT link: one paho-mqtt client that connects in the background, reconnects with capped
exponential backoff, announces availability (retained `online`, last will `offline`), publishes Home Assistant
discovery, subscribes to the announce topic on every (re)connect and never loses what it is asked to publish.

Delivery: while the link is not ready, publications wait in a bounded outbox (oldest dropped, with a warning, beyond
`outbox_limit`). Once connected and subscribed, the outbox is handed to paho in order, after anything paho still held
from before the outage; paho resends unacknowledged QoS 1/2 messages after a reconnect. QoS 1 is at least once:
a subscriber may see a duplicate after an outage, never a gap or a reordering.

Size and rate: with MQTT 5 (the default) the CONNECT packet carries a Maximum Packet Size (the announcement limit
plus room for topic and properties), and the broker never sends the link a bigger packet (MQTT 5.0 section
3.1.2.11.4: it drops it for this client). With MQTT 3.1.1 there is no such field: paho reads a whole message into
memory before anything can look at it, so only the broker's own `message_size_limit` protects the process.
Announcements are rate limited per topic (announce_limits.py) before they are handed on.

Threads: paho's network thread runs the callbacks; `on_announcement` and `on_connection_change` are called from it.
Exceptions they raise are logged and never stop the network thread."""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .announce_limits import TopicRateLimiter
from .announcements import AnnouncementRequest, parse_announcement
from .config import ApplianceConfig, MqttConfig
from .discovery import discovery_messages
from .errors import MqttError
from .mqtt_topics import OFFLINE, ONLINE, STATES, check_topic, topics_for

log = logging.getLogger(__name__)

_Outgoing = tuple[str, bytes, int, bool]
PACKET_OVERHEAD = 8192
"""Room above `max_payload_bytes` in the maximum packet size we accept: fixed header, topic, MQTT 5 properties."""


class _QuietPaho(logging.Filter):
    """paho logs an ERROR for every failed reconnect attempt and every dropped socket; the link reports outages
    itself, once, so these become DEBUG: shown with `-v`, dropped otherwise (the logger's level was checked against
    the original ERROR before any filter runs, so a record demoted here must be dropped here)."""

    NOISE = ("Client is not connected", "failed to receive on socket")

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(self.NOISE):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return _paho_log.isEnabledFor(logging.DEBUG)
        return True


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_QuietPaho())


def _acked(info: paho.MQTTMessageInfo) -> bool:
    """The broker acknowledged it, or paho gave up on it (it will never be acknowledged): either way not pending."""
    try:
        return info.is_published()
    except (ValueError, RuntimeError):
        return True


def _encode(payload: str | bytes | dict[str, Any]) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


class MqttLink:
    def __init__(
        self,
        cfg: MqttConfig,
        appliance: ApplianceConfig,
        on_announcement: Callable[[AnnouncementRequest], None],
        on_connection_change: Callable[[bool], None] | None = None,
        outbox_limit: int = 10000,
        *,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        if outbox_limit < 1:
            raise MqttError(f"outbox_limit must be at least 1, got {outbox_limit}", code="mqtt-config-invalid")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise MqttError("reconnect delays must satisfy 0 < min <= max", code="mqtt-config-invalid")
        self.cfg, self.appliance = cfg, appliance
        self.topics = topics_for(cfg, appliance)
        self.announce_topic = self.topics.announce
        self._discovery = discovery_messages(self.topics, appliance, cfg.discovery_prefix)
        self._on_announcement = on_announcement
        self._on_connection_change = on_connection_change
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_limit = outbox_limit
        self._dropped = 0
        self._handed: deque[paho.MQTTMessageInfo] = deque()  # QoS>0 messages given to paho, not yet acknowledged
        self._lock = threading.Lock()  # guards _ready, _outbox and the hand-over to paho (publication order)
        self._ready = False
        self._ready_event = threading.Event()
        self._sub_mid: int | None = None
        self._started = self._stopped = False
        self._last_problem = ""
        self.max_packet_bytes = cfg.max_payload_bytes + PACKET_OVERHEAD
        """Largest packet the broker may send us (MQTT 5 only)."""
        self.limiter = TopicRateLimiter(cfg.announce_burst, cfg.announce_per_minute)
        self._bad_log = TopicRateLimiter(20, 20.0, what="malformed payloads")
        self._client = self._make_client(reconnect_min_s, reconnect_max_s)

    # ---------------------------------------------------------------- setup
    def _make_client(self, min_s: float, max_s: float) -> paho.Client:
        cfg = self.cfg
        if cfg.protocol == "5":
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.topics.client_id, protocol=paho.MQTTv5)
        else:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.topics.client_id,
                                 protocol=paho.MQTTv311, clean_session=True)
        client.suppress_exceptions = True
        client.enable_logger(_paho_log)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            if cfg.ca_file and not os.path.isfile(cfg.ca_file):
                raise MqttError(f"mqtt.ca_file {cfg.ca_file!r} does not exist", code="mqtt-tls-ca-missing",
                                fix="point mqtt.ca_file at the broker's CA certificate (PEM)")
            try:
                client.tls_set_context(ssl.create_default_context(cafile=cfg.ca_file or None))
            except (ssl.SSLError, OSError) as exc:
                raise MqttError(f"mqtt.ca_file {cfg.ca_file!r} is not a usable CA certificate ({exc})",
                                code="mqtt-tls-ca-invalid") from exc
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_s, max_s)  # type: ignore[arg-type]  # paho accepts float seconds
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        return client

    # ---------------------------------------------------------------- public API
    def start(self) -> None:
        """Connect in the background; returns at once. An unreachable broker is retried with backoff."""
        if self._stopped:
            raise MqttError("this MQTT link was stopped; create a new one", code="mqtt-link-stopped")
        if self._started:
            return
        if not self.cfg.enabled:
            log.info("MQTT disabled (mqtt.enabled = false)")
            return
        self._started = True
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.MaximumPacketSize = self.max_packet_bytes
            self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                       clean_start=True, properties=props)
        else:
            self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        log.info("MQTT connecting to %s:%d as %s (MQTT %s, tls=%s)", self.cfg.host, self.cfg.port,
                 self.topics.client_id, self.cfg.protocol, self.cfg.tls)

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is pending (up to `flush_timeout`), publish `offline`, disconnect."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            return
        deadline = time.monotonic() + flush_timeout
        while self._ready and self.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._ready:
            info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        lost = self.pending
        if lost:
            log.warning("MQTT stopping with %d message(s) not delivered", lost)
        self._client.disconnect()
        self._client.loop_stop()
        self._set_ready(False)

    @property
    def connected(self) -> bool:
        """Connected, announced and subscribed to the announce topic."""
        return self._ready

    @property
    def pending(self) -> int:
        """Messages accepted by publish() and not yet acknowledged by the broker (QoS 0: only while in the outbox)."""
        with self._lock:
            while self._handed and _acked(self._handed[0]):
                self._handed.popleft()
            return len(self._outbox) + sum(1 for i in self._handed if not _acked(i))

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full."""
        return self._dropped

    def wait_connected(self, timeout: float) -> bool:
        return self._ready_event.wait(timeout)

    def publish(self, topic: str, payload: str | bytes | dict[str, Any], *, qos: int = 1,
                retain: bool = False) -> None:
        """Publish now, or keep it in the outbox until the link is back. Never raises because the broker is down."""
        check_topic(topic, "publish topic")
        if qos not in (0, 1, 2):
            raise MqttError(f"qos must be 0, 1 or 2, got {qos!r}", code="mqtt-qos-invalid")
        if self._stopped or not self.cfg.enabled:
            log.debug("MQTT link not running; not publishing on %s", topic)
            return
        item = (topic, _encode(payload), qos, retain)
        with self._lock:
            if self._ready and not self._outbox:
                self._hand_over(item)
                return
            if len(self._outbox) >= self._outbox_limit:
                self._outbox.popleft()
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning("MQTT outbox full (%d): dropped the oldest message (%d dropped so far)",
                                self._outbox_limit, self._dropped)
            self._outbox.append(item)

    def publish_state(self, state: str) -> None:
        if state not in STATES:
            raise MqttError(f"unknown state {state!r}; expected one of {', '.join(STATES)}",
                            code="mqtt-state-invalid")
        self.publish(self.topics.state, state, qos=1, retain=True)

    def publish_event(self, event: dict[str, Any]) -> None:
        if not isinstance(event, dict) and hasattr(event, "to_dict"):
            event = event.to_dict()
        self.publish(self.topics.event, event, qos=1, retain=False)

    # ---------------------------------------------------------------- internals (paho network thread)
    def _hand_over(self, item: _Outgoing) -> None:
        """Give one message to paho. Caller holds self._lock."""
        topic, payload, qos, retain = item
        while self._handed and _acked(self._handed[0]):
            self._handed.popleft()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.warning("MQTT could not queue a message on %s: %s", topic, paho.error_string(info.rc))
        elif qos > 0:
            if info.rc == paho.MQTT_ERR_NO_CONN:
                # The connection dropped under this publish: paho keeps a QoS>0 message and sends it after the
                # reconnect, but its is_published() would raise for this rc ever after (even once acknowledged).
                info.rc = paho.MQTT_ERR_SUCCESS
            self._handed.append(info)

    def _set_ready(self, ready: bool) -> None:
        with self._lock:
            changed, self._ready = self._ready != ready, ready
            if ready:
                backlog = len(self._outbox)
                while self._outbox:
                    self._hand_over(self._outbox.popleft())
                if backlog:
                    log.info("MQTT delivered %d message(s) kept while the broker was unreachable", backlog)
        (self._ready_event.set if ready else self._ready_event.clear)()
        if changed and self._on_connection_change is not None:
            try:
                self._on_connection_change(ready)
            except Exception:  # a callback must never kill the network thread
                log.exception("on_connection_change raised")

    def _problem(self, text: str) -> None:
        if text != self._last_problem:
            self._last_problem = text
            log.warning("%s", text)

    def _handle_connect(self, client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        try:
            if reason.is_failure:
                fix = ('set mqtt.protocol = "3.1.1" for a broker without MQTT 5' if "protocol" in str(reason).lower()
                       else "check mqtt.username / mqtt.password and the broker ACL")
                self._problem(f"MQTT broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason}; "
                              f"retrying with backoff ({fix})")
                return
            self._last_problem = ""
            client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
            for msg in self._discovery:
                client.publish(msg.topic, msg.payload, qos=1, retain=True)
            _rc, self._sub_mid = client.subscribe(self.announce_topic, qos=1)
            log.info("MQTT connected to %s:%d; subscribing to %s", self.cfg.host, self.cfg.port, self.announce_topic)
        except Exception:
            log.exception("MQTT on_connect failed")

    def _handle_connect_fail(self, _client: paho.Client, _ud: Any) -> None:
        self._problem(f"MQTT broker {self.cfg.host}:{self.cfg.port} unreachable; retrying in the background. "
                      f"Start one (`sudo systemctl start mosquitto`, or `make run` starts a private one), point "
                      f"[mqtt] host/port at yours, or set [mqtt] enabled = false")

    def _handle_subscribe(self, _client: paho.Client, _ud: Any, mid: int, reasons: list[Any], _props: Any) -> None:
        try:
            if mid != self._sub_mid:
                return
            if any(r.is_failure for r in reasons):
                log.error("MQTT broker refused the subscription to %s (ACL?): announcements will not arrive",
                          self.announce_topic)
            self._set_ready(True)
        except Exception:
            log.exception("MQTT on_subscribe failed")

    def _handle_disconnect(self, _client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        try:
            if not self._stopped:
                self._problem(f"MQTT disconnected from {self.cfg.host}:{self.cfg.port} ({reason}); reconnecting")
            self._set_ready(False)
        except Exception:
            log.exception("MQTT on_disconnect failed")

    def _handle_message(self, _client: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        try:
            if msg.topic != self.announce_topic:
                return
            if msg.retain:
                log.warning("MQTT ignored a retained (stale) announcement on %s", msg.topic)
                return
            try:
                request = parse_announcement(msg.payload, self.cfg.max_payload_bytes)
            except MqttError as exc:
                if self._bad_log.allow(msg.topic):
                    log.warning("MQTT dropped a payload on %s [%s]: %s", msg.topic, exc.code, exc.message)
                return
            if not self.limiter.allow(msg.topic):
                return
            self._on_announcement(request)
        except Exception:  # on_announcement must never kill the network thread
            log.exception("on_announcement raised; the MQTT link carries on")
