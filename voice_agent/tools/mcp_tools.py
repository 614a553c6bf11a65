"""Tools from MCP servers named in the config, spoken to over stdio with the `mcp` package.

Every server gets one background task that owns its connection: the task enters the client (which starts the
server process and the anyio task groups of the stdio transport), lists the tools, then waits until `aclose()`
and leaves the client again in the same task, as anyio requires. Tool calls are made from any task through the
open session. A server that fails to start is logged and skipped; a server that dies later makes its tools
return a clear error result, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any, TextIO

import jsonschema
from mcp import Client, StdioServerParameters, stdio_client
from mcp import types as mcp_types

from ..config import McpServerConfig
from .base import RiskMetadata, Tool, ToolResult, ToolSpec

log = logging.getLogger(__name__)

CONNECTION_CLOSED = getattr(mcp_types, "CONNECTION_CLOSED", -32000)
REQUEST_TIMEOUT = getattr(mcp_types, "REQUEST_TIMEOUT", -32001)
RISK_KEYS = ("reversible", "costs_money", "security_device", "external_recipient", "read_only")
MAX_TEXT = 4000
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


def _get(obj: Any, *names: str) -> Any:
    """Read a field under its mcp 2.x (snake_case) or 1.x (camelCase) name."""
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def annotation_hints(tool: Any) -> dict[str, bool]:
    """The MCP annotation hints a tool declares (only those it declares), under their MCP names."""
    ann = getattr(tool, "annotations", None)
    if ann is None:
        return {}
    hints: dict[str, bool] = {}
    for snake in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
        value = _get(ann, snake, _camel(snake))
        if isinstance(value, bool):
            hints[_camel(snake)] = value
    return hints


def declared_risk(tool: Any) -> dict[str, bool]:
    """An explicit `x-risk` block in the tool's `_meta` or input schema: {reversible, costs_money, ...}."""
    found: dict[str, bool] = {}
    schema = _get(tool, "input_schema", "inputSchema") or {}
    for block in ((_get(tool, "meta") or {}).get("x-risk"), schema.get("x-risk")):
        if not isinstance(block, dict):
            continue
        for key, value in block.items():
            key = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()  # accept camelCase keys too
            if key in RISK_KEYS and isinstance(value, bool):
                found[key] = value
            else:
                log.warning("MCP tool %s: ignoring x-risk entry %r=%r", _get(tool, "name"), key, value)
    return found


def risk_metadata(tool: Any) -> RiskMetadata | None:
    """RiskMetadata from the MCP annotations and any `x-risk` block; None when the tool declares nothing.

    Annotations follow the MCP spec's defaults once present: a tool that is not read-only is destructive unless it
    says `destructiveHint: false`. "Not destructive" only means additive (sending mail is additive), so it does not
    make the tool reversible. An `x-risk` block overrides what the annotations imply.
    """
    hints = annotation_hints(tool)
    fields: dict[str, bool] = {}
    if getattr(tool, "annotations", None) is not None:
        read_only = hints.get("readOnlyHint")
        if read_only is not None:
            fields["read_only"] = read_only
        if read_only is not True and hints.get("destructiveHint", True):
            fields["reversible"] = False
    fields.update(declared_risk(tool))
    return RiskMetadata(**fields) if fields else None


