"""Test helpers: a REAL mosquitto broker on a free loopback port, and paho clients that collect messages.

    broker = Broker(tmp_path, users={"voice": "pw"}, acl=ACL_TEXT, tls=True)
    broker.start(); ...; broker.restart(); ...; broker.stop()

The broker writes its config, password file, ACL, certificates, persistence db and log into `workdir`. It keeps its
port across stop/start/restart, and persistence is on by default so retained messages and persistent (clean_session
False) sessions survive a restart, as on a real installation."""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from voice_agent.config import MqttConfig

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(directory: Path, hostnames: tuple[str, ...] = ("localhost",),
                   ips: tuple[str, ...] = (HOST,)) -> TlsFiles:
    """A throw-away CA and a server certificate it signed, valid for the given names and addresses."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voice-agent test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    files.server_key.chmod(0o600)
    return files


class Broker:
    """A mosquitto process configured by the test. `users` -> password file (mosquitto_passwd), `acl` -> ACL file
    text, `tls` -> a TLS-only listener with a generated CA and server certificate."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, acl: str | None = None,
                 tls: bool = False, allow_anonymous: bool | None = None, persistence: bool = True,
                 port: int | None = None) -> None:
        self.dir = Path(workdir) / f"mosquitto-{os.getpid()}-{id(self):x}"
        self.dir.mkdir(parents=True)
        self.port = port or free_port()
        self.host = HOST
        self.users = dict(users or {})
        self.tls_files = make_tls_files(self.dir / "tls") if tls else None
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} {HOST}", f"user {getpass.getuser()}",
                 f"log_dest file {self.log_path}", "log_type all", "connection_messages true",
                 f"persistence {'true' if persistence else 'false'}", f"persistence_location {self.dir}/",
                 f"allow_anonymous {'true' if (allow_anonymous if allow_anonymous is not None else not users) else 'false'}"]
        if users:
            pw = self.dir / "passwd"
            pw.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), name, password], check=True,
                               capture_output=True)
            lines.append(f"password_file {pw}")
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            (self.dir / "acl").chmod(0o600)
            lines.append(f"acl_file {self.dir / 'acl'}")
        if self.tls_files:
            lines += [f"cafile {self.tls_files.ca_cert}", f"certfile {self.tls_files.server_cert}",
                      f"keyfile {self.tls_files.server_key}", "tls_version tlsv1.2"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    # lifecycle
    def start(self, timeout: float = 20.0) -> Self:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.dir / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=stderr, stderr=stderr,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log_text()}")
            if port_open(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s:\n{self.log_text()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM; the persistence db is saved)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Crash the broker (SIGKILL): nothing is saved."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads the password file and the ACL."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        out = []
        for p in (self.log_path, self.dir / "stderr.log"):
            if p.exists():
                out.append(p.read_text(errors="replace")[-6000:])
        return "\n".join(out)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # client settings
    @property
    def ca_file(self) -> str:
        return str(self.tls_files.ca_cert) if self.tls_files else ""

    def mqtt_config(self, **overrides: object) -> MqttConfig:
        """An MqttConfig pointing at this broker (TLS and CA filled in when the broker uses TLS). The announcement
        rate limit is off (tests that send several announcements check other things; the limit's own tests in
        tests/test_mqtt_limits.py set it)."""
        base = MqttConfig(host=self.host, port=self.port, tls=self.tls_files is not None, ca_file=self.ca_file,
                          keepalive_s=10, announce_per_minute=0)
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


class Client:
    """A paho client for tests: connects (auto-reconnects), subscribes on every connect, collects messages."""

    def __init__(self, broker: Broker, subscribe: str | list[str] = (), *, client_id: str = "",
                 clean_session: bool = True, username: str | None = None, password: str | None = None,
                 tls: bool | None = None, host: str | None = None) -> None:
        self.topics = [subscribe] if isinstance(subscribe, str) else list(subscribe)
        self.messages: list[Received] = []
        self.cond = threading.Condition()
        self.connect_results: list[paho.ReasonCode] = []
        self._subscribed = threading.Event()
        self._pending_sub: set[int] = set()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls if tls is not None else broker.tls_files is not None:
            self.client.tls_set_context(ssl.create_default_context(cafile=broker.ca_file or None))
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.disconnects: list[str] = []
        self.broker, self.host = broker, host or broker.host

    def _on_connect(self, client, _ud, _flags, reason, _props):  # type: ignore[no-untyped-def]
        with self.cond:
            self.connect_results.append(reason)
            self.cond.notify_all()
        if reason.is_failure:
            return
        if not self.topics:
            self._subscribed.set()
            return
        _rc, mid = client.subscribe([(t, 1) for t in self.topics])
        self._pending_sub.add(mid)

    def _on_disconnect(self, _client, _ud, _flags, reason, _props):  # type: ignore[no-untyped-def]
        with self.cond:
            self.disconnects.append(str(reason))
            self.cond.notify_all()

    def _on_subscribe(self, _client, _ud, mid, _reasons, _props):  # type: ignore[no-untyped-def]
        if mid in self._pending_sub:
            self._subscribed.set()

    def _on_message(self, _client, _ud, msg):  # type: ignore[no-untyped-def]
        with self.cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self.cond.notify_all()

    def start(self, wait: bool = True, timeout: float = 30.0) -> Self:
        self.client.connect_async(self.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        if wait and not self._subscribed.wait(timeout):
            raise TimeoutError(f"test client could not connect/subscribe: {self.connect_results}\n"
                               f"{self.broker.log_text()}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                timeout: float = 30.0) -> None:
        """Publish and wait until the broker acknowledged it (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish on {topic} not acknowledged within {timeout}s")

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.messages), timeout)

    def wait_connect_result(self, timeout: float = 30.0) -> str:
        """'ok', the broker's refusal reason, 'disconnected: ...' (dropped before CONNACK) or 'timeout'."""
        with self.cond:
            self.cond.wait_for(lambda: bool(self.connect_results or self.disconnects), timeout)
            if self.connect_results:
                reason = self.connect_results[0]
                return "ok" if not reason.is_failure else str(reason)
            return f"disconnected: {self.disconnects[0]}" if self.disconnects else "timeout"

    def on(self, topic: str) -> list[Received]:
        with self.cond:
            return [m for m in self.messages if m.topic == topic]


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` passes (for state that has no notification)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


class Collector:
    """Thread-safe sink for callbacks (e.g. MqttLink's on_announcement, called from paho's thread)."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self.cond = threading.Condition()

    def __call__(self, item: object) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[object]], bool], timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.items), timeout)

    def snapshot(self) -> list[object]:
        with self.cond:
            return list(self.items)


def try_connect(broker: Broker, *, username: str | None = None, password: str | None = None,
                tls: bool | None = None, timeout: float = 20.0) -> str:
    """One connection attempt: 'ok', the broker's refusal reason, or the transport error."""
    c = Client(broker, username=username, password=password, tls=tls)
    c.client.reconnect_delay_set(5, 5)  # type: ignore[arg-type]
    try:
        c.client.connect(broker.host, broker.port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return f"transport-error: {type(exc).__name__}: {exc}"
    c.client.loop_start()
    try:
        return c.wait_connect_result(timeout)
    finally:
        c.stop()


LINK_CHILD = '''
import dataclasses, json, logging, sys, time
from voice_agent.config import ApplianceConfig, MqttConfig
from voice_agent.mqtt import MqttLink
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
args = json.loads(sys.argv[1])
link = MqttLink(MqttConfig(**args["mqtt"]), ApplianceConfig(**args["appliance"]),
                on_announcement=lambda req: print("ANNOUNCE", json.dumps(dataclasses.asdict(req)), flush=True),
                reconnect_min_s=0.2, reconnect_max_s=2.0)
link.start()
if not link.wait_connected(60):
    sys.exit(3)
print("CONNECTED", flush=True)
while True:
    time.sleep(1)
'''


def spawn_link_process(cfg: MqttConfig, appliance: object) -> subprocess.Popen[str]:
    """A separate process running an MqttLink (so a test can kill -9 it). Prints CONNECTED when ready."""
    import json
    import sys

    args = json.dumps({"mqtt": dataclasses.asdict(cfg), "appliance": dataclasses.asdict(appliance)})
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", LINK_CHILD, args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=root)
