"""A server that accepts TCP connections, reads what it is sent and never answers: an LLM server that has stalled
(a wedged GPU, a deadlocked worker). Prints `LISTENING http://HOST:PORT/v1` once listening and `ACCEPTED` for every
connection, so a test knows when a request is hanging on it.

Run:  python tests/support/blackhole.py [--port 0]"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Self


def serve(host: str, port: int) -> None:
    srv = socket.create_server((host, port))
    print(f"LISTENING http://{host}:{srv.getsockname()[1]}/v1", flush=True)
    held: list[socket.socket] = []

    def drain(conn: socket.socket) -> None:
        while conn.recv(65536):
            pass

    while True:
        conn, _ = srv.accept()
        held.append(conn)  # never closed, never answered
        print("ACCEPTED", flush=True)
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


class BlackholeServer:
    """The server above as a child process: `base_url`, and `wait_accepted()` for a hanging request."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.base_url = ""
        self.accepted = threading.Event()

    def start(self) -> Self:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        self.base_url = line.split()[1]
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ACCEPTED"):
                self.accepted.set()

    def wait_accepted(self, timeout: float) -> bool:
        return self.accepted.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        sys.exit(0)
