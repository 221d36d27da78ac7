"""Update processing: each chat has its own bounded queue and worker task, so a backlog in one chat never holds up
another; the updates of one chat run strictly one after another.

PTB takes its own semaphore before it hands an update over (``BaseUpdateProcessor.process_update``); it is sized
here so that it never makes an update wait, or one chat's backlog would fill every slot. moodbot's concurrency
limit is taken by a chat's worker only while a handler really runs. Before an update waits behind its chat it goes
through the ``Admission`` (the rate limit, and the message stored the moment it arrives); a chat whose queue is
full has further updates admitted as not queued (stored only, never run).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from telegram import Update
from telegram.ext import BaseUpdateProcessor

logger = logging.getLogger(__name__)

PTB_SLOTS = 2**31 - 1  # PTB's semaphore, taken before a chat's queue: never the limit
DEFAULT_MAX_RUNNING = 256
DEFAULT_MAX_BACKLOG = 100


class Admission(Protocol):
    """What happens to an update the moment it arrives, before it waits behind its chat."""

    async def admit(self, update: object, *, queued: bool, warn: bool) -> bool:
        """Do the arrival work for ``update``; True to run its handlers. ``queued`` False: the chat's queue is
        full and the handlers won't run whatever the answer (``warn``: the first such update since the chat's
        queue was last empty)."""
        ...

    def release(self, update: object) -> None:
        """Forget anything kept for ``update``; its handlers have run (or never will)."""
        ...


@dataclass(eq=False)
class _Work:
    """One queued piece of a chat's work: the coroutine, whether it may run, and when it has."""

    coroutine: Awaitable[Any]
    admitted: asyncio.Future[bool]
    done: asyncio.Future[None]


@dataclass(eq=False)
class _Chat:
    waiting: deque[_Work] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    overflowed: bool = False  # an update was turned away since the queue was last empty


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """A bounded queue and a worker per chat (dropped when the chat is idle); at most ``max_running`` handlers run
    at once over all chats; at most ``max_backlog`` updates of one chat wait behind the one it is handling."""

    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        super().__init__(PTB_SLOTS)
        if max_running < 1 or max_backlog < 1:
            raise ValueError("max_running and max_backlog must be at least 1")
        self.max_running = max_running
        self.max_backlog = max_backlog
        self.admission: Admission | None = None  # set once the services exist (post_init)
        self._running = asyncio.Semaphore(max_running)
        self._chats: dict[int, _Chat] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Admit ``update`` at once, then run ``coroutine`` once every earlier update of its chat is done."""
        chat_id = _chat_id(update)
        if chat_id is None:  # nothing to order it with
            if await self._admit(update, queued=True, warn=False):
                async with self._running:
                    await coroutine
            else:
                _close(coroutine)
            return
        chat = self._chats.get(chat_id)
        queued = chat is None or len(chat.waiting) < self.max_backlog
        work: _Work | None = None
        warn = False
        if queued:
            # The place in the queue is taken before the (asynchronous) admission, so the order of arrival holds.
            loop = asyncio.get_running_loop()
            work = _Work(coroutine, loop.create_future(), loop.create_future())
            self._enqueue(chat_id, work)
        else:
            assert chat is not None
            warn, chat.overflowed = not chat.overflowed, True
            if warn:  # once per spell; the updates turned away are stored by the admission all the same
                logger.warning("chat %s has %d updates waiting; more are not queued", chat_id, len(chat.waiting))
        admitted = False
        try:
            admitted = await self._admit(update, queued=queued, warn=warn)
        finally:
            if work is not None and not work.admitted.done():
                work.admitted.set_result(admitted)
        try:
            if work is None:
                _close(coroutine)
            else:
                await work.done
        finally:
            if self.admission is not None:
                self.admission.release(update)

    def submit(self, chat_id: int, coroutine: Awaitable[Any]) -> asyncio.Future[None]:
        """Queue work that is not an update (a late reply) in a chat, after everything queued there so far; it is
        not counted against the backlog limit. The future is done once the work has run."""
        loop = asyncio.get_running_loop()
        admitted: asyncio.Future[bool] = loop.create_future()
        admitted.set_result(True)
        work = _Work(coroutine, admitted, loop.create_future())
        self._enqueue(chat_id, work)
        return work.done

    async def initialize(self) -> None:
        """Nothing to set up: queues and workers are created when a chat has work."""

    async def shutdown(self) -> None:
        """Stop the workers still running (PTB has finished every update by now; what is left is submitted work,
        which stays owed in the database)."""
        workers = [chat.worker for chat in self._chats.values() if chat.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def _enqueue(self, chat_id: int, work: _Work) -> None:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat()
        chat.waiting.append(work)
        if chat.worker is None:
            chat.worker = asyncio.create_task(self._work_through(chat_id, chat), name=f"moodbot:chat:{chat_id}")

    async def _work_through(self, chat_id: int, chat: _Chat) -> None:
        """The chat's worker: run its queued work in order, then drop the chat (idle chats cost nothing)."""
        try:
            while chat.waiting:
                await self._run(chat.waiting.popleft())
        finally:
            for work in chat.waiting:  # only when cancelled at shutdown
                _close(work.coroutine)
                work.done.cancel()
            del self._chats[chat_id]

    async def _run(self, work: _Work) -> None:
        try:
            if await work.admitted:
                async with self._running:  # the global limit, only while a handler really runs
                    await work.coroutine
            else:
                _close(work.coroutine)
        except asyncio.CancelledError:
            if not work.done.done():
                work.done.cancel()
            raise
        except Exception as exc:  # PTB's process_update reports handler errors itself; this is anything else
            logger.exception("queued work failed")
            if not work.done.done():
                work.done.set_exception(exc)
                work.done.exception()  # retrieved here too, so a submitter that gave up causes no warning
            return
        if not work.done.done():
            work.done.set_result(None)

    async def _admit(self, update: object, *, queued: bool, warn: bool) -> bool:
        if self.admission is None:
            return queued
        try:
            return await self.admission.admit(update, queued=queued, warn=warn)
        except Exception:
            # Handling the update anyway is better than losing it: its handler stores it (or reports the error).
            logger.exception("could not admit an update; handling it anyway")
            return queued


def _chat_id(update: object) -> int | None:
    chat = update.effective_chat if isinstance(update, Update) else None
    return chat.id if chat is not None else None


def _close(coroutine: Awaitable[Any]) -> None:
    """Discard a coroutine that will never run, without a "never awaited" warning."""
    if inspect.iscoroutine(coroutine):
        coroutine.close()
