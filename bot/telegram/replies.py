"""Answers in a chat: where they go (chat, quoted message, forum topic), and the Telegram side of a conversation
turn, which streams the flow's reply into the chat."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, Forbidden

from bot.flow import Conversations, Turn
from bot.telegram.streaming import StreamedReply
from engine import Sentiment
from storage import StoredMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyTarget:
    """Where the answers to a message go: its chat, the message to quote (in groups), its forum topic, and whether
    it is a private chat (replies are streamed there as a draft)."""

    chat_id: int
    quote: int | None = None
    thread_id: int | None = None
    private: bool = False


async def sent_privately(sending: Awaitable[object], person_id: int) -> bool:
    """Await ``sending`` (a message to ``person_id``'s private chat with the bot); False when Telegram won't let the
    bot write there (they never started it, or blocked it)."""
    try:
        await sending
    except Forbidden as exc:
        logger.info("could not write to user %s privately: %s", person_id, exc.message)
        return False
    except BadRequest as exc:
        if "chat not found" not in exc.message.lower():
            raise
        logger.info("could not write to user %s privately: %s", person_id, exc.message)
        return False
    return True


async def send(bot: Bot, target: ReplyTarget, text: str) -> None:
    """Send ``text`` to ``target`` (quoting its message when there is one; sent anyway if that one is gone)."""
    reply_parameters = ReplyParameters(target.quote, allow_sending_without_reply=True) if target.quote else None
    await bot.send_message(
        target.chat_id, text, reply_parameters=reply_parameters, message_thread_id=target.thread_id
    )


class ChatReply:
    """A turn's output in a Telegram chat: the reply streamed as a draft in a private chat, or into one message in a
    group (or written over ``draft_message_id``, the unfinished reply a crash left), notes as messages of their own.
    Implements ``bot.flow.ReplyOutput``."""

    def __init__(
        self, bot: Bot, target: ReplyTarget, conversations: Conversations, message: StoredMessage,
        draft_message_id: int | None = None,
    ) -> None:
        self.bot, self.target = bot, target

        async def remember_draft(telegram_message_id: int) -> None:  # so a restart can finish it in place
            await conversations.note_draft(message, telegram_message_id)

        self.writer = StreamedReply(
            bot, target.chat_id, reply_to_message_id=target.quote, message_thread_id=target.thread_id,
            message_id=draft_message_id, on_sent=remember_draft,
            draft_id=message.id if target.private else None,  # the stored message's id: unique per reply
        )

    async def heard(self, sentiment: Sentiment) -> None:
        """Nothing to show: in Telegram the mood is for ``/mood``."""

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Stream the reply into the chat (with a typing indicator); return it whole."""
        return await self.writer.write(chunks)

    async def finish(self, text: str) -> int | None:
        """Show the final ``text`` (split if too long); the id of its first message."""
        return (await self.writer.finish(text))[0]

    async def send(self, text: str) -> None:
        """A message of its own, quoting the person's in groups."""
        await send(self.bot, self.target, text)


async def answer_message(
    bot: Bot, conversations: Conversations, stored: StoredMessage, target: ReplyTarget,
    draft_message_id: int | None = None, *, language: str,
) -> Turn:
    """Answer a stored message in its chat: the flow's turn, streamed to ``target``, the bot's own words (busy, a
    note) in ``language``."""
    reply = ChatReply(bot, target, conversations, stored, draft_message_id)
    return await conversations.answer(stored, reply, language)
