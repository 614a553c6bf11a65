"""Floods over MQTT (issue 11.3), against a real mosquitto: a 150 MB publish on the announce topic never reaches the
appliance's memory (MQTT 5 maximum packet size), and the service's memory is capped. (Rate limits, the bounded queue
and silencing an announcement: tests/test_announce_flood.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.broker import Broker, Client, spawn_link_process
from voice_agent.config import ApplianceConfig

APPLIANCE = ApplianceConfig(room="hall")
BIG_MB = 150


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak resident set since the process started) of `pid`, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def wait_line(proc, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"link process exited ({proc.returncode}): {proc.stderr.read()[-3000:]}")
            continue
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no {prefix!r} line within {timeout}s")


@pytest.mark.slow
def test_a_150_mb_publish_on_the_announce_topic_never_reaches_the_process(tmp_path):
    """The found problem: paho read the whole message before the 4 KiB check (24 -> 461 MiB). With MQTT 5 the link
    tells the broker its maximum packet size and mosquitto never sends it the big message. Peak RSS (VmHWM) of the
    link's own process is read from /proc after the big publish and a small announcement behind it."""
    broker = Broker(tmp_path).start()
    proc = spawn_link_process(broker.mqtt_config(client_id="va-big"), APPLIANCE)
    try:
        wait_line(proc, "CONNECTED", 60)
        time.sleep(0.5)
        before = memory_kib(proc.pid)
        with Client(broker) as pub:
            pub.publish("voice-agent/hall/announce", b"x" * (BIG_MB * 1024 * 1024), timeout=120)
            pub.publish("voice-agent/hall/announce", json.dumps({"text": "The laundry is done."}))
        line = wait_line(proc, "ANNOUNCE", 120)  # the small one behind it: the link is alive and past the big one
        assert json.loads(line.split(" ", 1)[1])["text"] == "The laundry is done."
        after = memory_kib(proc.pid)
        grew_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
        print(f"\nmqtt: {BIG_MB} MB publish on the announce topic: link process peak RSS "
              f"{before['VmHWM'] / 1024:.0f} -> {after['VmHWM'] / 1024:.0f} MiB (+{grew_mib:.1f})")
        assert grew_mib < 20, f"the big publish reached the process: peak RSS grew by {grew_mib:.0f} MiB"
    finally:
        proc.kill()
        proc.wait()
        broker.stop()


def test_the_service_caps_its_memory():
    """MemoryMax= in the unit: whatever slips past the packet limit cannot take the whole machine down."""
    import re

    unit = (Path(__file__).resolve().parent.parent / "systemd/voice-agent.service").read_text()
    found = {k: int(n) * (1024 if unit_ == "G" else 1)
             for k, n, unit_ in re.findall(r"(?m)^(MemoryHigh|MemoryMax)=(\d+)([MG])$", unit)}
    assert set(found) == {"MemoryHigh", "MemoryMax"}, found
    assert 1000 <= found["MemoryHigh"] < found["MemoryMax"] <= 4096  # MiB; the appliance peaks at ~520 MiB
