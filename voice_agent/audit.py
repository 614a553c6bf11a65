"""The audit log: every proposed action, in SQLite (WAL, synchronous=FULL).

An action is written before it runs (status `pending`) and again after (`executed`, `failed`, `cancelled`,
`denied`), so a crash never leaves it unrecorded. The process that writes the log holds an exclusive lock on
`<db>.lock`; whoever opens the log next while no writer holds that lock marks the rows still `pending` as
`unknown` (interrupted: the action may or may not have run). A reader opened beside a live appliance (e.g.
`voice-agent log`) therefore never mislabels the appliance's in-flight actions.

Any storage failure (full or read-only disk, a locked or corrupt database) raises `AuditError`
(`audit-unavailable`); the caller must then refuse the action. The file is created mode 0600 and a directory the
log creates is mode 0700.

Personal text (what was said, the answer to a confirmation, arguments, the action's summary, its outcome, the
classifier's reasons) passes the `Redactor` before it is written, so a spoken PIN or a password is never stored; with
`store_transcripts=False` none of it is stored at all. Erasing it later (retention, `voice-agent log --forget`) is
`voice_agent/privacy/erasure.py`; wording (`summary_today`, `format_log`) is `voice_agent/audit_wording.py`.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .audit_wording import action_phrase, format_log, join_clauses, status_clause
from .errors import AuditError
from .privacy.redact import Redactor
from .tools.base import ToolCall

__all__ = ["AuditEntry", "AuditLog", "action_phrase", "format_log", "join_clauses", "status_clause"]

SCHEMA_VERSION = 1
DECISIONS = ("allow", "confirm", "deny")
FINAL_STATUSES = ("executed", "failed", "cancelled", "denied")
INTERRUPTED = "interrupted: the appliance stopped before this action finished; it may or may not have happened"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    source TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    provenance TEXT NOT NULL DEFAULT '{}',
    decision TEXT NOT NULL,
    score REAL NOT NULL,
    reasons TEXT NOT NULL,
    user_request TEXT NOT NULL DEFAULT '',
    confirmation TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    finished_ts REAL,
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_ts ON actions(ts);
"""
_COLUMNS = ("id, ts, tool, arguments, source, decision, score, reasons, user_request, confirmation, status, "
            "outcome, summary, finished_ts, call_id, provenance")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: float
    tool: str
    arguments: dict[str, Any]
    source: str
    decision: str
    score: float
    reasons: tuple[str, ...]
    user_request: str
    confirmation: str
    status: str
    outcome: str
    summary: str = ""
    """What the action was, as an imperative phrase ("turn off the kitchen light"); may be empty."""
    finished_ts: float | None = None
    call_id: str = ""
    provenance: dict[str, str] = field(default_factory=dict)


