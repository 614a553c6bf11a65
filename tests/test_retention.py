"""Retention and erasure of personal text in the audit log (issue 11.2): enforced on a timer while the appliance runs
(the test moves the audit log's clock a month ahead instead of sleeping), over every column that can hold personal
text; `voice-agent log --forget` erases on demand; the erased text leaves the database file and its write-ahead log
(the raw bytes are searched); `transcript_retention_days = 0` stores nothing personal at all."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voice_agent.audit import AuditLog
from voice_agent.config import ConfigError, load_config, parse_config
from voice_agent.privacy import Redactor
from voice_agent.tools.base import ToolCall

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def on_disk(db: Path) -> bytes:
    """Every byte of the database and its write-ahead log, as stored."""
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists()).lower()


def home_config(tmp_path: Path, **appliance):
    base = load_config(ROOT / "tests/data/home.toml")
    return dataclasses.replace(base, appliance=dataclasses.replace(base.appliance, data_dir=str(tmp_path / "data"),
                                                                   **appliance),
                               safety=dataclasses.replace(base.safety, pin="4711", confirm_timeout_s=30))


async def three_turns(cfg, audit, *, check_s: float, then=None):
    """A command, a PIN-protected action and its spoken answer, typed into a conversation of a real household
    (executor, classifier, audit log, retention timer)."""
    from voice_agent.app import build_household
    from voice_agent.intents import LocalIntents
    from voice_agent.session import Session

    home = await build_household(cfg, LocalIntents(cfg.devices), use_mqtt=False, use_llm=False, use_mcp=False,
                                 audit=audit, retention_check_s=check_s)
    home.start()
    said: list[str] = []
    try:
        conv = home.conversation(Session(room="living_room"), said.append)
        await conv.handle("turn off the kitchen light")
        await conv.handle("unlock the front door")
        await conv.handle("yes four seven one one")
        return said, (await then(home) if then else None)
    finally:
        await home.aclose()


def test_retention_runs_on_a_timer_while_running_and_erases_every_personal_column(tmp_path):
    cfg = home_config(tmp_path)
    db = cfg.data_dir / "audit.db"
    clock = Clock(time.time())
    audit = AuditLog(db, clock=clock, redactor=Redactor.from_config(cfg))
    seen: dict = {}

    async def month_later(home):
        seen["before"] = on_disk(db)
        seen["entries_before"] = audit.recent()
        clock.t += 31 * DAY
        for _ in range(200):  # the timer fires every 0.05 s; give a busy machine up to 10 s
            if home.retention.erased >= 2:
                break
            await asyncio.sleep(0.05)
        seen["after"] = on_disk(db)
        seen["entries_after"] = audit.recent()
        seen["wal"] = db.with_name("audit.db-wal").stat().st_size

    said, _ = asyncio.run(three_turns(cfg, audit, check_s=0.05, then=month_later))
    assert "PIN" in " ".join(said), said  # the lock asked for the PIN
    before, after = seen["before"], seen["after"]
    # positive control: the text was stored ...
    assert b"kitchen light" in before and b"front door" in before, before[:200]
    confirm = [e for e in seen["entries_before"] if e.confirmation]
    assert confirm and confirm[0].confirmation == "yes [redacted]", seen["entries_before"]
    # ... but never the spoken PIN, in any form
    for pin in (b"4711", b"four seven one one", b"4-7-1-1"):
        assert pin not in before
    # a month later, while the appliance was running: every personal column blanked, on disk too
    for text in (b"kitchen", b"front door", b"unlock", b"yes [redacted]", b"mqtt is turned off"):
        assert text not in after, text
    assert seen["wal"] == 0
    rows = seen["entries_after"]
    assert [(e.tool, e.status) for e in rows] == [(e.tool, e.status) for e in seen["entries_before"]]
    for e in rows:
        assert (e.user_request, e.confirmation, e.summary, e.outcome, e.arguments, e.reasons) == \
            ("", "", "", "", {}, ()), e


def test_nothing_personal_is_stored_when_retention_is_zero(tmp_path):
    cfg = home_config(tmp_path, transcript_retention_days=0)
    db = cfg.data_dir / "audit.db"
    audit = AuditLog(db, store_transcripts=False, redactor=Redactor.from_config(cfg))
    seen = {}

    async def look(home):
        seen["raw"] = on_disk(db)
        seen["entries"] = audit.recent()

    asyncio.run(three_turns(cfg, audit, check_s=3600, then=look))
    assert len(seen["entries"]) == 2
    for text in (b"kitchen", b"front door", b"unlock", b"yes", b"4711", b"mqtt is turned off"):
        assert text not in seen["raw"], text


def test_opting_text_out_with_retention_zero_is_a_config_error():
    for key in ("[mqtt]\nfeed_transcripts = true", "[mqtt]\nfeed_results = true", "[appliance]\njournal_text = true"):
        text = "[appliance]\ntranscript_retention_days = 0\n" + key.replace("[appliance]\n", "") + "\n"
        if key.startswith("[mqtt]"):
            text = "[appliance]\ntranscript_retention_days = 0\n" + key + "\n"
        with pytest.raises(ConfigError) as err:
            parse_config(text, "t.toml")
        assert "transcript_retention_days = 0" in str(err.value)
    parse_config("[appliance]\ntranscript_retention_days = 0\n", "t.toml")


def seed(db: Path, now: float) -> None:
    clock = Clock(now - 20 * DAY)
    with AuditLog(db, clock=clock) as log:
        i = log.propose(ToolCall("mail_send", {"to": "lawyer@example.org", "body": "about the divorce papers"},
                                 source="llm"), "confirm", 0.8, ["sends a message outside the household"],
                        "email my lawyer about the divorce papers", summary="send a message about the divorce")
        log.finish(i, "executed", "Sent to lawyer@example.org: about the divorce papers", confirmation="yes")
        clock.t = now - DAY
        j = log.propose(ToolCall("shop_buy", {"item": "flowers for Anna"}, source="llm"), "allow", 0.1, [],
                        "order flowers for anna", summary="buy flowers for Anna")
        log.finish(j, "executed", "Ordered flowers for Anna")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voice_agent.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env or dict(os.environ), timeout=120)


def test_log_forget_erases_on_demand_and_the_text_leaves_the_file(tmp_path):
    data = tmp_path / "data"
    db = data / "audit.db"
    seed(db, time.time())
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[appliance]\ndata_dir = "{data}"\n')
    assert b"divorce" in on_disk(db) and b"anna" in on_disk(db)

    done = cli("--config", str(cfg), "log", "--forget", "--older-than", "10")
    assert done.returncode == 0, done.stderr
    assert "1 of the actions older than 10" in done.stdout, done.stdout
    assert b"divorce" not in on_disk(db) and b"lawyer" not in on_disk(db) and b"anna" in on_disk(db)

    # a reader in another process holding a snapshot cannot keep the text on disk for good: retried next time
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM actions").fetchone()
    done = cli("--config", str(cfg), "log", "--forget")
    assert done.returncode == 0, done.stderr
    assert "erased what was said and done in 1 of all actions" in done.stdout, done.stdout
    assert "another process is reading the log" in done.stdout  # said so, not hidden ...
    assert b"anna" in on_disk(db)  # ... the old page image is still in the write-ahead log
    reader.close()
    with AuditLog(db) as log:
        from voice_agent.privacy.retention import RetentionKeeper

        RetentionKeeper(log, 0).enforce()  # nothing left to erase; empties the write-ahead log anyway
    assert b"anna" not in on_disk(db)
    shown = cli("--config", str(cfg), "log")
    assert "mail_send" in shown.stdout and "shop_buy" in shown.stdout
    assert "divorce" not in shown.stdout and "Anna" not in shown.stdout
    assert cli("--config", str(cfg), "log", "--older-than", "3").returncode == 2
    assert json.loads(cli("--config", str(cfg), "log", "--json").stdout.splitlines()[0])["arguments"] == {}
