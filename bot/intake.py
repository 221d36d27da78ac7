"""What happens to an update the moment it arrives, before it waits behind its chat.

Two things, before any other work: the per-person rate limit (one token bucket for every kind of update), and
storing a text message (or the new text of an edit) at once, so that nothing Telegram has handed over lives only in
memory. A message that will be answered is stored as owed a reply; one over the rate limit, or past its chat's
backlog, is only stored (the back-fill classifies it later) and never reaches the handlers. Over the limit a person
gets one "slow down" per spell; a chat past its backlog gets one "slow down" until its queue has drained.
"""

from __future__ import annotations

import logging

from telegram import Bot, Update
from telegram.ext import filters

from bot import render
from bot.context import Services
from bot.handlers import incoming_of, meant_for_bot
from bot.ratelimit import Decision
from storage import StoredMessage

logger = logging.getLogger(__name__)

# The updates the conversation handlers take; bot.app registers its handlers with these same filters.
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
EDITED_TEXT = filters.UpdateType.EDITED_MESSAGE & filters.TEXT
ALLOWED = Decision(True)


class Intake:
    """The arrival step of every update (see ``bot.ordering.Admission``)."""

    def __init__(self, services: Services, bot: Bot) -> None:
        self.services = services
        self.bot = bot

    async def admit(self, update: object, *, queued: bool, warn: bool) -> bool:
        """Check the rate limit and store a text message or edit at once; True when the handlers should run."""
        if not isinstance(update, Update):
            return queued
        config = self.services.config
        user, chat = update.effective_user, update.effective_chat
        allowed = config.telegram.allows(user.id if user else None, chat.id if chat else None)
        meant = meant_for_bot(update, self.bot.id, self.bot.username)
        # Group chatter not meant for the bot costs nothing unless groups.log_all stores and classifies it.
        storable = bool(NEW_TEXT.check_update(update) or EDITED_TEXT.check_update(update))
        kept = meant or (config.groups.log_all and storable)
        decision = self._take_token(update) if kept else ALLOWED
        run = queued and decision.allowed
        if allowed and kept and storable:
            stored = await self._store(update, reply_owed=run and meant)
            if run and stored is not None:
                self.services.arrivals[update.update_id] = stored
        if not decision.allowed:
            slow_down = render.SLOW_DOWN_TEXT.format(seconds=decision.wait_seconds)
            await self._turn_away(update, slow_down, allowed and meant and decision.notify)
        elif not queued:
            await self._turn_away(update, render.BACKLOG_TEXT, allowed and meant and warn)
        return run

    def release(self, update: object) -> None:
        """The update's handlers have run (or never will): forget the message stored for it."""
        if isinstance(update, Update):
            self.services.arrivals.pop(update.update_id, None)

    def _take_token(self, update: Update) -> Decision:
        user = update.effective_user
        if user is None or self.services.config.telegram.is_admin(user.id):
            return ALLOWED
        decision = self.services.rate_limiter.check(user.id)
        if not decision.allowed:
            logger.info("user %s is over the rate limit (next update in %.1f s)", user.id, decision.retry_after)
        return decision

    async def _store(self, update: Update, *, reply_owed: bool) -> StoredMessage | None:
        """Store a new text message (``reply_owed`` until its reply is stored) or an edit's new text."""
        if update.message is not None and update.message.text is not None:
            if update.effective_chat is None or update.effective_user is None:
                return None
            incoming = incoming_of(update, self.bot.username)
            return await self.services.conversations.record(incoming, reply_owed=reply_owed)
        edited = update.edited_message
        if edited is None or edited.text is None:
            return None
        # The old mood goes with the old text; the edit's handler classifies the new one (or the back-fill does).
        return await self.services.store.update_user_message_text(
            chat_id=edited.chat_id, telegram_message_id=edited.message_id, text=edited.text
        )

    async def _turn_away(self, update: Update, text: str, tell: bool) -> None:
        """An update that won't be handled: ``text`` to the person when ``tell``; a button press is always answered
        (or its button keeps spinning)."""
        if update.callback_query is not None:
            await update.callback_query.answer(text if tell else None, show_alert=tell)
        elif tell and update.effective_message is not None:
            await update.effective_message.reply_text(text)
