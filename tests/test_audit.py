"""The audit log: rows before and after execution, crash recovery, disk faults, file modes, retention, wording."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from voice_agent.audit import AuditLog, format_log
from voice_agent.errors import AuditError
from voice_agent.tools.base import ToolCall

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "support" / "home_mcp_server.py"
pytestmark = pytest.mark.timeout(180)

TESLA = ToolCall("shop_buy", {"item": "Tesla Model 3"}, call_id="c1", source="llm", provenance={"item": "user"})
LIGHT = ToolCall("HassTurnOff", {"name": "kitchen light"})


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python child in its own process group, importing voice_agent from this tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_line(proc: subprocess.Popen[str]) -> str:
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.wait(timeout=60)
        raise AssertionError(f"child exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
    return line.strip()


def kill_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


# ---- before and after ----------------------------------------------------------------------------------------
def test_an_action_is_recorded_pending_before_and_final_after(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        entry_id = log.propose(TESLA, "confirm", 0.97, ["costs money", "cannot be undone"], "buy a tesla",
                               summary="buy a Tesla")
        [pending] = log.recent()
        assert (pending.id, pending.status, pending.tool, pending.arguments) == \
            (entry_id, "pending", "shop_buy", {"item": "Tesla Model 3"})
        assert pending.decision == "confirm" and pending.score == 0.97
        assert pending.reasons == ("costs money", "cannot be undone")
        assert pending.user_request == "buy a tesla" and pending.confirmation == "" and pending.finished_ts is None
        assert (pending.source, pending.call_id, pending.provenance) == ("llm", "c1", {"item": "user"})

        log.finish(entry_id, "executed", "Ordered 1 x Tesla Model 3.", confirmation="yes, confirm")
        [done] = log.recent()
        assert (done.status, done.outcome, done.confirmation) == \
            ("executed", "Ordered 1 x Tesla Model 3.", "yes, confirm")
        assert done.finished_ts is not None and done.ts == pending.ts

    # another process (a plain sqlite3 reader) sees the committed rows: they are on disk, not in a cache
    rows = sqlite3.connect(tmp_path / "audit.sqlite3").execute("SELECT status, tool FROM actions").fetchall()
    assert rows == [("executed", "shop_buy")]
    assert sqlite3.connect(tmp_path / "audit.sqlite3").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_finish_calls_are_refused_and_change_nothing(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        entry_id = log.propose(LIGHT, "allow", 0.01, [], "turn off the kitchen light")
        with pytest.raises(AuditError) as err:
            log.finish(entry_id, "done")
        assert err.value.code == "audit-invalid-entry"
        with pytest.raises(AuditError) as err:
            log.finish(entry_id + 99, "executed")
        assert err.value.code == "audit-unknown-entry"
        with pytest.raises(AuditError) as err:
            log.propose(LIGHT, "maybe", 0.5, [], "")
        assert err.value.code == "audit-invalid-entry"
        assert [(e.id, e.status) for e in log.recent()] == [(entry_id, "pending")]
        log.finish(entry_id, "executed")
        with pytest.raises(AuditError) as err:
            log.finish(entry_id, "cancelled")
        assert err.value.code == "audit-already-finished"
        assert log.recent()[0].status == "executed"


def test_recent_is_newest_first_with_limit_and_since(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    with AuditLog(tmp_path / "audit.sqlite3", clock=clock) as log:
        ids = []
        for n in range(5):
            clock.t += 60
            ids.append(log.propose(ToolCall("notes_add", {"n": n}), "allow", 0.0, [], ""))
        assert [e.id for e in log.recent()] == ids[::-1]
        assert [e.id for e in log.recent(limit=2)] == ids[:2:-1]
        assert [e.arguments["n"] for e in log.recent(since=1_000_000.0 + 180)] == [4, 3, 2]


def test_concurrent_writers_from_threads_lose_nothing(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        ids: list[int] = []
        lock = threading.Lock()

        def work(t: int) -> None:
            for n in range(25):
                i = log.propose(ToolCall("notes_add", {"t": t, "n": n}), "allow", 0.0, [], "")
                log.finish(i, "executed")
                with lock:
                    ids.append(i)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        entries = log.recent(limit=1000)
        assert len(set(ids)) == 100 and {e.id for e in entries} == set(ids)
        assert {e.status for e in entries} == {"executed"}


# ---- crashes ---------------------------------------------------------------------------------------------------
PROPOSE_AND_HANG = """
import sys, time
from pathlib import Path
from voice_agent.audit import AuditLog
from voice_agent.tools.base import ToolCall
log = AuditLog(Path(sys.argv[1]))
print(log.propose(ToolCall("shop_buy", {"item": "Tesla Model 3"}), "confirm", 0.97, ["costs money"], "buy a tesla"),
      flush=True)
