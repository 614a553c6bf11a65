"""Tools the appliance can act through. Every call goes through `voice_agent.executor.Executor`."""

from .base import RiskMetadata, Tool, ToolCall, ToolRegistry, ToolResult, ToolSpec

__all__ = ["RiskMetadata", "Tool", "ToolCall", "ToolRegistry", "ToolResult", "ToolSpec"]
