"""One small coroutine per command or kind of message; each docstring says what the user gets."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden
from telegram.ext import ApplicationHandlerStop, ExtBot

from bot import identity, render, topics
from bot.charts import render_mood_chart
from bot.context import MoodContext, Services
from bot.conversation import Conversations, Incoming
from bot.identity import Person
from bot.streaming import StreamedReply
from engine import EngineBusy, EngineSettings, Sentiment
from storage import DayMood, MoodSummary, Store, StoredMessage, UserMood

logger = logging.getLogger(__name__)

EMPTY_REPLY_FALLBACK = "I'm here with you. Tell me a little more?"
FORGET_PREFIX = "forget:"  # callback data: forget:yes:<user id> / forget:no:<user id> (the user who asked)


async def check_access(update: Update, context: MoodContext) -> None:
    """Stops, before any work, updates that no allowed person sent: strangers get one polite refusal with their
    user id, posts on behalf of a chat one note on writing as oneself (nothing for group chatter that isn't meant
    for the bot). An update is refused even when the refusal can't be delivered."""
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
        text = render.refusal_text(person.id) if person else render.POSTED_AS_CHAT_TEXT
        await update.callback_query.answer(text, show_alert=True)
        return
    key, message, chat = identity.sender_key(update), update.effective_message, update.effective_chat
    if (
        key is None or key in context.services.refused_users or message is None or chat is None
        or chat.type == ChatType.CHANNEL or message.is_automatic_forward
        or not meant_for_bot(update, context.bot.id, context.bot.username)
    ):
        return
    await message.reply_text(render.refusal_text(person.id) if person else render.POSTED_AS_CHAT_TEXT)
    context.services.refused_users.add(key)  # only once it was delivered: a lost refusal is tried again


def meant_for_bot(update: Update, bot_id: int, bot_username: str | None) -> bool:
    """True for anything in a private chat, commands, and group messages that mention or reply to the bot."""
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None or chat.type == ChatType.PRIVATE:
        return True
    if (message.text or "").startswith("/"):
        return True
    return addressed_to_bot(message, bot_id, bot_username)


async def reply_formatted(message: Message, html_text: str) -> Message:
    """Reply with Telegram-HTML ``html_text``; if Telegram can't parse it, the same words again as plain text."""
    try:
        return await message.reply_text(html_text, parse_mode=ParseMode.HTML)
    except BadRequest as exc:
        if "can't parse entities" not in exc.message.lower():
            raise
        logger.warning("Telegram could not parse a formatted message (%s); sending it as plain text", exc.message)
        return await message.reply_text(render.html_to_plain(html_text))


async def start(update: Update, context: MoodContext) -> None:
    """Greets the person and says what the bot keeps."""
    person = identity.person(update)
    await update.effective_message.reply_text(render.START_TEXT.format(name=person.first_name or "there"))


async def help_command(update: Update, context: MoodContext) -> None:
    """Lists the commands."""
    await reply_formatted(update.effective_message, render.HELP_HTML)


async def mood(update: Update, context: MoodContext) -> None:
    """Shows how the mood moved, as a chart with a short summary: the person's own in a private chat; in a group,
    the chat's plus one line per member who spoke."""
    chat, person, message = update.effective_chat, identity.person(update), update.effective_message
    try:
        days = render.parse_period(context.args[0] if context.args else None, context.config.mood.default_days)
    except ValueError as exc:
        await message.reply_text(str(exc))
        return
    offset = context.config.mood.utc_offset_minutes
    today = local_today(offset)
    in_group = chat.type != ChatType.PRIVATE
    who = "This chat's" if in_group else "Your"
    summary, previous, members = await load_mood(
        context.store, chat.id, None if in_group else person.id, days, today, offset, with_members=in_group
    )
    note = None
    if in_group:
        note = render.GROUP_MOOD_ALL_NOTE if context.config.groups.log_all else render.GROUP_MOOD_ADDRESSED_NOTE
    text = render.mood_summary_text(summary, days, today, who=who, previous=previous, members=members, note=note)
    if summary.messages == 0:
        await message.reply_text(text)  # "nothing yet", never an empty chart
        return
    first_day, last_day = render.period_days(summary, days, today)
    await send_mood_answer(message, text, summary.days, first_day, last_day, render.chart_title(who, days))


