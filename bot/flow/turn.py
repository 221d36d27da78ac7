"""What a turn hands its front end, and what it hands back: the front end only carries text.

A Telegram chat and the terminal each implement :class:`ReplyOutput`; ``Conversations.answer`` drives it and
returns a :class:`Turn` saying what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from engine import Sentiment
from storage import StoredMessage


class ReplyOutput(Protocol):
    """Where a turn's words go: a Telegram chat, a terminal."""

    async def heard(self, sentiment: Sentiment) -> None:
        """The message's mood, as soon as it is known and before the reply (the terminal shows it)."""

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Show the reply while it is written; return all of it, stripped."""
        ...

    async def finish(self, text: str) -> int | None:
        """Show ``text`` as the whole answer (over anything streamed); the id of the message that holds it, if
        it has one."""
        ...

    async def send(self, text: str) -> None:
        """Show ``text`` as a message of its own after the answer (help resources, a note)."""


@dataclass
class Turn:
    """What one turn did with a stored message."""

    message: StoredMessage
    sentiment: Sentiment | None = None  # None: the engine was busy (the back-fill classifies it later) or the
    # person turned mood analysis off (nothing is computed)
    care_text: str | None = None  # the help resources the message called for, if any
    reply: str | None = None  # the reply as stored; None: none was (the person was told "busy")
    truncated: bool = False  # the model read only the beginning of a very long message


def cancelling() -> bool:
    """True while the current task is being cancelled (the process is going down)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
