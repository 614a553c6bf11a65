"""Speak an announcement in this room."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import RiskMetadata, ToolResult, ToolSpec


@dataclass
class AnnounceTool:
    speak: Callable[[str], None]
    spec: ToolSpec = field(default_factory=lambda: ToolSpec(
        "announce", "Speak a short announcement aloud in this room.",
        {"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 500}},
         "required": ["text"], "additionalProperties": False},
        RiskMetadata(reversible=True, costs_money=False, security_device=False, external_recipient=False)))

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        self.speak(arguments["text"])
        return ToolResult("ok", "Announced.")
