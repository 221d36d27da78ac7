"""Show a reply as it is generated, at most about once a second, the way Telegram suits each chat.

In a private chat (``draft_id`` given) the words so far are shown as a message draft (``sendMessageDraft``, Bot API
9.3+): Telegram animates the draft in place and it is no message yet, so nothing is edited, and the finished text
is sent once with ``sendMessage``. In groups (drafts are for private chats only) a message is sent with the first
words and then edited. A draft that Telegram refuses (an older self-hosted Bot API server) falls back to editing.

A typing indicator is repeated until the reply is complete. The finished text replaces the streamed one; if it is
longer than Telegram allows it is split over several messages. A reply that a crash left unfinished can be written
again into the same message (``message_id``; then no draft), and ``on_sent`` hears of the message as soon as it is
sent while still being written, so it can be remembered for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from telegram import Bot, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter

from bot.views.telegram_text import TELEGRAM_TEXT_LIMIT, shorten, split_for_telegram

logger = logging.getLogger(__name__)

EDIT_INTERVAL_SECONDS = 1.0
TYPING_INTERVAL_SECONDS = 4.0  # Telegram shows "typing…" for about 5 s per action
STREAM_SUFFIX = " …"


class StreamedReply:
    """One reply message in one chat, written progressively: a new message, or ``message_id`` (the bot's unfinished
    message from before a restart) written over; ``on_sent`` is awaited with the id of a newly sent message that is
    still being written."""

    def __init__(
        self, bot: Bot, chat_id: int, reply_to_message_id: int | None = None,
        edit_interval: float = EDIT_INTERVAL_SECONDS, message_thread_id: int | None = None, *,
        message_id: int | None = None, on_sent: Callable[[int], Awaitable[None]] | None = None,
        draft_id: int | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to_message_id = reply_to_message_id
        self.message_thread_id = message_thread_id  # the forum topic the reply belongs in (None: none)
        self.edit_interval = edit_interval
        self.on_sent = on_sent
        self.text = ""
        self.message_id = message_id
        self._inherited = message_id is not None  # not sent by this writer: it may be gone or too old to edit
        # Non-zero, one per reply (drafts with the same id animate into each other); an inherited message is
        # finished in place instead.
        self.draft_id = draft_id if draft_id and message_id is None else None
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

    async def finish(self, text: str) -> list[int]:
        """Show the final ``text`` (split if too long); return the ids of every message that holds it."""
        parts = split_for_telegram(text)
        await self._show(parts[0], final=True)
        assert self.message_id is not None
        ids = [self.message_id]
        for part in parts[1:]:
            sent = await self.bot.send_message(self.chat_id, part, message_thread_id=self.message_thread_id)
            ids.append(sent.message_id)
        return ids

    async def _show(self, text: str, *, final: bool = False) -> None:
        text = shorten(text, TELEGRAM_TEXT_LIMIT, STREAM_SUFFIX)  # while streaming, the beginning; finish() splits
        if not text.strip() or (text == self._shown and not (final and self.draft_id is not None)):
            return
        if self.draft_id is not None and not final and await self._draft(text):
            return
        if self.message_id is not None:
            await self._edit(text)
        if self.message_id is None:
            reply_parameters = (
                ReplyParameters(self.reply_to_message_id, allow_sending_without_reply=True)
                if self.reply_to_message_id else None
            )
            message = await self.bot.send_message(
                self.chat_id, text, reply_parameters=reply_parameters, message_thread_id=self.message_thread_id
            )
            self.message_id, self._inherited = message.message_id, False
            if self.on_sent is not None and not final:  # a final text is complete: nothing to finish later
                await self.on_sent(message.message_id)
        self._shown = text
        self._last_edit = time.monotonic()
        if not final:
            logger.debug("streamed %d chars to chat %s", len(text), self.chat_id)

    async def _draft(self, text: str) -> bool:
        """Show ``text`` as the chat's draft; False when Telegram refuses drafts (then this reply edits a message
        instead, like in a group)."""
        assert self.draft_id is not None
        try:
            await self.bot.send_message_draft(
                self.chat_id, self.draft_id, text, message_thread_id=self.message_thread_id
            )
        except (BadRequest, InvalidToken) as exc:  # refused (InvalidToken: a server without the method says 404)
            logger.info("chat %s: Telegram refused a message draft (%s); editing a message instead", self.chat_id,
                        exc.message)
            self.draft_id = None
            return False
        except (RetryAfter, NetworkError) as exc:  # a draft is a passing preview: skip it, the next one shows more
            logger.debug("chat %s: a message draft was skipped (%s)", self.chat_id, exc.message)
        else:
            self._shown = text
        self._last_edit = time.monotonic()
        return True

    async def _edit(self, text: str) -> None:
        """Write ``text`` over the message; an inherited one that can't be edited any more is given up (a new
        message is sent instead)."""
        assert self.message_id is not None
        try:
            await self.bot.edit_message_text(text, chat_id=self.chat_id, message_id=self.message_id)
        except BadRequest as exc:
            reason = str(exc).lower()
            if "not modified" in reason:
                return
            if not self._inherited or not ("not found" in reason or "can't be edited" in reason):
                raise
            logger.info("the unfinished reply in chat %s is gone (%s); sending a new one", self.chat_id, exc.message)
            self.message_id = None

    async def _keep_typing(self) -> None:
        while True:
            try:
                await self.bot.send_chat_action(
                    self.chat_id, ChatAction.TYPING, message_thread_id=self.message_thread_id
                )
            except Exception:  # a lost typing indicator is not worth failing a reply for
                logger.debug("typing indicator failed", exc_info=True)
            await asyncio.sleep(TYPING_INTERVAL_SECONDS)
