"""Show a reply as it is generated: send a message with the first words, then edit it at most about once a second.

A typing indicator is repeated until the reply is complete. The finished text replaces the streamed one; if it is
longer than Telegram allows it is split over several messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from telegram import Bot, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest

from bot.render import TELEGRAM_TEXT_LIMIT, split_for_telegram

logger = logging.getLogger(__name__)

EDIT_INTERVAL_SECONDS = 1.0
TYPING_INTERVAL_SECONDS = 4.0  # Telegram shows "typing…" for about 5 s per action
STREAM_SUFFIX = " …"


class StreamedReply:
    """One reply message in one chat, written progressively."""

    def __init__(
        self, bot: Bot, chat_id: int, reply_to_message_id: int | None = None,
        edit_interval: float = EDIT_INTERVAL_SECONDS, message_thread_id: int | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to_message_id = reply_to_message_id
        self.message_thread_id = message_thread_id  # the forum topic the reply belongs in (None: none)
        self.edit_interval = edit_interval
        self.text = ""
        self.message: Message | None = None
        self._shown = ""
        self._last_edit = 0.0

    async def write(self, chunks: AsyncIterator[str]) -> str:
        """Consume ``chunks`` into the chat; return the complete text (stripped)."""
        typing = asyncio.create_task(self._keep_typing())
        try:
            async for chunk in chunks:
                self.text += chunk
                if time.monotonic() - self._last_edit >= self.edit_interval:
                    await self._show(self.text.strip() + STREAM_SUFFIX)
        finally:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing
        return self.text.strip()

    async def finish(self, text: str) -> list[Message]:
        """Show the final ``text`` (split if too long); return every message that holds it."""
        parts = split_for_telegram(text)
        await self._show(parts[0], final=True)
        assert self.message is not None
        messages = [self.message]
        for part in parts[1:]:
            messages.append(
                await self.bot.send_message(self.chat_id, part, message_thread_id=self.message_thread_id)
            )
        return messages

    async def _show(self, text: str, *, final: bool = False) -> None:
        if len(text) > TELEGRAM_TEXT_LIMIT:  # while streaming, show the beginning; finish() splits the rest
            text = text[: TELEGRAM_TEXT_LIMIT - len(STREAM_SUFFIX)] + STREAM_SUFFIX
        if not text.strip() or text == self._shown:
            return
        if self.message is None:
            reply_parameters = (
                ReplyParameters(self.reply_to_message_id, allow_sending_without_reply=True)
                if self.reply_to_message_id else None
            )
            self.message = await self.bot.send_message(
                self.chat_id, text, reply_parameters=reply_parameters, message_thread_id=self.message_thread_id
            )
        else:
            try:
                await self.message.edit_text(text)
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    raise
        self._shown = text
        self._last_edit = time.monotonic()
        if not final:
            logger.debug("streamed %d chars to chat %s", len(text), self.chat_id)

    async def _keep_typing(self) -> None:
        while True:
            try:
                await self.bot.send_chat_action(
                    self.chat_id, ChatAction.TYPING, message_thread_id=self.message_thread_id
                )
            except Exception:  # a lost typing indicator is not worth failing a reply for
                logger.debug("typing indicator failed", exc_info=True)
            await asyncio.sleep(TYPING_INTERVAL_SECONDS)