def _result_text(result: Any) -> str:
    parts: list[str] = []
    for block in _get(result, "content") or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(getattr(block, "text", ""))
        else:
            parts.append(f"[{kind or 'content'}]")
    text = "\n".join(p for p in parts if p).strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class _Server:
    """One configured server: its owner task, its open client, and whether it still answers."""

    def __init__(self, config: McpServerConfig, errlog: TextIO) -> None:
        self.config = config
        self.errlog = errlog
        self.client: Client | None = None
        self.alive = False
        self.ready: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def own(self) -> None:
        """Open, list, wait for stop, close: all in this one task."""
        params = StdioServerParameters(command=self.config.command, args=list(self.config.args),
                                       env=dict(self.config.env) or None)
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(Client(stdio_client(params, errlog=self.errlog)))
                tools: list[Any] = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = _get(page, "next_cursor", "nextCursor")
                    if not cursor:
                        break
                self.client, self.alive = client, True
                self.ready.set_result(tools)
                await self.stop.wait()
                self.alive = False
        except asyncio.CancelledError:
            self.alive = False
            if not self.ready.done():
                self.ready.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a broken server must never take the appliance down
            self.alive = False
            if not self.ready.done():
                self.ready.set_exception(exc)
            else:
                log.warning("MCP server %s: error while closing: %s", self.config.name, _describe(exc))

    async def call(self, remote: str, arguments: dict[str, Any], shown: str, timeout_s: float) -> ToolResult:
        server = self.config.name
        base = {"server": server, "tool": remote}
        if self.client is None or not self.alive:
            return ToolResult("error", f"The {server} tool server is not running, so {shown} did not run.",
                              {**base, "code": "mcp-server-unavailable"})
        try:
            result = await self.client.call_tool(remote, arguments, read_timeout_seconds=timeout_s)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            code = _code(exc)
            if code == REQUEST_TIMEOUT or isinstance(exc, TimeoutError):
                text = (f"The {server} tool server did not answer {shown} within {timeout_s:g} seconds; "
                        "I can't tell whether it happened.")
                return ToolResult("error", text, {**base, "code": "mcp-timeout"})
            if code == CONNECTION_CLOSED or isinstance(exc, (OSError, EOFError)) or "closed" in str(exc).lower():
                self.alive = False
                text = (f"The {server} tool server stopped while running {shown}; "
                        "I can't tell whether it happened.")
                return ToolResult("error", text, {**base, "code": "mcp-server-died"})
            return ToolResult("error", f"{shown} failed: {_describe(exc)}", {**base, "code": "mcp-call-failed"})
        text = _result_text(result)
        data: dict[str, Any] = dict(base)
        structured = _get(result, "structured_content", "structuredContent")
        if structured is not None:
            data["structured"] = structured
        if _get(result, "is_error", "isError"):
            data["code"] = "mcp-tool-error"
            return ToolResult("error", f"{shown} failed: {text or 'the server reported an error'}", data)
        return ToolResult("ok", text or "Done.", data)


class McpTool:
    """One MCP tool as a voice-agent Tool. `hints` holds the raw MCP annotation hints it declared."""

    def __init__(self, spec: ToolSpec, server: _Server, remote_name: str, hints: dict[str, bool],
                 timeout_s: float) -> None:
        self.spec = spec
        self.server_name = server.config.name
        self.remote_name = remote_name
        self.hints = hints
        self._server = server
        self._timeout_s = timeout_s

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return await self._server.call(self.remote_name, arguments, self.spec.name, self._timeout_s)

    def __repr__(self) -> str:
        return f"McpTool({self.spec.name!r} -> {self.server_name}:{self.remote_name})"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__


