"""Printed events and log lines: what may reach a terminal, a log file or the systemd journal.

The rule: at the default level nothing personal (no transcripts, arguments, results or replies) is printed or
logged. `-v` shows personal text on a terminal or in a pipe, but never under systemd (detected by `INVOCATION_ID`,
`JOURNAL_STREAM` or `NOTIFY_SOCKET` in the environment), where the journal keeps it for weeks and every member of
the `adm`/`systemd-journal` groups can read it, unless `[appliance] journal_text = true`. Secrets are masked in
every case, in every log line, by the one `Redactor`.

Log calls in voice_agent that include personal text wrap it in `Personal(...)`: it prints as `<N chars>` unless
text is allowed. Other libraries' DEBUG records (which may dump requests or payloads) are dropped unless text is
allowed."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from ..events import PERSONAL_KINDS
from .redact import Redactor
from .view import EventView

SYSTEMD_VARIABLES = ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """Started by systemd (its output goes to the journal)?"""
    env = os.environ if env is None else env
    return any(env.get(k) for k in SYSTEMD_VARIABLES)


def text_allowed(verbose: bool, journal_text: bool, env: Mapping[str, str] | None = None) -> bool:
    """May personal text be printed and logged? Only with -v, and under systemd only when configured."""
    return verbose and (journal_text or not under_systemd(env))


@dataclass
class _State:
    show_text: bool = False
    redactor: Redactor = Redactor()


_state = _State()


def configure(redactor: Redactor, show_text: bool) -> None:
    """Set the process-wide rule for log lines (called once the configuration is known)."""
    _state.redactor, _state.show_text = redactor, show_text


def printed_view() -> EventView:
    """The view for events printed on stdout (human or --json), following the process-wide rule."""
    return EventView(frozenset(PERSONAL_KINDS) if _state.show_text else frozenset(), _state.redactor)


def redactor() -> Redactor:
    return _state.redactor


class Personal:
    """Personal text as a log argument: `log.debug("no audio for %s", Personal(text))`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = str(text)

    def __str__(self) -> str:
        return self.text if _state.show_text else f"<{len(self.text)} chars>"

    def __repr__(self) -> str:
        return repr(self.text) if _state.show_text else f"<{len(self.text)} chars>"


class LogPrivacy(logging.Filter):
    """On a handler: masks secrets in every record (message and traceback); drops other libraries' DEBUG records
    unless personal text is allowed."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if (not _state.show_text and record.levelno < logging.INFO
                and not record.name.startswith("voice_agent")):
            return False
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it itself
            return True
        record.msg, record.args = _state.redactor.text(message), None
        if record.exc_info or record.exc_text:  # another handler may have formatted (and cached) it already
            text = record.exc_text or self._formatter.formatException(record.exc_info)  # type: ignore[arg-type]
            record.exc_text = _state.redactor.text(text)
        return True


def child_stderr(logger_name: str, level: int = logging.WARNING) -> TextIO:
    """A file with a real descriptor to hand to child processes as their stderr (MCP servers): each line they write
    becomes a log record of `logger_name` whose text counts as personal (a server may log what it was asked or what
    it read), so the journal shows `<N chars>` unless text is allowed, and secrets are masked either way."""
    read_fd, write_fd = os.pipe()
    logger = logging.getLogger(logger_name)

    def pump() -> None:
        with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    logger.log(level, "%s", Personal(line.rstrip()))

    threading.Thread(target=pump, name=f"{logger_name}-stderr", daemon=True).start()
    return os.fdopen(write_fd, "w", buffering=1, encoding="utf-8")


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, LogPrivacy) for f in handler.filters):
            handler.addFilter(LogPrivacy())
