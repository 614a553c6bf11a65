"""`voice-agent run --private-broker` (what `make run` does): when the configured MQTT broker is on this machine and
nothing listens on its port, start a private mosquitto for this session, so that the embedded defaults show
announcements working out of the box. It listens on the configured address only, allows anonymous clients (it is
reachable from this machine alone), keeps nothing on disk, and ends with the appliance (also if the appliance dies:
started through util-linux's `setpriv --pdeathsig TERM`, the kernel sends it SIGTERM when its parent exits). An
installed broker that is running is always used as is."""

from __future__ import annotations

import getpass
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .config import MqttConfig
from .errors import MqttError

log = logging.getLogger(__name__)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wanted(cfg: MqttConfig) -> bool:
    """A private broker is wanted when MQTT is on, plain (no TLS, no credentials) and local, and nothing listens."""
    return (cfg.enabled and not cfg.tls and not cfg.username and cfg.host in LOCAL_HOSTS
            and not listening(cfg.host, cfg.port))


class PrivateBroker:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._dir: tempfile.TemporaryDirectory | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise MqttError("mosquitto is not installed, so no private broker can be started",
                            code="mqtt-private-broker-failed", fix="sudo apt-get install mosquitto  (make setup does)")
        self._dir = tempfile.TemporaryDirectory(prefix="voice-agent-broker-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
                        f"user {getpass.getuser()}\nlog_dest none\n"
                        "max_packet_size 65536\n")  # no 256 MB messages in the broker either (README: Floods)
        setpriv = shutil.which("setpriv")  # no preexec_fn: forking a threaded process into Python code can deadlock
        cmd = [setpriv, "--pdeathsig", "TERM", "--", exe] if setpriv else [exe]
        self.proc = subprocess.Popen([*cmd, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
                self.stop()
                raise MqttError(f"the private mosquitto exited at once ({err or self.proc.returncode})",
                                code="mqtt-private-broker-failed")
            if listening(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise MqttError(f"the private mosquitto did not listen on {self.host}:{self.port} within {timeout_s:g} s",
                        code="mqtt-private-broker-failed")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def start_if_wanted(cfg: MqttConfig, announce_topic: str, say) -> PrivateBroker | None:
    """Start a private broker when `wanted(cfg)`; say one line about it (or why it could not start)."""
    if not wanted(cfg):
        return None
    broker = PrivateBroker(cfg.host, cfg.port)
    try:
        broker.start()
    except MqttError as exc:
        say(f"no MQTT broker on {cfg.host}:{cfg.port}, and {exc.message}" + (f" ({exc.fix})" if exc.fix else ""))
        return None
    say(f"started a private MQTT broker on {cfg.host}:{cfg.port} for this session (it stops with the appliance; "
        f"try: mosquitto_pub -p {cfg.port} -t {announce_topic} -m 'Dinner is ready')")
    return broker
