"""Private speech stays private: what leaves the appliance process, and what it keeps.

- `redact`: the one redaction mechanism for secrets (PIN, passwords, codes), used by every output.
- `view`: the shape of an event outside the process (MQTT feed, printed events): types, states, timings; personal
  text only where opted in.
- `journal`: the rule for printed events and log lines (`-v`, systemd).
- `erasure` and `retention`: erasing personal text from the audit log, on demand and on a timer."""

from .journal import Personal
from .redact import MASK, Redactor
from .view import EventView

__all__ = ["MASK", "EventView", "Personal", "Redactor"]