def _explain(exc: BaseException) -> tuple[str, str]:
    """(what went wrong, how to fix it) for a storage error."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    errno = getattr(exc, "errno", None)
    text = str(exc).lower()
    if name == "SQLITE_FULL" or errno == 28 or "disk is full" in text or "no space" in text:
        return "the disk is full", "free space on the disk that holds the audit log"
    if name.startswith("SQLITE_READONLY") or errno in (13, 30) or "readonly" in text or "read-only" in text:
        return "the audit log cannot be written (read-only file system or no permission)", \
            "make the data directory writable by the appliance"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "the audit log is locked by another process", "stop the other process that holds the audit log"
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
        return "the audit log file is corrupt", "move the damaged audit log file aside; a new one will be created"
    if name == "SQLITE_IOERR_WRITE" or errno == 27 or "file too large" in text:
        return "the audit log cannot grow (disk full or file size limit)", "free space on the audit log's disk"
    return f"the audit log failed: {exc}", "check the disk that holds the audit log"


class AuditLog:
    """The appliance's record of every proposed action. Thread-safe; each call is one short transaction."""

    def __init__(self, path: Path, store_transcripts: bool = True, *, busy_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time, redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        self.store_transcripts = store_transcripts
        """False: no personal text is written (only tool, decision, score, status and times)."""
        self.redactor = redactor or Redactor()
        self._clock = clock
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self.recovered = 0
        """How many interrupted actions this open marked `unknown`."""
        try:
            self._prepare_files()
            with self._guard("open"):
                self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                             check_same_thread=False)
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise AuditError(f"the audit log at {self.path} cannot use write-ahead logging (mode {mode})",
                                     fix="put the data directory on a local file system")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.execute("PRAGMA secure_delete=ON")  # blanked transcripts are overwritten, not left behind
                with self._transaction():
                    version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                    if version > SCHEMA_VERSION:
                        raise AuditError(f"the audit log at {self.path} was written by a newer voice-agent "
                                         f"(schema {version})", fix="upgrade voice-agent")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    if self._lock_fd is not None:
                        self.recovered = self._conn.execute(
                            "UPDATE actions SET status='unknown', outcome=?, finished_ts=? WHERE status='pending'",
                            (INTERRUPTED, self._clock())).rowcount
            self._tighten(self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm"))
        except BaseException:
            self.close()
            raise

    # ---- opening -------------------------------------------------------------------------------------------
    def _prepare_files(self) -> None:
        directory = self.path.parent
        try:
            if not directory.exists():
                directory.mkdir(parents=True, mode=0o700)
                directory.chmod(0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            self._tighten(self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm"))
            lock_path = self.path.with_name(self.path.name + ".lock")
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._tighten(lock_path)
        except OSError as exc:
            what, fix = _explain(exc)
            raise AuditError(f"cannot open the audit log at {self.path}: {what} ({exc.strerror})", fix=fix) from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_fd = lock_fd  # we are the writer: pending rows left in the log are from a dead process
        except OSError:
            os.close(lock_fd)  # another live process writes this log: leave its pending rows alone

    @staticmethod
    def _tighten(*paths: Path) -> None:
        for p in paths:
            try:
                os.chmod(p, 0o600)
            except OSError:
                pass

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except AuditError:
            raise
        except (sqlite3.Error, OSError) as exc:
            what, fix = _explain(exc)
            raise AuditError(f"audit log {action} failed at {self.path}: {what}", fix=fix) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")  # a failed COMMIT (disk full) rolls back below, leaving no open transaction
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    @property
    def writer(self) -> bool:
        """True when this process holds the writer lock (and so recovered interrupted actions on open)."""
        return self._lock_fd is not None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AuditError(f"the audit log at {self.path} is closed")
        return self._conn

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock the log stamps rows with (injected by tests)."""
        return self._clock

    @contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction for maintenance outside this class (erasure), under the log's lock."""
        with self._lock, self._guard(action), self._transaction() as conn:
            yield conn

    @contextmanager
    def maintenance(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection outside any transaction (VACUUM, checkpoints), under the log's lock."""
        with self._lock, self._guard(action):
            yield self._connection()

    def _personal(self, text: str, answer: bool = False) -> str:
        if not self.store_transcripts or not text:
            return ""
        return self.redactor.answer(text) if answer else self.redactor.text(text)

    # ---- writing -------------------------------------------------------------------------------------------
    def propose(self, call: ToolCall, decision: str, score: float, reasons: Sequence[str], user_request: str,
                *, summary: str = "") -> int:
        """Record a proposed action as `pending`, before anything runs. Returns its id."""
        if decision not in DECISIONS:
            raise AuditError(f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}",
                             code="audit-invalid-entry")
        arguments = self.redactor.mapping(call.arguments) if self.store_transcripts else {}
        reasons = [self._personal(str(r)) for r in reasons] if self.store_transcripts else []
        row = (self._clock(), call.name, json.dumps(arguments, default=str, ensure_ascii=False, sort_keys=True),
               call.source, call.call_id, json.dumps(call.provenance, sort_keys=True), decision, float(score),
               json.dumps(reasons, ensure_ascii=False), self._personal(user_request), self._personal(summary),
               os.getpid())
        with self._lock, self._guard("write"), self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO actions (ts, tool, arguments, source, call_id, provenance, decision, score, reasons, "
                "user_request, summary, status, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,'pending',?)", row)
            return int(cur.lastrowid or 0)

    def finish(self, entry_id: int, status: str, outcome: str = "", confirmation: str = "") -> None:
        """Record how a pending action ended: executed, failed, cancelled or denied."""
        if status not in FINAL_STATUSES:
            raise AuditError(f"unknown final status {status!r}; expected one of {', '.join(FINAL_STATUSES)}",
                             code="audit-invalid-entry")
        with self._lock, self._guard("write"), self._transaction() as conn:
            cur = conn.execute(
                "UPDATE actions SET status=?, outcome=?, confirmation=?, finished_ts=? WHERE id=? AND status='pending'",
                (status, self._personal(outcome), self._personal(confirmation, answer=True), self._clock(), entry_id))
            if cur.rowcount == 1:
                return
            found = conn.execute("SELECT status FROM actions WHERE id=?", (entry_id,)).fetchone()
        if found is None:
            raise AuditError(f"there is no audit entry {entry_id}", code="audit-unknown-entry")
        raise AuditError(f"audit entry {entry_id} is already {found[0]}", code="audit-already-finished")

    def prune(self, retention_days: int) -> int:
        """Erase personal text older than `retention_days` (0: all of it) and compact the file. Returns rows
        changed. See voice_agent/privacy/erasure.py."""
        from .privacy.erasure import erase

        if not isinstance(retention_days, int) or isinstance(retention_days, bool) or retention_days < 0:
            raise AuditError(f"transcript retention must be a whole number of days >= 0, not {retention_days!r}",
                             code="audit-invalid-entry")
        return erase(self, None if retention_days == 0 else self._clock() - retention_days * 86400.0).rows

    # ---- reading -------------------------------------------------------------------------------------------
    def recent(self, limit: int = 20, since: float | None = None) -> list[AuditEntry]:
        """The newest `limit` entries (newest first), optionally only those proposed at or after `since`."""
        with self._lock, self._guard("read"):
            rows = self._connection().execute(
                f"SELECT {_COLUMNS} FROM actions WHERE ts >= ? ORDER BY id DESC LIMIT ?",
                (since if since is not None else float("-inf"), max(0, int(limit)))).fetchall()
        return [_entry(r) for r in rows]

    def between(self, start: float, end: float) -> list[AuditEntry]:
        """Entries proposed in [start, end), oldest first."""
        with self._lock, self._guard("read"):
            rows = self._connection().execute(
                f"SELECT {_COLUMNS} FROM actions WHERE ts >= ? AND ts < ? ORDER BY id", (start, end)).fetchall()
        return [_entry(r) for r in rows]

    def summary_today(self, now: float | None = None) -> str:
        """A spoken answer to "what did you do today?" (local calendar day of `now`)."""
        now = self._clock() if now is None else now
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight.timestamp()
        entries = [e for e in self.between(start, now + 1.0)]
        if not entries:
            return "I haven't done anything today."
        clauses = [status_clause(e.status, e.summary or action_phrase(e.tool, e.arguments)) for e in entries]
        return f"Today I {join_clauses(clauses)}."

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the writer lock
                self._lock_fd = None

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    (id_, ts, tool, arguments, source, decision, score, reasons, user_request, confirmation, status, outcome,
     summary, finished_ts, call_id, provenance) = row
    return AuditEntry(id=id_, ts=ts, tool=tool, arguments=json.loads(arguments), source=source, decision=decision,
                      score=score, reasons=tuple(json.loads(reasons)), user_request=user_request,
                      confirmation=confirmation, status=status, outcome=outcome, summary=summary,
                      finished_ts=finished_ts, call_id=call_id, provenance=json.loads(provenance))
