"""MQTT devices declared in the config, commanded zigbee2mqtt-style: JSON on `<topic>/set`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import DeviceConfig
from .base import RiskMetadata, ToolResult, ToolSpec

Publish = Callable[[str, str], None]

_DESCRIPTIONS = {
    "light": "Turn a light on or off, optionally setting its brightness in percent.",
    "switch": "Turn a switch (plug, fan, appliance) on or off.",
    "lock": "Lock or unlock a door lock.",
    "cover": "Open or close a cover such as a garage door, gate or blind.",
    "thermostat": "Set a thermostat's target temperature in degrees Celsius.",
}
_RISK = {
    "light": RiskMetadata(reversible=True, costs_money=False, security_device=False, external_recipient=False),
    "switch": RiskMetadata(reversible=True, costs_money=False, security_device=False, external_recipient=False),
    "lock": RiskMetadata(reversible=True, costs_money=False, security_device=True, external_recipient=False),
    "cover": RiskMetadata(reversible=True, costs_money=False, security_device=True, external_recipient=False),
    "thermostat": RiskMetadata(reversible=True, costs_money=False, security_device=False, external_recipient=False),
}


def _params(kind: str, names: list[str]) -> dict[str, Any]:
    dev = {"type": "string", "enum": names, "description": "Which device"}
    props: dict[str, Any]
    if kind == "light":
        props = {"device": dev, "on": {"type": "boolean"},
                 "brightness": {"type": "integer", "minimum": 0, "maximum": 100, "description": "percent"}}
        req = ["device", "on"]
    elif kind == "switch":
        props, req = {"device": dev, "on": {"type": "boolean"}}, ["device", "on"]
    elif kind == "lock":
        props, req = {"device": dev, "locked": {"type": "boolean", "description": "true locks, false unlocks"}}, ["device", "locked"]
    elif kind == "cover":
        props, req = {"device": dev, "open": {"type": "boolean", "description": "true opens, false closes"}}, ["device", "open"]
    else:
        props = {"device": dev, "temperature": {"type": "number", "minimum": 5, "maximum": 30}}
        req = ["device", "temperature"]
    return {"type": "object", "properties": props, "required": req, "additionalProperties": False}


def command_payload(kind: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The zigbee2mqtt command for a call, and the words that say what happened."""
    name = args["device"]
    if kind in ("light", "switch"):
        payload: dict[str, Any] = {"state": "ON" if args["on"] else "OFF"}
        said = f"The {name} is {'on' if args['on'] else 'off'}"
        if kind == "light" and "brightness" in args:
            payload["brightness"] = round(args["brightness"] * 254 / 100)
            said = f"The {name} is at {args['brightness']} percent"
        return payload, said + "."
    if kind == "lock":
        return {"state": "LOCK" if args["locked"] else "UNLOCK"}, f"The {name} is {'locked' if args['locked'] else 'unlocked'}."
    if kind == "cover":
        return {"state": "OPEN" if args["open"] else "CLOSE"}, f"{'Opening' if args['open'] else 'Closing'} the {name}."
    t = args["temperature"]
    return {"current_heating_setpoint": t}, f"The {name} is set to {t:g} degrees."


@dataclass
class DeviceTool:
    """One tool per device kind, e.g. `set_light`, whose `device` argument names any light in the config."""

    spec: ToolSpec
    kind: str
    devices: dict[str, DeviceConfig]
    publish: Publish

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        dev = self.devices[arguments["device"]]
        payload, said = command_payload(self.kind, arguments)
        self.publish(f"{dev.topic}/set", json.dumps(payload))
        return ToolResult("ok", said, {"topic": f"{dev.topic}/set", "payload": payload})


def device_tools(devices: list[DeviceConfig], publish: Publish) -> list[DeviceTool]:
    tools = []
    for kind in dict.fromkeys(d.kind for d in devices):
        of_kind = {d.name: d for d in devices if d.kind == kind}
        spec = ToolSpec(f"set_{kind}", _DESCRIPTIONS[kind], _params(kind, list(of_kind)), _RISK[kind])
        tools.append(DeviceTool(spec, kind, of_kind, publish))
    return tools