time.sleep(3600)
"""


def test_kill_9_between_propose_and_finish_leaves_the_action_unknown_never_missing(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    proc = child(PROPOSE_AND_HANG, str(db))
    try:
        entry_id = int(read_line(proc))
        # a reader opened beside the live writer (like `voice-agent log`) must not relabel its in-flight action
        with AuditLog(db) as reader:
            assert reader.recovered == 0 and not reader.writer
            assert [(e.id, e.status) for e in reader.recent()] == [(entry_id, "pending")]
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    with AuditLog(db) as log:
        assert log.recovered == 1 and log.writer
        [entry] = log.recent()
        assert (entry.id, entry.status, entry.tool) == (entry_id, "unknown", "shop_buy")
        assert "may or may not have happened" in entry.outcome
        assert "interrupted while trying to buy Tesla Model 3" in log.summary_today()
    with AuditLog(db) as again:  # recovery happens once
        assert again.recovered == 0 and again.recent()[0].status == "unknown"


PROPOSE_RUN_AND_HANG = """
import asyncio, sys, time
from pathlib import Path
from voice_agent.audit import AuditLog
from voice_agent.config import McpServerConfig
from voice_agent.tools.base import ToolCall
from voice_agent.tools.mcp_tools import McpToolbox

async def main():
    log = AuditLog(Path(sys.argv[1]))
    box = McpToolbox([McpServerConfig("home", sys.executable, [sys.argv[2]], {"HOME_MCP_LEDGER": sys.argv[3]})])
    tools = {t.spec.name: t for t in await box.start()}
    call = ToolCall("bank_transfer", {"to": "Mum", "amount": 25})
    entry = log.propose(call, "confirm", 0.9, ["moves money"], "send mum 25 dollars")
    result = await tools["bank_transfer"].run(call.arguments)
    print(entry, result.status, flush=True)
    await asyncio.sleep(3600)   # killed here: after the effect, before finish()

