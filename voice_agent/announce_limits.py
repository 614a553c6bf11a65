"""How many announcements the appliance accepts from MQTT: a token bucket per announce topic.

Per topic, not per publisher, because MQTT does not say who published: a PUBLISH forwarded by the broker carries
the topic, the payload and the properties the publisher chose itself (MQTT 5 user properties, a response topic),
none of which the broker vouches for; mosquitto does not add the publisher's client id or user name. A limit keyed
on anything the publisher claims is evaded by claiming something else. The topic is what the broker's ACL controls:
give each publisher its own announce topic (and ACL) to get a limit per publisher."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    dropped: int = 0
    """Dropped in the current flood (reset once the topic accepts again)."""


@dataclass
class TopicRateLimiter:
    burst: int = 3
    """Announcements accepted at once from a quiet topic."""
    per_minute: float = 6.0
    """Sustained rate per topic; 0 = no limit."""
    clock: Callable[[], float] = time.monotonic
    what: str = "announcements"
    """What is counted, for the log lines."""
    dropped: int = 0
    """Announcements dropped since start, all topics."""
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, topic: str) -> bool:
        """True when an announcement on `topic` may be queued now. The first drop of a flood logs one line; the
        next accepted announcement logs how many the flood lost."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        with self._lock:
            b = self._buckets.get(topic)
            if b is None:
                b = self._buckets[topic] = _Bucket(float(self.burst), now)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.per_minute / 60.0)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                if b.dropped:
                    log.info("%s on %s slowed down; %d were dropped", self.what, topic, b.dropped)
                    b.dropped = 0
                return True
            b.dropped += 1
            self.dropped += 1
            if b.dropped == 1:
                log.warning("%s on %s arrive faster than %g a minute (burst %d): dropping the excess",
                            self.what, topic, self.per_minute, self.burst)
            return False
