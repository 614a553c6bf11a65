"""Home Assistant MQTT discovery: the retained config messages that make the appliance appear in Home Assistant.

Entities (all on one device, all wired to the availability topic):
- `notify.<name>_announce`: Home Assistant's notify action publishes the message on the announce topic;
- `sensor.<name>_state`: the pipeline state (enum: idle, listening, thinking, speaking, awaiting_confirmation);
- `sensor.<name>_last_event`: the type of the last event, nothing else. No `json_attributes_topic`: Home
  Assistant's recorder keeps sensor attributes, so even text an owner opts into the event feed
  (`[mqtt] feed_*`) never becomes part of Home Assistant's history through this sensor.

Topics follow `<discovery_prefix>/<component>/<node_id>/<object_id>/config`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import __version__
from .config import ApplianceConfig
from .mqtt_topics import OFFLINE, ONLINE, STATES, Topics, check_topic


@dataclass(frozen=True)
class DiscoveryMessage:
    topic: str
    """`<discovery_prefix>/<component>/<node_id>/<object_id>/config`."""
    payload: str
    """JSON config; published retained."""


def device_block(topics: Topics, appliance: ApplianceConfig) -> dict[str, Any]:
    return {
        "identifiers": [topics.node_id],
        "name": appliance.name,
        "manufacturer": "voice-agent",
        "model": "voice-agent appliance",
        "sw_version": __version__,
        "suggested_area": appliance.room.replace("_", " ").strip().title(),
    }


def _entity(topics: Topics, appliance: ApplianceConfig, object_id: str, name: str, icon: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": f"{topics.node_id}_{object_id}",
        "object_id": f"{topics.node_id}_{object_id}",
        "icon": icon,
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device_block(topics, appliance),
        "origin": {"name": "voice-agent", "sw_version": __version__},
    }


def discovery_messages(topics: Topics, appliance: ApplianceConfig, discovery_prefix: str) -> tuple[DiscoveryMessage, ...]:
    """The discovery configs to publish (retained) on every connect. Empty prefix: discovery is off."""
    prefix = discovery_prefix.strip("/")
    if not prefix:
        return ()
    check_topic(prefix, "mqtt.discovery_prefix")
    notify = _entity(topics, appliance, "announce", "Announce", "mdi:bullhorn") | {
        "command_topic": topics.announce,
        "qos": 1,
        "retain": False,
    }
    state = _entity(topics, appliance, "state", "State", "mdi:account-voice") | {
        "state_topic": topics.state,
        "device_class": "enum",
        "options": list(STATES),
    }
    last_event = _entity(topics, appliance, "last_event", "Last event", "mdi:message-processing") | {
        "state_topic": topics.event,
        "value_template": "{{ value_json.type }}",
    }
    configs = (("notify", "announce", notify), ("sensor", "state", state), ("sensor", "last_event", last_event))
    return tuple(
        DiscoveryMessage(f"{prefix}/{component}/{topics.node_id}/{object_id}/config",
                         json.dumps(body, separators=(",", ":"), sort_keys=True))
        for component, object_id, body in configs
    )