asyncio.run(main())
"""


def test_kill_9_during_a_real_mcp_action(tmp_path: Path) -> None:
    db, ledger = tmp_path / "audit.sqlite3", tmp_path / "ledger.jsonl"
    proc = child(PROPOSE_RUN_AND_HANG, str(db), str(SERVER), str(ledger))
    try:
        entry_id, status = read_line(proc).split()
        assert status == "ok"
    finally:
        kill_group(proc)  # the appliance and its MCP server die together
    effects = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [(e["tool"], e["to"], e["amount"]) for e in effects] == [("bank_transfer", "Mum", 25)]
    with AuditLog(db) as log:
        [entry] = log.recent()
        assert (entry.id, entry.status, entry.tool) == (int(entry_id), "unknown", "bank_transfer")


# ---- storage faults ------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a real file system that really fills up (needs root, which CI has)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` until not one more byte fits."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_refuses_to_log_and_recovers_when_space_returns(tiny_fs: Path) -> None:
    db = tiny_fs / "voice-agent" / "audit.sqlite3"
    with AuditLog(db) as log:
        first = log.propose(LIGHT, "allow", 0.01, [], "turn off the kitchen light")
        filler = fill(tiny_fs)
        with pytest.raises(AuditError) as err:
            log.propose(TESLA, "confirm", 0.97, ["costs money"], "buy a tesla " * 20000)
        assert err.value.code == "audit-unavailable"
        assert "disk is full" in err.value.message and err.value.fix
        assert [e.id for e in log.recent()] == [first]  # readable, and no half-written row
        filler.unlink()
        second = log.propose(TESLA, "confirm", 0.97, ["costs money"], "buy a tesla " * 20000)
        assert [e.id for e in log.recent()] == [second, first]


def test_opening_on_a_full_disk_is_an_audit_error(tiny_fs: Path) -> None:
    fill(tiny_fs)
    with pytest.raises(AuditError) as err:
        AuditLog(tiny_fs / "audit.sqlite3")
    assert err.value.code == "audit-unavailable" and "disk is full" in err.value.message


def test_a_read_only_file_system_is_an_audit_error(tiny_fs: Path) -> None:
    db = tiny_fs / "audit.sqlite3"
    with AuditLog(db) as log:
        log.propose(LIGHT, "allow", 0.01, [], "")
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    with pytest.raises(AuditError) as err:
        AuditLog(db)
    assert err.value.code == "audit-unavailable" and "read-only" in err.value.message
    with pytest.raises(AuditError) as err:
        AuditLog(tiny_fs / "new" / "audit.sqlite3")
    assert err.value.code == "audit-unavailable"


FILL_UNDER_RLIMIT = """
import json, resource, signal, sys
from pathlib import Path
from voice_agent.audit import AuditLog
from voice_agent.errors import AuditError
from voice_agent.tools.base import ToolCall
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = AuditLog(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
ids = []
try:
    for n in range(1000):
        ids.append(log.propose(ToolCall("notes_add", {"n": n}), "allow", 0.0, [], "words " * 1000))
    print(json.dumps({"ids": ids, "code": None}))
except AuditError as exc:
    print(json.dumps({"ids": ids, "code": exc.code, "message": exc.message}))
"""


def test_a_file_size_limit_is_an_audit_error_and_every_returned_id_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    proc = child(FILL_UNDER_RLIMIT, str(db))
    out, errs = proc.communicate(timeout=120)
    report = json.loads(out)
    assert report["code"] == "audit-unavailable", errs
    assert len(report["ids"]) > 5
    with AuditLog(db) as log:
        assert sorted(e.id for e in log.recent(limit=10_000)) == report["ids"]


def test_a_corrupt_database_is_an_audit_error(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    db.write_bytes(b"this is not an sqlite database\n" * 200)
    with pytest.raises(AuditError) as err:
        AuditLog(db)
    assert err.value.code == "audit-unavailable" and "corrupt" in err.value.message
    assert db.read_bytes().startswith(b"this is not")  # left alone for the user to inspect


def test_a_locked_database_is_an_audit_error(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    with AuditLog(db, busy_timeout_s=0.2) as log:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(AuditError) as err:
            log.propose(LIGHT, "allow", 0.0, [], "")
        assert err.value.code == "audit-unavailable" and "locked" in err.value.message
        other.execute("ROLLBACK")
        other.close()
        log.propose(LIGHT, "allow", 0.0, [], "")
        assert len(log.recent()) == 1


# ---- privacy -----------------------------------------------------------------------------------------------------
def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    db = tmp_path / "state" / "voice-agent" / "audit.sqlite3"
    old = os.umask(0)
    try:
        with AuditLog(db) as log:
            log.propose(LIGHT, "allow", 0.0, [], "")
            for name in ("audit.sqlite3", "audit.sqlite3-wal", "audit.sqlite3-shm", "audit.sqlite3.lock"):
                assert stat.S_IMODE((db.parent / name).stat().st_mode) == 0o600, name
            assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)
    db.chmod(0o644)
    AuditLog(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_transcripts_can_be_kept_off(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3", store_transcripts=False) as log:
        i = log.propose(TESLA, "confirm", 0.97, ["costs money"], "buy a tesla", summary="buy a Tesla")
        log.finish(i, "cancelled", "you said no", confirmation="no way")
        [e] = log.recent()
        # retention 0: nothing personal is stored (issue 11): not what was said, not the answer, not the
        # arguments, summary, outcome or reasons; the skeleton (tool, decision, status) stays
        assert (e.user_request, e.confirmation, e.summary, e.outcome, e.arguments, e.reasons) == ("", "", "", "", {}, ())
        assert (e.tool, e.decision, e.status) == (TESLA.name, "confirm", "cancelled")
    raw = on_disk(tmp_path / "audit.sqlite3")
    assert b"buy a tesla" not in raw.lower() and b"no way" not in raw and b"costs money" not in raw


def on_disk(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def test_prune_blanks_old_transcripts_on_disk_too(tmp_path: Path) -> None:
    clock = Clock(2_000_000_000.0)
    db = tmp_path / "audit.sqlite3"
    with AuditLog(db, clock=clock) as log:
        clock.t -= 40 * 86400
        old = log.propose(LIGHT, "allow", 0.0, [], "turn off the kitchen light")
        log.finish(old, "executed", confirmation="")
        clock.t += 39 * 86400
        new = log.propose(TESLA, "confirm", 0.9, [], "buy a tesla")
        log.finish(new, "cancelled", confirmation="no")
        clock.t += 86400
        assert b"turn off the kitchen light" in on_disk(db)
        assert log.prune(30) == 1
        assert b"turn off the kitchen light" not in on_disk(db) and b"buy a tesla" in on_disk(db)
        by_id = {e.id: e for e in log.recent()}
        assert by_id[old].user_request == "" and by_id[old].tool == "HassTurnOff" and by_id[old].status == "executed"
        assert (by_id[new].user_request, by_id[new].confirmation) == ("buy a tesla", "no")
        assert log.prune(30) == 0
        assert log.prune(0) == 1
        assert b"buy a tesla" not in on_disk(db)
        assert all(e.user_request == "" == e.confirmation for e in log.recent())
        with pytest.raises(AuditError):
            log.prune(-1)


# ---- what did you do today -------------------------------------------------------------------------------------
def test_summary_today_wording(tmp_path: Path) -> None:
    clock = Clock(datetime(2025, 6, 1, 18, 30).timestamp())
    with AuditLog(tmp_path / "audit.sqlite3", clock=clock) as log:
        assert log.summary_today() == "I haven't done anything today."
        clock.t -= 86400  # yesterday: not today
        y = log.propose(ToolCall("HassUnlock", {"name": "front door"}), "confirm", 0.9, [], "")
        log.finish(y, "executed")
        clock.t += 86400 - 3600
        assert log.summary_today() == "I haven't done anything today."
        a = log.propose(LIGHT, "allow", 0.0, [], "", summary="turn off the kitchen light")
        log.finish(a, "executed")
        b = log.propose(TESLA, "confirm", 0.97, [], "", summary="buy a Tesla")
        log.finish(b, "cancelled")
        assert log.summary_today() == "Today I turned off the kitchen light, and cancelled buying a Tesla."
        c = log.propose(ToolCall("bank_transfer", {"to": "John Smith", "amount": 5000}), "deny", 1.0, [], "")
        log.finish(c, "denied")
        d = log.propose(ToolCall("shop_buy", {"item": "coffee beans", "quantity": 2}), "allow", 0.1, [], "")
        log.finish(d, "failed", "out of stock")
        log.propose(ToolCall("access_grant", {"who": "Alice", "door": "front door", "until": "9pm"}),
                    "confirm", 0.9, [], "")
        assert log.summary_today() == (
            "Today I turned off the kitchen light, cancelled buying a Tesla, refused to transfer 5000 to "
            "John Smith, tried to buy 2 coffee beans, but it failed, and am still waiting to grant access to Alice.")


def test_format_log_table(tmp_path: Path) -> None:
    assert format_log([]) == "No actions recorded."
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        i = log.propose(TESLA, "confirm", 0.97, ["costs money"], "buy a tesla")
        log.finish(i, "cancelled", "you said no", confirmation="no")
        table = format_log(log.recent())
    header, row, *details = table.splitlines()
    assert header.split() == ["ID", "TIME", "STATUS", "DECISION", "SCORE", "ACTION"]
    assert row.split()[0] == str(i) and "cancelled" in row and "0.97" in row
    assert 'shop_buy {"item": "Tesla Model 3"}' in row
    assert any("why: costs money" in d for d in details) and any("answer: 'no'" in d for d in details)
