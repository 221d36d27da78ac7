"""Handlers for what people write (text, edits, stickers and the like) and the one error handler."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType

from bot.flow import Incoming
from bot.telegram import identity, topics
from bot.telegram.access import addressed_to_bot, without_mention
from bot.telegram.context import MoodContext
from bot.telegram.replies import ReplyTarget, answer_message
from bot.views import texts

logger = logging.getLogger(__name__)


async def text_message(update: Update, context: MoodContext) -> None:
    """Answers a text message with care, after logging it and its mood."""
    # Group chatter not meant for the bot is only logged, and only with groups.log_all. Messages over the rate limit
    # or past the chat's backlog were stored when they arrived and never get here.
    message, chat = update.effective_message, update.effective_chat
    in_group = chat.type != ChatType.PRIVATE
    addressed = not in_group or addressed_to_bot(message, context.bot.id, context.bot.username)
    if not addressed and not context.config.groups.log_all:
        return  # never stored, never classified
    conversations = context.services.conversations
    stored = context.services.arrivals.get(update.update_id)  # stored the moment it arrived (bot.telegram.intake)
    if stored is None:  # handled without that arrival step
        stored = await conversations.record(incoming_of(update, context.bot.username), reply_owed=addressed)
    if not addressed:
        if stored.is_new:  # for the group's /mood; never answered (a re-delivery is left to the back-fill)
            await conversations.classify(stored)
        return
    if not stored.is_new and not await context.store.reply_owed(stored.id):
        logger.info("chat %s: message %d was already answered (re-delivered update)", chat.id, stored.id)
        return
    if not in_group:  # after a check-in tap, the next message is also the day's note (and answered as usual)
        await context.services.checkins.keep_note(stored.user_id, stored.text)
    target = ReplyTarget(chat.id, message.message_id if in_group else None, topics.thread_id(message), not in_group)
    await answer_message(context.bot, conversations, stored, target, language=await context.language_of(update))


def incoming_of(update: Update, bot_username: str | None) -> Incoming:
    """The text message of ``update`` with who sent it where (in groups without the bot's @name)."""
    message, chat, user = update.effective_message, update.effective_chat, identity.person(update)
    in_group = chat.type != ChatType.PRIVATE
    return Incoming(
        chat_id=chat.id, chat_kind=chat.type, chat_title=chat.title, user_id=user.id,
        first_name=user.first_name, username=user.username,
        text=without_mention(message.text, bot_username) if in_group else message.text,
        message_id=message.message_id, thread_id=topics.thread_id(message),
    )


async def edited_text(update: Update, context: MoodContext) -> None:
    """Updates the stored text and mood of an edited message; no second reply."""
    message = update.edited_message
    if message is None or message.text is None:
        return
    stored = context.services.arrivals.get(update.update_id)  # the new text, stored the moment it arrived
    if stored is None:
        stored = await context.store.update_user_message_text(
            chat_id=message.chat_id, telegram_message_id=message.message_id, text=message.text
        )
    if stored is not None:
        await context.services.conversations.classify(stored)


async def non_text(update: Update, context: MoodContext) -> None:
    """Answers stickers, photos, voice and other non-text messages with a short, friendly note."""
    message = update.effective_message
    kind = next((k for k in texts.NON_TEXT_REPLIES if getattr(message, k, None)), None)
    await message.reply_text(texts.non_text_reply(kind, await context.language_of(update)))


async def error_handler(update: object, context: MoodContext) -> None:
    """Logs the error first, then tells the person gently (never a traceback) in the topic they wrote in."""
    logger.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        # It says their message is saved only when the database holds it.
        language = await context.language_of(update)  # never raises: a failing store leaves Telegram's language
        text = texts.failed_text(await new_message_saved(update, context), language)
        try:
            await context.bot.send_message(
                update.effective_chat.id, text, message_thread_id=topics.thread_id(update.effective_message)
            )
        except Exception:
            logger.warning("could not tell chat %s about the error", update.effective_chat.id, exc_info=True)


async def new_message_saved(update: Update, context: MoodContext) -> bool:
    """True when ``update`` is a new text message that the database has committed (edits, commands and button
    presses are not messages it saves; a store that can't answer counts as not saved)."""
    message = update.message
    if message is None or message.text is None or message.text.startswith("/"):
        return False
    try:
        return await context.store.has_user_message(chat_id=message.chat_id, telegram_message_id=message.message_id)
    except Exception:  # the store may be what failed; then nothing is promised
        logger.warning("could not check whether message %s is stored", message.message_id, exc_info=True)
        return False
