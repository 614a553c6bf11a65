"""Test helpers for systemd integration: a real notify socket (what systemd binds) and a scratch root that
`systemd-analyze verify --root=` accepts."""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


@dataclass(frozen=True)
class Datagram:
    text: str
    pid: int | None
    """Sender pid from SCM_CREDENTIALS: systemd uses it to enforce NotifyAccess=main."""


class NotifyReceiver:
    """Binds a unix datagram socket like systemd's notify socket, with SO_PASSCRED on."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._dir: str | None = None
        if abstract:
            name = f"voice-agent-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="va-notify-", dir="/tmp")  # short: sun_path is 108 bytes
            path = os.path.join(self._dir, "notify")
            self.sock.bind(path)
            self.env_value = path

    def recv(self, timeout: float = 30.0) -> Datagram | None:
        """The next datagram, or None if none arrives within `timeout`."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        return Datagram(data.decode(), pid)

    def drain(self) -> list[Datagram]:
        out = []
        while (d := self.recv(timeout=0)) is not None:
            out.append(d)
        return out

    def collect(self) -> Collector:
        """Read continuously in a thread, as systemd does: the kernel queues only ~10 datagrams per socket."""
        return Collector(self)

    def close(self) -> None:
        self.sock.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


class Collector:
    def __init__(self, receiver: NotifyReceiver) -> None:
        self.got: list[Datagram] = []
        self._stop = threading.Event()
        self._receiver = receiver
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            d = self._receiver.recv(timeout=0.02)
            if d is not None:
                self.got.append(d)

    def stop(self) -> list[Datagram]:
        self._stop.set()
        self._thread.join()
        self.got.extend(self._receiver.drain())
        return self.got


def host_unit_dir() -> Path:
    for d in HOST_UNIT_DIRS:
        if (d / "sysinit.target").exists():
            return d
    raise RuntimeError("no systemd unit directory with sysinit.target (apt install systemd)")


def make_verifiable(root: Path) -> None:
    """`systemd-analyze verify --root=ROOT` resolves every unit inside ROOT: give it the host's vendor units
    (sysinit.target, network-online.target, mosquitto.service ...), copied, never linked."""
    dest = root / "usr/lib/systemd/system"
    if not dest.exists():
        shutil.copytree(host_unit_dir(), dest, symlinks=True)
    if not (root / "lib").exists():
        (root / "lib").symlink_to("usr/lib")  # merged /usr, for absolute alias links such as /lib/systemd/...


def stub_executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