async def load_mood(
    store: Store,
    chat_id: int,
    user_id: int | None,
    days: int | None,
    today: date,
    utc_offset_minutes: int,
    *,
    with_members: bool,
) -> tuple[MoodSummary, MoodSummary | None, list[UserMood] | None]:
    """The period's mood (``user_id`` None: the whole chat), the previous period's of the same length (None for all
    time or an empty period) and, ``with_members``, each member's."""
    since = period_start(today, days, utc_offset_minutes)
    scope = {"chat_id": chat_id, "user_id": user_id, "utc_offset_minutes": utc_offset_minutes}
    summary = await store.mood_summary(since=since, **scope)
    if summary.messages == 0:
        return summary, None, None
    previous = None
    if days is not None:
        previous_start = period_start(today - timedelta(days=days), days, utc_offset_minutes)
        previous = await store.mood_summary(since=previous_start, until=since, **scope)
    members = None
    if with_members:
        members = await store.mood_by_user(chat_id=chat_id, since=since, utc_offset_minutes=utc_offset_minutes)
    return summary, previous, members


async def send_mood_answer(
    message: Message, text: str, days: list[DayMood], first_day: date, last_day: date, title: str
) -> None:
    """The chart with the summary as its caption (or a short caption and the summary after it, when too long);
    the summary alone when the chart can't be drawn or Telegram refuses it."""
    try:
        png = await asyncio.to_thread(render_mood_chart, days, first_day, last_day, title=title)
    except Exception:
        logger.exception("could not draw the /mood chart; sending the summary as text")
        png = None
    if png is not None:
        caption, rest = render.photo_caption(text)
        try:
            await message.reply_photo(photo=png, caption=caption)
        except BadRequest as exc:
            logger.warning("Telegram refused the /mood chart (%s); sending the summary as text", exc.message)
        else:
            if rest is None:
                return
    for piece in render.split_for_telegram(text):
        await message.reply_text(piece)


def local_today(utc_offset_minutes: int) -> date:
    """Today's date where the self-hoster lives."""
    return (datetime.now(UTC) + timedelta(minutes=utc_offset_minutes)).date()


def period_start(today: date, days: int | None, utc_offset_minutes: int) -> float:
    """Unix time of local midnight ``days - 1`` days before ``today`` (0 for all time)."""
    if days is None:
        return 0.0
    first = today - timedelta(days=days - 1)
    local_midnight = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return (local_midnight - timedelta(minutes=utc_offset_minutes)).timestamp()


async def reset(update: Update, context: MoodContext) -> None:
    """Sets the conversation aside so replies start fresh; the mood log is kept."""
    await context.store.reset_context(chat_id=update.effective_chat.id, user_id=identity.person(update).id)
    await update.effective_message.reply_text(render.RESET_TEXT)


async def forget(update: Update, context: MoodContext) -> None:
    """Asks, with Yes/Cancel buttons, before deleting everything stored about this person in this chat."""
    user_id = identity.person(update).id
    buttons = InlineKeyboardMarkup(
        [[
            InlineKeyboardButton(render.FORGET_YES_BUTTON, callback_data=f"{FORGET_PREFIX}yes:{user_id}"),
            InlineKeyboardButton(render.FORGET_NO_BUTTON, callback_data=f"{FORGET_PREFIX}no:{user_id}"),
        ]]
    )
    await update.effective_message.reply_text(render.FORGET_CONFIRM_TEXT, reply_markup=buttons)


async def forget_answer(update: Update, context: MoodContext) -> None:
    """Deletes everything after "Yes" from the person who asked (Cancel deletes nothing); others get an alert."""
    query, presser = update.callback_query, identity.person(update)
    choice, asker = parse_forget_data(query.data)
    # Only the person who asked may answer; and the deletion is always of the presser's own rows.
    if asker is None or asker != presser.id:
        await query.answer(render.FORGET_NOT_YOURS_TEXT, show_alert=True)
        return
    if choice != "yes":
        await query.answer()
        await query.edit_message_text(render.FORGET_CANCELLED_TEXT)
        return
    count = await context.services.conversations.forget(chat_id=update.effective_chat.id, user_id=presser.id)
    await query.answer()
    await query.edit_message_text(render.FORGET_TEXT.format(count=count))


