"""`voice-agent run --json` as a real child process on the ALSA test devices (tests/support/alsa.py): a microphone
that can vanish and come back, JSON events read from stdout, and a SIGTERM stop that is timed and checked."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from support.alsa import ASOUNDRC, SwitchableMic

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 10.0  # systemd's TimeoutStopSec=20 in our unit; the appliance's own deadline is 8 s


def write_config(path: Path, broker, data_dir: Path, extra: str = "", llm_url: str = "http://127.0.0.1:9/v1",
                 llm_timeout_s: float | None = None) -> Path:
    """The sample home (tests/data/home.toml) on the test broker's port, with its data in `data_dir`."""
    home = (ROOT / "tests/data/home.toml").read_text()
    home = home.replace('[mqtt]\nhost = "127.0.0.1"\nport = 1883', f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}')
    home = home.replace("[appliance]\n", f'[appliance]\ndata_dir = "{data_dir}"\n')
    llm = f'base_url = "{llm_url}"' + (f"\ntimeout_s = {llm_timeout_s}" if llm_timeout_s else "")
    home = home.replace('base_url = "http://127.0.0.1:8000/v1"', llm)
    path.write_text(home + extra)
    return path


class Events:
    """Reads JSON events from the child's stdout in a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.items: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc) -> None:
        for line in proc.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.items.append(item)
                self.cond.notify_all()

    def wait(self, pred, timeout: float = 60) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.items), timeout)

    def wait_type(self, kind: str, timeout: float = 60) -> bool:
        return self.wait(lambda ev: any(e["type"] == kind for e in ev), timeout)


class LiveAppliance:
    """The real `voice-agent run` process with its HOME holding the ALSA test devices' .asoundrc."""

    def __init__(self, tmp_path: Path, broker, *, extra_config: str = "", llm_url: str = "http://127.0.0.1:9/v1",
                 llm_timeout_s: float | None = None, env_extra: dict | None = None,
                 run_args: tuple[str, ...] = ()) -> None:
        self.tmp = tmp_path
        self.run_args = run_args
        home = tmp_path / "home"
        home.mkdir(parents=True, exist_ok=True)
        fifo, self.playback = home / "capture.fifo", home / "playback.raw"
        if not fifo.exists():
            os.mkfifo(fifo)
        (home / ".asoundrc").write_text(ASOUNDRC.format(out=self.playback, inp=fifo))
        self.mic = SwitchableMic(fifo)
        self.mic.start()
        self.data_dir = tmp_path / "data"
        self.config = write_config(tmp_path / "config.toml", broker, self.data_dir, extra_config, llm_url,
                                   llm_timeout_s)
        self.env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.update(env_extra or {})
        self.stderr_path = tmp_path / "stderr.log"
        self.proc: subprocess.Popen | None = None
        self.events: Events | None = None

    def start(self) -> LiveAppliance:
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "voice_agent.cli", "--config", str(self.config),
                                          "run", "--json", *self.run_args], stdout=subprocess.PIPE, stderr=err, text=True,
                                         env=self.env, cwd=ROOT)
        self.events = Events(self.proc)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_stderr(self, text: str, timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def say(self, pcm: np.ndarray) -> None:
        self.mic.say(pcm)

    def terminate(self, bound_s: float = STOP_BOUND_S) -> tuple[int | None, float]:
        """SIGTERM, then wait up to `bound_s`: (exit code or None if still running, seconds taken)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(bound_s)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - t0

    def audit_closed_cleanly(self) -> bool:
        """The audit log's write-ahead log was checkpointed and removed (the last connection closed) and the
        database passes SQLite's integrity check."""
        db = self.data_dir / "audit.db"
        if not db.exists() or db.with_name("audit.db-wal").exists():
            return False
        with sqlite3.connect(db) as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self.mic.stopped.set()
        self.mic.present.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> LiveAppliance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
