"""A clock that tests set by hand, for what goes by the wall clock (check-ins, weekly summaries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass
class Clock:
    """Calling it gives ``now`` (an aware UTC datetime); tests move ``now`` with ``set`` or ``advance``."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def set(self, *args: int) -> None:
        """Jump to ``datetime(*args)`` in UTC."""
        self.now = datetime(*args, tzinfo=UTC)  # type: ignore[misc]

    def advance(self, **delta: float) -> None:
        """Move on by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)
