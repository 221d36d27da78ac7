"""Updates on their way to the bot: the queue ``getUpdates`` long-polls, and the wake-up every waiter shares.

Updates stay queued until a later ``offset`` confirms them, as on Telegram; a newer ``getUpdates`` ends an older
one with 409 Conflict, and so does ``getUpdates`` while a webhook is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tests.support.fakebotapi.wire import ApiError

T = TypeVar("T")

# Update types Telegram leaves out unless they are listed in allowed_updates.
_NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class Changes:
    """Wakes every waiter whenever the fake's state changes (a call recorded or answered, an update queued)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone waiting now; later waiters wait for the next change."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, check: Callable[[], T], timeout: float) -> T | None:
        """``check()``'s first truthy value, looked at again after each change (no polling); None when ``timeout``
        seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._event  # taken before the check, so a change during it is not missed
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()


class UpdateQueue:
    """The updates not yet confirmed by the bot, and how it receives them (long polling, or a webhook's URL)."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(10_001)
        self._poll_generation = 0
        self.stopping = False
        #: Set by setWebhook, cleared by deleteWebhook.
        self.webhook_url = ""
        #: The last ``allowed_updates`` a getUpdates gave (None: Telegram's default).
        self.allowed_updates: list[str] | None = None

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Queued updates, oldest first."""
        return list(self._updates)

    def queue(self, payload: Mapping[str, Any]) -> int:
        """Queue ``payload`` (``{"message": {...}}`` etc.) under a new ``update_id``, which is returned."""
        update_id = next(self._ids)
        self._updates.append({"update_id": update_id, **copy.deepcopy(dict(payload))})
        self._changes.notify()
        return update_id

    def drop_pending(self) -> None:
        """Forget every queued update (``drop_pending_updates``)."""
        self._updates.clear()

    async def get_updates(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Answer ``getUpdates``: confirm up to ``offset``, then return at once when updates are queued, else wait
        until one is, ``timeout`` passes, a newer getUpdates supersedes this one (409) or the server stops."""
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        self._poll_generation += 1
        generation = self._poll_generation
        offset, limit, timeout = params.get("offset"), params.get("limit"), params.get("timeout")
        limit = min(100, max(1, limit)) if isinstance(limit, int) else 100
        timeout = max(0.0, float(timeout)) if isinstance(timeout, int | float) else 0.0
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):  # [] resets to the default, absent keeps the previous setting
            self.allowed_updates = list(allowed) or None
        if isinstance(offset, int) and offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            self._updates = self._updates[offset:]

        def ready() -> bool:
            self._drop_unwanted()
            if self._updates or self.stopping:
                return True
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            return False

        await self._changes.wait_until(ready, timeout)
        return copy.deepcopy(self._updates[:limit])  # [] when the server stops or the timeout passed

    def _drop_unwanted(self) -> None:
        allowed = set(self.allowed_updates) if self.allowed_updates else None
        self._updates = [
            u
            for u in self._updates
            if (_update_type(u) in allowed if allowed else _update_type(u) not in _NOT_DEFAULT_UPDATES)
        ]


def _update_type(update: Mapping[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")
