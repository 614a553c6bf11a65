"""Typed errors. Every failure the appliance reports carries a kebab-case code, a message for people
and, where one exists, the command or setting that fixes it."""

from __future__ import annotations


class VoiceAgentError(Exception):
    """Base of every error the appliance reports on purpose."""

    code: str = "internal-error"

    def __init__(self, message: str, *, code: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class ConfigError(VoiceAgentError):
    code = "config-invalid"


class ModelError(VoiceAgentError):
    code = "model-missing"


class AudioFormatError(VoiceAgentError):
    code = "audio-format"


class AudioDeviceError(VoiceAgentError):
    code = "audio-device"


class SttError(VoiceAgentError):
    code = "stt-failed"


class TtsError(VoiceAgentError):
    code = "tts-failed"


class LlmError(VoiceAgentError):
    code = "llm-failed"


class ToolError(VoiceAgentError):
    code = "tool-failed"


class MqttError(VoiceAgentError):
    code = "mqtt-failed"


class AuditError(VoiceAgentError):
    code = "audit-unavailable"