async def export(update: Update, context: MoodContext) -> None:
    """Sends this person's messages, replies and moods in this chat as a JSON file (or says there is none); asked
    in a group, the file goes to them in a private chat and the group only hears where it went."""
    chat, person, message = update.effective_chat, identity.person(update), update.effective_message
    data = await context.store.export_user(chat_id=chat.id, user_id=person.id)
    if not data["messages"]:
        await message.reply_text(render.EXPORT_NOTHING_TEXT)
        return
    content = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")
    filename = render.export_filename(chat.id, person.id)
    if chat.type == ChatType.PRIVATE:
        await message.reply_document(document=content, filename=filename, caption=render.EXPORT_CAPTION)
        return
    await export_privately(context.bot, message, person, content, filename)


async def export_privately(bot: ExtBot[None], asked: Message, person: Person, content: bytes, filename: str) -> None:
    """Send a group member's export to their private chat with the bot, then say in the group where it went; when
    Telegram won't let the bot write to them first, say in the group how to open that chat. The group never gets
    the file or any of its text."""
    try:
        await bot.send_document(
            person.id, document=content, filename=filename, caption=render.export_group_caption(asked.chat.title)
        )
    except Forbidden as exc:  # they never started the bot, or blocked it
        logger.info("could not send user %s their export privately: %s", person.id, exc.message)
    except BadRequest as exc:
        if "chat not found" not in exc.message.lower():
            raise
        logger.info("could not send user %s their export privately: %s", person.id, exc.message)
    else:
        await asked.reply_text(render.EXPORT_SENT_PRIVATELY_TEXT)
        return
    await asked.reply_text(render.export_open_private_chat_text(bot.username))


async def privacy(update: Update, context: MoodContext) -> None:
    """Says plainly what is kept, where, for how long, which group messages, and how to delete or download it."""
    config = context.config
    text = render.privacy_html(config.storage.retention_days, config.groups.log_all, remote_model_host(config.engine))
    await reply_formatted(update.effective_message, text)


def remote_model_host(engine: EngineSettings) -> str | None:
    """The host of the language-model server that messages are sent to; None when the model runs in-process."""
    if engine.backend != "openai":
        return None
    return urlsplit(engine.base_url).hostname or engine.base_url


async def stats(update: Update, context: MoodContext) -> None:
    """For admins: how many chats, users and messages are stored, the engine's queue and the database's size."""
    if not context.config.telegram.is_admin(identity.person(update).id):
        await update.effective_message.reply_text(render.ADMIN_ONLY_TEXT)
        return
    counts = await context.store.counts()
    size = database_size(context.config.storage.database)
    await reply_formatted(update.effective_message, render.stats_html(counts, context.engine.queue_depth, size))


def database_size(path: Path) -> int:
    """Bytes the SQLite database takes on disk, its write-ahead log included (0 when there is no file)."""
    total = 0
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            total += file.stat().st_size
        except OSError:
            continue
    return total


async def text_message(update: Update, context: MoodContext) -> None:
    """Answers a text message with care, after logging it and its mood (group chatter not meant for the bot is
    only logged, and only with ``groups.log_all``). Messages over the rate limit or past the chat's backlog were
    stored when they arrived and never get here."""
    message, chat = update.effective_message, update.effective_chat
    in_group = chat.type != ChatType.PRIVATE
    addressed = not in_group or addressed_to_bot(message, context.bot.id, context.bot.username)
    if not addressed and not context.config.groups.log_all:
        return  # never stored, never classified
    conversations = context.services.conversations
    stored = context.services.arrivals.get(update.update_id)  # stored the moment it arrived (bot.intake)
    if stored is None:  # handled without that arrival step
        stored = await conversations.record(incoming_of(update, context.bot.username), reply_owed=addressed)
    if not addressed:
        if stored.is_new:  # for the group's /mood; never answered (a re-delivery is left to the back-fill)
            await conversations.classify(stored)
        return
    if not stored.is_new and not await context.store.reply_owed(stored.id):
        logger.info("chat %s: message %d was already answered (re-delivered update)", chat.id, stored.id)
        return
    target = ReplyTarget(chat.id, message.message_id if in_group else None, topics.thread_id(message))
    await answer_message(context.bot, context.services, stored, target)


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


