"""systemd integration: the sd_notify protocol (READY, STATUS, WATCHDOG, STOPPING) over a unix datagram socket.

systemd passes `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and, when `WatchdogSec=` is set,
`WATCHDOG_USEC` (and `WATCHDOG_PID`). Outside systemd none of these are set and every call is a no-op, so the same
code runs under `make run`, in tests and as a service.

The watchdog is pinged from a task on the asyncio event loop itself: if the loop blocks (a model call run on the
loop by mistake, a deadlock), the pings stop and systemd restarts the service.

The `sdnotify` package is not used: it reads only `os.environ`, connects once, swallows every error silently and
knows nothing of `WATCHDOG_USEC`/`WATCHDOG_PID`; the protocol itself is a single `sendto()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

__all__ = ["Notifier", "parse_notify_socket"]


def parse_notify_socket(value: str) -> str | bytes | None:
    """The address to send to for a `NOTIFY_SOCKET` value: a filesystem path (str), an abstract socket name
    (bytes starting with NUL, from `@name`), or None when unset or unsupported (e.g. `vsock:`)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET=%r is not a unix socket path or @abstract name; systemd notifications are off", value)
    return None


def _one_line(text: str) -> str:
    """Values must not contain newlines: the protocol is one `KEY=value` per line."""
    return " ".join(text.split())


class Notifier:
    """Talks to the service manager. Every method is safe to call when not running under systemd.

    Sends never block the event loop (MSG_DONTWAIT) and never raise: a failed send is logged once per kind of
    failure and otherwise ignored, since a notification is never worth crashing the appliance for."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = parse_notify_socket(env.get("NOTIFY_SOCKET", ""))
        self.enabled: bool = self._address is not None
        self._watchdog_usec = self._parse_watchdog(env)
        self._sock: socket.socket | None = None
        self._logged: set[str] = set()

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> int | None:
        raw = env.get("WATCHDOG_USEC", "")
        if not raw:
            return None
        pid = env.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            return None  # the watchdog belongs to another process (e.g. our parent)
        try:
            usec = int(raw)
        except ValueError:
            log.warning("WATCHDOG_USEC=%r is not a number; watchdog pings are off", raw)
            return None
        return usec if usec > 0 else None

    # -- the protocol ------------------------------------------------------------------------------------------

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments in one datagram. True if it was sent (False when disabled or failed)."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, self._address)
        except OSError as exc:
            kind = type(exc).__name__
            if kind not in self._logged:
                self._logged.add(kind)
                log.warning("cannot notify systemd via %s: %s", self._describe(), exc)
            return False
        return True

    def _describe(self) -> str:
        a = self._address
        return "@" + a[1:].decode(errors="replace") if isinstance(a, bytes) else str(a)

    def ready(self, status: str = "") -> None:
        """Start-up is complete (models loaded and warmed). systemd starts dependent units and the watchdog."""
        self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> None:
        """Free-form status shown by `systemctl status`."""
        self.notify(f"STATUS={_one_line(text)}")

    def stopping(self) -> None:
        """The service is shutting down on purpose."""
        self.notify("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before the start (or stop) times out, e.g. while a large model loads."""
        self.notify(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}")

    def watchdog(self) -> None:
        """One watchdog keep-alive ping."""
        self.notify("WATCHDOG=1")

    # -- the watchdog loop -------------------------------------------------------------------------------------

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC, as systemd recommends); None if there is no watchdog."""
        if not self.enabled or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    async def watchdog_loop(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Ping the watchdog every `watchdog_interval()` seconds while `healthy()` is true; run until cancelled.

        Runs on the event loop on purpose: a blocked loop stops the pings. While `healthy()` is false (or raises)
        no ping is sent, so systemd restarts the service once the watchdog timeout passes; pings resume if it
        recovers in time. Returns at once when there is no watchdog."""
        interval = self.watchdog_interval()
        if interval is None:
            return
        was_healthy = True
        while True:
            try:
                ok = bool(healthy())
            except Exception:  # a broken health check is an unhealthy service
                log.exception("watchdog health check failed")
                ok = False
            if ok:
                self.watchdog()
                if not was_healthy:
                    log.info("healthy again: watchdog pings resumed")
            elif was_healthy:
                log.error("unhealthy: watchdog pings stopped; systemd will restart the service")
            was_healthy = ok
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
