"""Typed tools with JSON-schema parameters, and the registry that validates calls against them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import jsonschema

from ..errors import ToolError

# Where an argument's value came from. Anything but "user" is untrusted content.
Provenance = Literal["user", "message", "web", "tool_result", "announcement", "llm"]
UNTRUSTED: frozenset[str] = frozenset({"message", "web", "tool_result", "announcement"})


@dataclass(frozen=True)
class UntrustedText:
    """Text the user did not write that entered the conversation: a tool result, a message body, a web page, a
    document, an MCP server's output, an announcement, a personal-context search hit. `source` names it the way a
    person would ("your email", "a web page", "the home MCP server"). The safety classifier checks every action
    with a side effect against the user's own words once any of these is present."""

    source: str
    text: str


@dataclass(frozen=True)
class RiskMetadata:
    """What a tool declares about its own risk. `None` means "not declared"; the classifier then infers it."""

    reversible: bool | None = None
    costs_money: bool | None = None
    security_device: bool | None = None
    external_recipient: bool | None = None
    read_only: bool | None = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    risk: RiskMetadata | None = None

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolCall:
    """A proposed action. `provenance` maps argument names to where their values came from."""

    name: str
    arguments: dict[str, Any]
    call_id: str = ""
    source: Literal["local", "llm", "announcement"] = "local"
    provenance: dict[str, str] = field(default_factory=dict)

    def untrusted_arguments(self) -> list[str]:
        return [k for k, v in self.provenance.items() if v in UNTRUSTED]


ResultStatus = Literal["ok", "error", "pending_confirmation", "denied", "cancelled"]


@dataclass(frozen=True)
class ToolResult:
    """What running (or refusing) a tool produced. `text` is short and speakable."""

    status: ResultStatus
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def for_llm(self) -> str:
        return json.dumps({"status": self.status, "result": self.text, **({"data": self.data} if self.data else {})})


@runtime_checkable
class Tool(Protocol):
    spec: ToolSpec

    async def run(self, arguments: dict[str, Any]) -> ToolResult: ...


class ToolRegistry:
    """Name -> tool. `validate` checks arguments against the tool's JSON schema before anything runs."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        if tool.spec.name in self._tools:
            raise ToolError(f"tool {tool.spec.name!r} is registered twice", code="tool-duplicate")
        self._tools[tool.spec.name] = tool

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(f"there is no tool called {name!r}", code="tool-unknown") from None

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def validate(self, call: ToolCall) -> Tool:
        tool = self.get(call.name)
        if not isinstance(call.arguments, dict):
            raise ToolError(f"arguments for {call.name} must be an object", code="tool-invalid-arguments")
        try:
            jsonschema.validate(call.arguments, tool.spec.parameters)
        except jsonschema.ValidationError as exc:
            path = ".".join(str(p) for p in exc.absolute_path) or "(arguments)"
            raise ToolError(f"invalid arguments for {call.name}: {path}: {exc.message}", code="tool-invalid-arguments") from None
        return tool