@dataclass(frozen=True)
class ReplyTarget:
    """Where the answers to a message go: its chat, the message to quote (in groups) and its forum topic."""

    chat_id: int
    quote: int | None = None
    thread_id: int | None = None


async def answer_message(
    bot: Bot, services: Services, stored: StoredMessage, target: ReplyTarget, draft_message_id: int | None = None
) -> None:
    """Classifies a stored message and streams the companion's reply to ``target`` (over ``draft_message_id``, the
    unfinished reply a crash left, when given), then help resources if it signals a crisis. Afterwards the message
    owes no reply, whatever happened (unless cancelled: the process is going down)."""
    conversations = services.conversations

    async def remember_draft(telegram_message_id: int) -> None:
        await conversations.note_draft(stored, telegram_message_id)

    writer = StreamedReply(
        bot, target.chat_id, reply_to_message_id=target.quote, message_thread_id=target.thread_id,
        message_id=draft_message_id, on_sent=remember_draft,
    )
    answered = False
    try:
        started = time.perf_counter()
        sentiment = await conversations.classify(stored)
        classified = time.perf_counter()
        care_text = conversations.care_message(stored, sentiment)
        if sentiment is None:
            await writer.finish(render.BUSY_TEXT)  # over an unfinished reply, if there is one
            return
        try:
            reply_text = await writer.write(conversations.reply(stored)) or EMPTY_REPLY_FALLBACK
        except EngineBusy:
            await writer.finish(render.BUSY_TEXT)
            await offer_care(bot, target, conversations, stored, sentiment, care_text)
            return
        sent = await writer.finish(reply_text)
        await conversations.save_reply(stored, reply_text, sent[0])  # the message owes no reply from here on
        answered = True
        await offer_care(bot, target, conversations, stored, sentiment, care_text)
        if conversations.is_truncated(stored):
            await send(bot, target, render.LONG_MESSAGE_TEXT.format(limit=conversations.max_message_chars))
        logger.info(
            "chat %s: handled message %d (classify %.0f ms, reply %.0f ms, queue %d)%s",
            target.chat_id, stored.id, (classified - started) * 1000, (time.perf_counter() - classified) * 1000,
            services.engine.queue_depth, f": {stored.text!r}" if services.config.logging.include_text else "",
        )
    finally:
        # Told "busy", or an error the person hears of: nothing left to answer late. Cancelled (the process is
        # going down): still owed, answered at the next start.
        if not answered and not _cancelling():
            await conversations.settle(stored)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def send(bot: Bot, target: ReplyTarget, text: str) -> None:
    """Send ``text`` to ``target`` (quoting its message when there is one; sent anyway if that one is gone)."""
    reply_parameters = ReplyParameters(target.quote, allow_sending_without_reply=True) if target.quote else None
    await bot.send_message(
        target.chat_id, text, reply_parameters=reply_parameters, message_thread_id=target.thread_id
    )


async def offer_care(
    bot: Bot, target: ReplyTarget, conversations: Conversations, stored: StoredMessage, sentiment: Sentiment,
    care_text: str | None,
) -> None:
    """Send the help resources after the reply when the message signalled a crisis, and log that we did."""
    if care_text is None:
        return
    await send(bot, target, care_text)
    await conversations.record_care(stored, sentiment)


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
    kind = next((k for k in render.NON_TEXT_REPLIES if getattr(message, k, None)), None)
    await message.reply_text(render.NON_TEXT_REPLIES.get(kind or "", render.DEFAULT_NON_TEXT_REPLY))


async def error_handler(update: object, context: MoodContext) -> None:
    """Logs the error first, then tells the person gently (never a traceback), in the topic they wrote in; it
    says their message is saved only when the database holds it."""
    logger.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        text = render.failed_text(saved=await new_message_saved(update, context))
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


def parse_forget_data(data: str | None) -> tuple[str, int | None]:
    """``forget:yes:42`` → ``("yes", 42)`` (choice, id of the user who asked); any other shape → ``("", None)``."""
    parts = (data or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != FORGET_PREFIX or not parts[2].lstrip("-").isdigit():
        return "", None
    return parts[1], int(parts[2])


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