def _code(exc: BaseException) -> Any:
    """The MCP error code of `exc`, looking inside exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return next((c for c in map(_code, exc.exceptions) if c is not None), None)
    return getattr(exc, "code", None)


def _safe_name(name: str) -> str:
    return _NAME_OK.sub("_", name)[:64] or "tool"


def _parameters(tool: Any) -> dict[str, Any] | None:
    schema = dict(_get(tool, "input_schema", "inputSchema") or {"type": "object", "properties": {}})
    schema.pop("x-risk", None)
    if schema.get("type") != "object":
        return None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError:
        return None
    return schema


class McpToolbox:
    """Connects the configured MCP servers and turns their tools into voice-agent Tools.

    `reserved_names` are names already taken (built-in tools): an MCP tool with such a name, or a name two servers
    share, is prefixed with its server's name (`<server>_<tool>`).
    """

    def __init__(self, servers: Sequence[McpServerConfig], *, reserved_names: Iterable[str] = (),
                 start_timeout_s: float = 30.0, call_timeout_s: float = 60.0, errlog: TextIO | None = None) -> None:
        self._configs = list(servers)
        self._reserved = set(reserved_names)
        self._start_timeout_s = start_timeout_s
        self._call_timeout_s = call_timeout_s
        self._errlog = errlog if errlog is not None else sys.stderr
        self._servers: list[_Server] = []
        self.failures: dict[str, str] = {}
        """Server name -> why it was skipped at start."""

    async def start(self) -> list[Tool]:
        started = [_Server(cfg, self._errlog) for cfg in self._configs]
        for srv in started:
            srv.task = asyncio.create_task(srv.own(), name=f"mcp-{srv.config.name}")
        deadline = asyncio.get_running_loop().time() + self._start_timeout_s
        listed: list[tuple[_Server, Any]] = []
        try:
            for srv in started:
                remaining = max(0.1, deadline - asyncio.get_running_loop().time())
                try:
                    tools = await asyncio.wait_for(asyncio.shield(srv.ready), remaining)
                except Exception as exc:  # noqa: BLE001 - any failure skips this server only
                    self._skip(srv, exc)
                    await self._stop(srv, cancel=isinstance(exc, TimeoutError))
                    continue
                self._servers.append(srv)
                listed.extend((srv, t) for t in tools)
        except BaseException:  # cancelled while starting: leave no server process behind
            await asyncio.gather(*(self._stop(s, cancel=True) for s in started), return_exceptions=True)
            self._servers = []
            raise
        return self._build(listed)

    def _skip(self, srv: _Server, exc: Exception) -> None:
        if isinstance(exc, TimeoutError):
            reason = f"it did not finish the MCP handshake within {self._start_timeout_s:g} s"
        elif _code(exc) == CONNECTION_CLOSED:
            reason = "it exited (or closed its output) before finishing the MCP handshake"
        else:
            reason = _describe(exc)
        self.failures[srv.config.name] = reason
        log.error("MCP server %s (%s) skipped: %s", srv.config.name, srv.config.command, reason)

    def _build(self, listed: list[tuple[_Server, Any]]) -> list[Tool]:
        owners: dict[str, set[str]] = {}
        for srv, tool in listed:
            owners.setdefault(_safe_name(tool.name), set()).add(srv.config.name)
        taken = set(self._reserved)
        result: list[Tool] = []
        for srv, tool in listed:
            params = _parameters(tool)
            if params is None:
                log.warning("MCP server %s: skipping tool %r, its input schema is not a valid object schema",
                            srv.config.name, tool.name)
                continue
            name = _safe_name(tool.name)
            if len(owners[name]) > 1 or name in self._reserved:
                name = _safe_name(f"{srv.config.name}_{tool.name}")
            base, n = name, 2
            while name in taken:
                name, n = _safe_name(f"{base[:60]}_{n}"), n + 1
            taken.add(name)
            ann = getattr(tool, "annotations", None)
            description = _get(tool, "description") or _get(ann, "title") or _get(tool, "title") or ""
            spec = ToolSpec(name=name, description=description, parameters=params, risk=risk_metadata(tool))
            result.append(McpTool(spec, srv, tool.name, annotation_hints(tool), self._call_timeout_s))
        return result

    async def _stop(self, srv: _Server, cancel: bool = False) -> None:
        """Let the owner task close its client; cancel it if asked or if closing hangs (stdio shutdown is bounded)."""
        srv.stop.set()
        task = srv.task
        if task is None or task.done():
            return
        if not cancel:
            try:
                await asyncio.wait_for(asyncio.shield(task), self._start_timeout_s)
                return
            except Exception:  # noqa: BLE001
                pass
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001
            pass

    async def aclose(self) -> None:
        servers, self._servers = self._servers, []
        await asyncio.gather(*(self._stop(s) for s in servers), return_exceptions=True)

    async def __aenter__(self) -> "McpToolbox":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
