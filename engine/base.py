"""The interface every engine backend offers to the bot (local model now, remote servers later)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from engine.values import ChatTurn, ReplyLength, Sentiment


class Engine(Protocol):
    """A loaded model playing the two roles: analyst (classify) and companion (reply)."""

    @property
    def model_name(self) -> str:
        """The configured model, recorded with every sentiment."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests submitted and not yet finished (for logs and back-pressure)."""
        ...

    async def start(self) -> None:
        """Load the model; raises ModelLoadError with a one-line reason."""

    async def classify(self, text: str) -> Sentiment:
        """Sentiment of one message, seen in isolation; raises EngineBusy when the queue is full."""
        ...

    def reply(
        self, history: Sequence[ChatTurn], message: str, *, length: ReplyLength = "normal"
    ) -> AsyncIterator[str]:
        """Stream an empathetic reply to ``message`` given this user's ``history``, as text chunks; a ``"short"``
        ``length`` asks for one or two sentences and allows fewer new tokens."""
        ...

    async def forget_conversations(self) -> None:
        """Drop whatever the engine keeps in memory of past conversations (after /forget or a retention purge), so
        no deleted words outlive their rows; later replies are computed from the stored history alone."""

    async def close(self) -> None:
        """Finish queued work and release the model; idempotent."""
