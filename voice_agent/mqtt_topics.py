"""The appliance's own MQTT topics, derived from the configuration and validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import ApplianceConfig, MqttConfig
from .errors import MqttError

ONLINE = "online"
OFFLINE = "offline"
STATES = ("idle", "listening", "thinking", "speaking", "awaiting_confirmation")
"""Values published on the state topic (and offered to Home Assistant as the sensor's options)."""


def slug(text: str) -> str:
    """Lower-case `[a-z0-9_-]` form of a name, safe inside a topic level and as a Home Assistant node id."""
    out = re.sub(r"[^a-z0-9_-]+", "_", text.strip().lower()).strip("_")
    return out or "default"


def check_topic(topic: str, what: str) -> str:
    """A topic we publish or subscribe to exactly: non-empty, no wildcards, no NUL, at most 65535 bytes."""
    if not topic or any(c in topic for c in "+#\x00") or len(topic.encode("utf-8")) > 65535:
        raise MqttError(f"{what} {topic!r} is not a valid MQTT topic (empty, too long, or has + # or NUL)",
                        code="mqtt-topic-invalid", fix="set a plain topic such as voice-agent/kitchen/announce")
    return topic


@dataclass(frozen=True)
class Topics:
    base: str
    """`<prefix>/<room>`."""
    availability: str
    """Retained `online` / `offline`; the last will sets `offline`."""
    state: str
    """Retained pipeline state, one of STATES."""
    event: str
    """JSON events: types, states and timings (personal text only where opted in; see privacy/view.py)."""
    announce: str
    """Announcements to speak (subscribed)."""
    node_id: str
    """Home Assistant discovery node id and the default client id stem."""
    client_id: str
    """MQTT client id."""


def topics_for(cfg: MqttConfig, appliance: ApplianceConfig) -> Topics:
    room = slug(appliance.room)
    prefix = cfg.topic_prefix.strip("/")
    base = check_topic(f"{prefix}/{room}", "mqtt.topic_prefix")
    announce = check_topic(cfg.announce_topic or f"{base}/announce", "mqtt.announce_topic")
    return Topics(
        base=base,
        availability=f"{base}/availability",
        state=f"{base}/state",
        event=f"{base}/event",
        announce=announce,
        node_id=f"voice_agent_{room}",
        client_id=cfg.client_id or f"voice-agent-{room}",
    )
