"""Free-form commands inside arguments: shell lines, SQL statements, kubectl/git arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import as_text, flatten, leaf_key

COMMAND_KEYS = {"command", "cmd", "sql", "query", "statement", "script", "args", "shell", "code", "line"}

_RULES: tuple[tuple[re.Pattern[str], str, float], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason, severity) for pattern, reason, severity in (
        (r"\brm\s+(-\w*\s+)*-\w*r\w*\s+/\s*($|[;&|])|\bmkfs|\bdd\s+if=|>\s*/dev/sd|\bformat\s+[a-z]:", "wipes a whole disk", 0.95),
        (r"\b(rm|rmdir|shred|unlink)\b", "deletes files permanently (no trash)", 0.75),
        (r"\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z)?sh\b", "runs a script downloaded from the internet", 0.9),
        (r"\|\s*(nc|ncat|netcat|ssh|curl)\b|\bscp\b|\brsync\b.*@", "sends data to another machine", 0.85),
        (r"/etc/shadow|id_rsa|\.ssh/|\.aws/credentials", "touches credentials", 0.85),
        (r"\bchmod\s+(-\w+\s+)*(-R\s+)?[0-7]?77\b|\bchmod\s+-R", "opens up permissions on many files", 0.75),
        (r"\bdrop\s+(table|database|schema)\b", "drops a database table", 0.9),
        (r"\btruncate\b", "empties a database table", 0.85),
        (r"\bdelete\s+from\b", "deletes database rows permanently", 0.7),
        (r"\bdelete\s+(namespace|ns|pvc|pv|deployment|deploy|statefulset|sts|secret|node)\b|\bdelete\s+.*--all\b",
         "deletes cluster resources", 0.85),
        (r"\bpush\b.*(--force|-f\b)|--force-with-lease", "overwrites history on the remote", 0.75),
        (r"\b(useradd|passwd|visudo|iptables\s+-F)\b", "changes accounts or the firewall", 0.75),
    ))
_READ = re.compile(r"^\s*(sudo\s+)?(select|show|explain|describe|get|ls|df|du|cat|head|tail|uptime|free|ps|top|"
                   r"whoami|date|uname|ping|status|systemctl\s+status|journalctl|git\s+(status|log|diff))\b",
                   re.IGNORECASE)


@dataclass(frozen=True)
class CommandFinding:
    text: str
    reason: str
    severity: float
    read_only: bool


def inspect_commands(arguments: dict) -> list[CommandFinding]:
    found: list[CommandFinding] = []
    for path, value in flatten(arguments):
        if leaf_key(path) not in COMMAND_KEYS or not isinstance(value, str):
            continue
        text = as_text(value)
        hits = [(reason, sev) for pattern, reason, sev in _RULES if pattern.search(text)]
        if hits:
            reason, sev = max(hits, key=lambda h: h[1])
            found.append(CommandFinding(text, reason, sev, False))
        else:
            found.append(CommandFinding(text, "", 0.0, bool(_READ.match(text))))
    return found
