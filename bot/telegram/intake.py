"""What happens to an update the moment it arrives, before it waits behind its chat.

``ArrivalQueue`` is PTB's update queue: the Updater (or the webhook server) puts each update taken from Telegram
into it, and only then confirms it to Telegram (with its next getUpdates, or the webhook's answer). Its ``put`` first
runs ``Intake.arrive``: the per-person rate limit (one token bucket for every kind of update but the presses in a
/settings menu) is checked, and a text message (or the new text of an edit) is stored, so nothing Telegram has let go
of lives only in memory. A message
that will be answered is stored as owed a reply; one over the limit is only stored (the back-fill classifies it
later). Then, as the update is handed to its chat's queue, ``Intake.admit`` turns away what is over the limit or
past the chat's backlog (a message past the backlog owes no reply after all), with one "slow down" per spell.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import Bot, Update
from telegram.ext import filters

from bot.i18n import translate
from bot.telegram import identity
from bot.telegram.access import meant_for_bot
from bot.telegram.context import Services
from bot.telegram.language import update_language
from bot.telegram.messages import incoming_of
from bot.telegram.ratelimit import Decision
from bot.views import settings as settings_view
from bot.views import texts
from storage import StoredMessage

logger = logging.getLogger(__name__)

# The updates the conversation handlers take; bot.telegram.app registers its handlers with these same filters.
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
EDITED_TEXT = filters.UpdateType.EDITED_MESSAGE & filters.TEXT
ALLOWED = Decision(True)


class ArrivalQueue(asyncio.Queue[object]):
    """PTB's update queue, running ``arrive`` on each update before queueing it, so the Updater confirms an update
    to Telegram only once it is stored. ``arrive`` never stops an update: if it fails, the update goes on (its
    handler stores the message) and the error is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.arrive: Callable[[object], Awaitable[None]] | None = None  # set once the services exist (post_init)

    async def put(self, item: object) -> None:
        """Run ``arrive`` on ``item``, then queue it."""
        if self.arrive is not None:
            try:
                await self.arrive(item)
            except Exception:
                logger.exception("could not store an update as it arrived; it is handled all the same")
        await super().put(item)


@dataclass(frozen=True)
class Arrival:
    """What ``Intake.arrive`` decided and stored for one update."""

    limit: Decision
    meant: bool  # for the bot: a private chat, a command, a mention or reply in a group, a button
    allowed: bool  # by telegram.allowed_user_ids / allowed_chat_ids (refusals are check_access's)
    stored: StoredMessage | None
    owed: bool  # stored as owed a reply


class Intake:
    """The arrival of every update (``arrive``) and its admission to its chat's queue (see
    ``bot.telegram.ordering.Admission``)."""

    def __init__(self, services: Services, bot: Bot) -> None:
        self.services = services
        self.bot = bot
        self._arrived: dict[int, Arrival] = {}  # by update id, from arrive() to release()

    async def arrive(self, update: object) -> None:
        """Check the rate limit and store a text message or edit, before the update is confirmed to Telegram."""
        if not isinstance(update, Update) or update.update_id in self._arrived:
            return
        config = self.services.config
        person, chat = identity.person_of(update), update.effective_chat
        # Nothing is kept of updates check_access refuses: strangers, posts on behalf of a chat.
        allowed = person is not None and config.telegram.allows(person.id, chat.id if chat else None)
        meant = update.callback_query is not None or meant_for_bot(update, self.bot.id, self.bot.username)
        new_text = bool(NEW_TEXT.check_update(update))
        storable = new_text or bool(EDITED_TEXT.check_update(update))
        # Group chatter not meant for the bot costs nothing unless groups.log_all stores and classifies it.
        kept = meant or (config.groups.log_all and storable)
        limit = self._take_token(update) if kept else ALLOWED
        owed = allowed and meant and limit.allowed and new_text
        stored = await self._store(update, reply_owed=owed) if allowed and kept and storable else None
        self._arrived[update.update_id] = Arrival(limit, meant, allowed, stored, owed and stored is not None)
        if stored is not None and limit.allowed:
            self.services.arrivals[update.update_id] = stored  # for its handler

    async def admit(self, update: object, *, queued: bool, warn: bool) -> bool:
        """True when the update's handlers should run: within the rate limit, and queued behind its chat (the
        chat's backlog has room). Otherwise the person is told once per spell."""
        if not isinstance(update, Update):
            return queued
        if update.update_id not in self._arrived:  # not through the ArrivalQueue (handed to PTB directly)
            await self.arrive(update)
        arrival = self._arrived[update.update_id]
        if not arrival.limit.allowed:
            tell = arrival.allowed and arrival.meant and arrival.limit.notify
            await self._turn_away(update, texts.SLOW_DOWN_TEXT, tell, seconds=arrival.limit.wait_seconds)
            return False
        if not queued:
            if arrival.stored is not None and arrival.owed and arrival.stored.is_new:
                await self.services.conversations.settle(arrival.stored)  # stored, classified later, not answered
            await self._turn_away(update, texts.BACKLOG_TEXT, arrival.allowed and arrival.meant and warn)
            return False
        return True

    def release(self, update: object) -> None:
        """The update's handlers have run (or never will): forget what was kept for it."""
        if isinstance(update, Update):
            self._arrived.pop(update.update_id, None)
            self.services.arrivals.pop(update.update_id, None)

    def _take_token(self, update: Update) -> Decision:
        key = identity.sender_key(update)  # a person, or the chat a post was made as (still one bucket each)
        if key is None or self.services.config.telegram.is_admin(key) or is_settings_press(update):
            return ALLOWED
        decision = self.services.rate_limiter.check(key)
        if not decision.allowed:
            logger.info("sender %s is over the rate limit (next update in %.1f s)", key, decision.retry_after)
        return decision

    async def _store(self, update: Update, *, reply_owed: bool) -> StoredMessage | None:
        """Store a new text message (``reply_owed`` until its reply is stored) or an edit's new text."""
        if update.message is not None and update.message.text is not None:
            if update.effective_chat is None or identity.person_of(update) is None:
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

    async def _turn_away(self, update: Update, message: str, tell: bool, **values: object) -> None:
        """An update that won't be handled: ``message`` (a msgid, filled with ``values``) to the person, in their
        language, when ``tell``; a button press is always answered (or its button keeps spinning)."""
        text = None
        if tell:
            language = await update_language(self.services.store, self.services.config, update)
            text = translate(language, message, **values)
        if update.callback_query is not None:
            await update.callback_query.answer(text, show_alert=tell)
        elif text is not None and update.effective_message is not None:
            await update.effective_message.reply_text(text)


def is_settings_press(update: Update) -> bool:
    """True for a press in a /settings menu: going through the menu takes a dozen quick taps and no model work, so
    those never count against (or use up) the person's rate limit."""
    query = update.callback_query
    return query is not None and (query.data or "").startswith(settings_view.PREFIX)
