"""Who may talk to the bot, and which messages are meant for it: the access check runs before every handler."""

from __future__ import annotations

import logging

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot.i18n import translate
from bot.telegram import identity
from bot.telegram.context import MoodContext
from bot.telegram.identity import Person
from bot.views import texts

logger = logging.getLogger(__name__)


async def check_access(update: Update, context: MoodContext) -> None:
    """Stops, before any work, updates from anyone not allowed: they get one polite refusal."""
    # Posts made as a chat get a note on writing as oneself, group chatter not meant for the bot nothing; the update
    # is refused even when its refusal can't be delivered.
    person, chat = identity.person_of(update), update.effective_chat
    if person is not None and context.config.telegram.allows(person.id, chat.id if chat else None):
        return
    try:
        await send_refusal(update, context, person)
    except Exception:  # blocked, message gone, timed out: PTB would run the next handlers if this escaped
        logger.warning("could not send a refusal in chat %s", chat.id if chat else "-", exc_info=True)
    logger.info(
        "refused an update from %s in chat %s",
        f"user {person.id}" if person else f"sender {identity.sender_key(update)}", chat.id if chat else "-",
    )
    raise ApplicationHandlerStop


async def send_refusal(update: Update, context: MoodContext, person: Person | None) -> None:
    """Tell the sender once why they get no answer: a button press gets an alert for the presser alone; a message
    meant for the bot a reply (a stranger's with their user id); channels and automatic forwards nothing."""
    if update.callback_query is not None:  # a button press always comes from a person
        await update.callback_query.answer(await refusal(update, context, person), show_alert=True)
        return
    key, message, chat = identity.sender_key(update), update.effective_message, update.effective_chat
    if (
        key is None or key in context.services.refused_users or message is None or chat is None
        or chat.type == ChatType.CHANNEL or message.is_automatic_forward
        or not meant_for_bot(update, context.bot.id, context.bot.username)
    ):
        return
    await message.reply_text(await refusal(update, context, person))
    context.services.refused_users.add(key)  # only once it was delivered: a lost refusal is tried again


async def refusal(update: Update, context: MoodContext, person: Person | None) -> str:
    """The refusal for the sender of ``update``, in their language: a stranger's with their user id, a post made
    as a chat's with how to write as oneself."""
    language = await context.language_of(update)
    return texts.refusal_text(person.id, language) if person else translate(language, texts.POSTED_AS_CHAT_TEXT)


def meant_for_bot(update: Update, bot_id: int, bot_username: str | None) -> bool:
    """True for anything in a private chat, commands, and group messages that mention or reply to the bot."""
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None or chat.type == ChatType.PRIVATE:
        return True
    if (message.text or "").startswith("/"):
        return True
    return addressed_to_bot(message, bot_id, bot_username)


def addressed_to_bot(message: Message, bot_id: int, bot_username: str | None) -> bool:
    """True when a group message mentions the bot or replies to one of its messages."""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return True
    mentions = message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION])
    for entity, text in mentions.items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            return True
        if bot_username and text.lower() == f"@{bot_username.lower()}":
            return True
    # Telegram marks mentions as entities; clients that don't are still understood by the plain word.
    words = (message.text or "").lower().split()
    return bool(bot_username) and f"@{bot_username.lower()}" in words


def without_mention(text: str, bot_username: str | None) -> str:
    """The message text with ``@botname`` taken out (what the person actually says to the bot)."""
    if not bot_username:
        return text
    cleaned = " ".join(word for word in text.split(" ") if word.lower() != f"@{bot_username.lower()}")
    return cleaned.strip() or text
