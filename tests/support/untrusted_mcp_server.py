"""A real MCP server (stdio) whose tools return UNTRUSTED text chosen by the test: web pages and notes, e.g. prompt
injections. Read-only: it has no effects. Pages come from the JSON object (name -> text) in `$UNTRUSTED_PAGES`."""

from __future__ import annotations

import json
import os
import sys

from mcp.types import ToolAnnotations

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

server = MCPServer("web", instructions="Untrusted content for voice-agent tests.", log_level="WARNING")


def _pages() -> dict[str, str]:
    path = os.environ.get("UNTRUSTED_PAGES")
    return json.loads(open(path, encoding="utf-8").read()) if path else {}


@server.tool(annotations=ToolAnnotations(title="Fetch a web page", readOnlyHint=True, openWorldHint=True))
def web_fetch(url: str) -> str:
    """Fetch a web page and return its text."""
    pages = _pages()
    if url not in pages:
        raise ToolError(f"404: {url}")
    return pages[url]


def main() -> None:
    server.run("stdio")


if __name__ == "__main__":
    sys.exit(main())
