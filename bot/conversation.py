"""The conversation flow shared by Telegram and the terminal: persist → classify → reply → persist.

Knows storage and the engine, not Telegram. The incoming message is committed before any model work; the reply
is stored only once it is complete, so a crash never leaves half a reply in history.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.config import CareConfig
from engine import ChatTurn, Engine, EngineBusy, EngineError, Sentiment
from storage import SentimentRecord, Store, StoredMessage

logger = logging.getLogger(__name__)

HISTORY_TURNS = 40  # upper bound fetched from storage; the engine trims further to its token budget


@dataclass(frozen=True)
class Incoming:
    """A text message as it arrived, with who sent it where."""

    chat_id: int
    chat_kind: str
    chat_title: str | None
    user_id: int
    first_name: str | None
    username: str | None
    text: str
    message_id: int | None


class Conversations:
    """Runs each step of a conversation turn against the store and the engine."""

    def __init__(
        self, store: Store, engine: Engine, max_message_chars: int = 2000, care: CareConfig | None = None
    ) -> None:
        self.store = store
        self.engine = engine
        self.max_message_chars = max_message_chars
        self.care = care or CareConfig()

    def care_message(self, message: StoredMessage, sentiment: Sentiment | None) -> str | None:
        """The help resources to send with the reply when ``message`` signals a crisis (and care is on)."""
        if sentiment is None or not self.care.enabled or sentiment.care < self.care.threshold:
            return None
        return self.care.message_for(message.text)

    async def record_care(self, message: StoredMessage, sentiment: Sentiment) -> None:
        """Log that help resources were offered for ``message``."""
        await self.store.add_care_event(message.id, sentiment.care)
        logger.warning("care: help resources offered in chat %s (message %d)", message.chat_id, message.id)

    def view(self, message: StoredMessage) -> str:
        """What the model reads of a message: all of it, or its beginning when it is very long."""
        return message.text[: self.max_message_chars]

    def is_truncated(self, message: StoredMessage) -> bool:
        """True when the model reads only the beginning of ``message``."""
        return len(message.text) > self.max_message_chars

    async def record(self, incoming: Incoming) -> StoredMessage:
        """Persist the message (and who/where) before anything else; a re-delivered message is not duplicated."""
        await self.store.upsert_chat(incoming.chat_id, incoming.chat_kind, incoming.chat_title)
        await self.store.upsert_user(incoming.user_id, incoming.first_name, incoming.username)
        return await self.store.add_user_message(
            chat_id=incoming.chat_id, user_id=incoming.user_id, text=incoming.text,
            telegram_message_id=incoming.message_id,
        )

    async def classify(self, message: StoredMessage) -> Sentiment | None:
        """Classify and store the sentiment; None when the engine is busy (the back-fill catches up later)."""
        try:
            sentiment = await self.engine.classify(self.view(message))
        except EngineBusy:
            logger.warning("engine busy: message %d left for the back-fill", message.id)
            return None
        except EngineError as exc:  # e.g. a remote server down after its retries: same as busy, nothing lost
            logger.warning("engine error (%s): message %d left for the back-fill", exc, message.id)
            return None
        await self.store.add_sentiment(message.id, self._record(sentiment))
        return sentiment

    async def reply(self, message: StoredMessage) -> AsyncIterator[str]:
        """Stream the companion's reply to ``message`` using this user's history in this chat only."""
        turns = await self.store.history(
            chat_id=message.chat_id, user_id=message.user_id, before_id=message.id, limit=HISTORY_TURNS
        )
        history = [ChatTurn(turn.role, turn.text) for turn in turns]
        async for chunk in self.engine.reply(history, self.view(message)):
            yield chunk

    async def save_reply(self, message: StoredMessage, text: str, telegram_message_id: int | None) -> int:
        """Store the complete reply, linked to the message it answers."""
        return await self.store.add_reply(
            chat_id=message.chat_id, user_id=message.user_id, text=text, reply_to=message.id,
            telegram_message_id=telegram_message_id,
        )

    async def forget(self, *, chat_id: int, user_id: int) -> int:
        """Delete everything stored about this person in this chat, and what the engine holds in memory of past
        conversations; returns how many messages went."""
        deleted = await self.store.forget(chat_id=chat_id, user_id=user_id)
        await self.engine.forget_conversations()
        return deleted

    async def purge_older_than(self, cutoff: float) -> int:
        """Retention: delete messages older than ``cutoff`` (unix seconds) and, when any went, what the engine
        holds in memory of past conversations; returns how many messages went."""
        deleted = await self.store.purge_older_than(cutoff)
        if deleted:
            await self.engine.forget_conversations()
        return deleted

    async def backfill(self, limit: int = 100) -> int:
        """Classify stored messages that have no sentiment yet (after a crash or a busy spell); returns how many."""
        done = 0
        for message in await self.store.unclassified_messages(limit=limit):
            if await self.classify(message) is None:
                break
            done += 1
        return done

    def _record(self, sentiment: Sentiment) -> SentimentRecord:
        return SentimentRecord(
            label=sentiment.label, score=sentiment.score, probs=dict(sentiment.probs), model=self.engine.model_name,
            care=sentiment.care,
        )
