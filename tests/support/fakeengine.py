"""A scripted engine for bot and storage tests that need no weights: queued replies, controllable delays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from engine import ChatTurn, EngineBusy, ReplyLength, Sentiment

CRISIS_WORDS = ("hurt myself", "不想活")


@dataclass
class ScriptedEngine:
    """Implements the Engine protocol; replies come from ``replies`` (or echo), sentiments from keywords."""

    replies: list[list[str] | BaseException] = field(default_factory=list)
    busy: bool = False
    gates: dict[str, asyncio.Event] = field(default_factory=dict)  # message text → event the reply waits for
    seen_histories: list[tuple[list[ChatTurn], str]] = field(default_factory=list)
    seen_lengths: list[ReplyLength] = field(default_factory=list)  # each reply's length, in order
    classified: list[str] = field(default_factory=list)
    replies_started: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # each reply's message, as it starts
    model_name: str = "scripted"
    queue_depth: int = 0
    forgotten: int = 0  # forget_conversations calls

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    async def forget_conversations(self) -> None:
        """Counted, so tests can see that deletions reach the engine."""
        self.forgotten += 1

    async def classify(self, text: str) -> Sentiment:
        """positive for 'good', negative for 'bad', else neutral; a crisis for the CRISIS_WORDS."""
        if self.busy:
            raise EngineBusy()
        self.classified.append(text)
        if any(word in text for word in CRISIS_WORDS):
            return Sentiment("negative", -0.9, {"positive": 0.05, "negative": 0.95}, care=0.9)
        if "good" in text:
            return Sentiment("positive", 0.8, {"positive": 0.9, "neutral": 0.0, "negative": 0.1})
        if "bad" in text:
            return Sentiment("negative", -0.8, {"positive": 0.1, "neutral": 0.0, "negative": 0.9})
        return Sentiment("neutral", 0.0, {"positive": 0.1, "neutral": 0.8, "negative": 0.1})

    async def reply(
        self, history: Sequence[ChatTurn], message: str, *, length: ReplyLength = "normal"
    ) -> AsyncIterator[str]:
        """Yield the next scripted chunks (raising a scripted exception midway), or echo the message."""
        if self.busy:
            raise EngineBusy()
        self.seen_histories.append((list(history), message))
        self.seen_lengths.append(length)
        self.replies_started.put_nowait(message)
        if message in self.gates:
            await self.gates[message].wait()
        script = self.replies.pop(0) if self.replies else [f"echo: {message}"]
        if isinstance(script, BaseException):
            yield "I am starting to "
            raise script
        for chunk in script:
            yield chunk
