"""Erasing personal text from the audit log so that it leaves the file, not just the table.

Every column that can hold personal text is blanked: `user_request` (what was said), `confirmation` (the answer to
the prompt), `arguments` (message texts, recipients), `summary` (the action in words), `outcome` (results, mail
bodies, MCP output) and `reasons` (the classifier's reasons quote argument names and untrusted words). What stays
is the skeleton a safety record needs: when, which tool, from where, the decision and its score, the status.

Blanking rewrites the row, but the old bytes would survive in three places: free pages of the database file, page
images in the write-ahead log, and the unused tail of the rewritten page. `secure_delete` (set by AuditLog) zeroes
freed content; `VACUUM` rebuilds the file from live rows only; `wal_checkpoint(TRUNCATE)` copies the result back and
cuts the -wal file to zero bytes. A reader holding an old snapshot (e.g. a long `voice-agent log` in another
process) can keep the checkpoint from finishing: the result says so and the next run retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..audit import AuditLog

log = logging.getLogger(__name__)

PERSONAL_COLUMNS: dict[str, str] = {
    "user_request": "''",
    "confirmation": "''",
    "arguments": "'{}'",
    "summary": "''",
    "outcome": "''",
    "reasons": "'[]'",
}
"""Column -> the blank value it gets."""

_SET = ", ".join(f"{c}={blank}" for c, blank in PERSONAL_COLUMNS.items())
_HOLDS_TEXT = " OR ".join(f"{c} != {blank}" for c, blank in PERSONAL_COLUMNS.items())


@dataclass(frozen=True)
class Erased:
    rows: int
    """Rows whose personal text was erased."""
    compacted: bool
    """The file was rebuilt and the write-ahead log emptied (False: nothing to do, or a reader held it open)."""


def erase(audit: "AuditLog", before: float | None) -> Erased:
    """Erase personal text of actions proposed before `before` (wall-clock seconds; None: all of them), then
    compact the file. Raises AuditError when the log cannot be written."""
    with audit.write("erase") as conn:
        rows = conn.execute(f"UPDATE actions SET {_SET} WHERE (? IS NULL OR ts < ?) AND ({_HOLDS_TEXT})",
                            (before, before)).rowcount
    return Erased(rows, compact(audit) if rows else False)


def compact(audit: "AuditLog") -> bool:
    """Rebuild the database from live rows and empty the write-ahead log. False when another process's open read
    kept the log from being emptied (the erased text may stay in the -wal file until it is retried)."""
    with audit.maintenance("compact") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        busy, _frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("audit log: another process is reading %s; erased text stays in its write-ahead log until "
                    "the next erasure", audit.path)
    return not busy
