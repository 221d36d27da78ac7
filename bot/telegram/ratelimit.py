"""A token bucket per person, in memory, taken by every update (message, edit, command, sticker, button press):
``burst`` updates at once, then ``messages_per_minute`` on average.

Pure and synchronous (the clock is injectable), so it is tested without waiting. Nothing is persisted: a restart
gives everyone a full bucket, which is the friendly direction to err in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

PRUNE_EVERY = 1024  # checks between sweeps that drop buckets which have refilled completely


@dataclass(frozen=True)
class Decision:
    """The answer for one update: ``allowed``; if not, seconds until the next one is, and whether to say so."""

    allowed: bool
    retry_after: float = 0.0
    notify: bool = False

    @property
    def wait_seconds(self) -> int:
        """``retry_after`` rounded up to whole seconds (at least 1), for telling a person."""
        return max(1, math.ceil(self.retry_after))


@dataclass
class _Bucket:
    tokens: float
    updated: float
    warned: bool = False


class RateLimiter:
    """Per-key token buckets; ``messages_per_minute`` 0 turns the limit off (every message is allowed)."""

    def __init__(
        self, messages_per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = messages_per_minute / 60.0  # tokens per second
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._checks = 0

    @property
    def enabled(self) -> bool:
        """False when the limit is off."""
        return self.rate > 0

    def check(self, key: int) -> Decision:
        """Take one token for ``key``. Refused: the wait until one is back, and ``notify`` only on the first refusal
        since ``key``'s last allowed update (one "slow down" per empty spell, not one per update)."""
        if not self.enabled:
            return Decision(True)
        now = self.clock()
        self._maybe_prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.warned = False
            return Decision(True)
        notify = not bucket.warned
        bucket.warned = True
        return Decision(False, retry_after=(1.0 - bucket.tokens) / self.rate, notify=notify)

    def __len__(self) -> int:
        """How many keys have a bucket in memory."""
        return len(self._buckets)

    def _maybe_prune(self, now: float) -> None:
        self._checks += 1
        if self._checks % PRUNE_EVERY:
            return
        full_after = self.burst / self.rate  # an idle bucket is full again after this long: same as no bucket
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < full_after}
