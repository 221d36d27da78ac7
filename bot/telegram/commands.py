"""One small coroutine per command; each docstring says what the person gets."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest
from telegram.ext import ExtBot

from bot.flow import MoodChart
from bot.i18n import translate
from bot.telegram import checkins, identity
from bot.telegram.context import MoodContext
from bot.telegram.fix_mood import fix_button
from bot.telegram.identity import Person
from bot.telegram.replies import sent_privately
from bot.views import privacy as privacy_view
from bot.views import texts
from bot.views.charts import render_mood_chart
from bot.views.telegram_text import html_to_plain, photo_caption, split_for_telegram

logger = logging.getLogger(__name__)

FORGET_PREFIX = "forget:"  # callback data: forget:yes:<user id> / forget:no:<user id> (the user who asked)


async def start(update: Update, context: MoodContext) -> None:
    """Greets the person, says what the bot keeps, and (once, privately) offers a daily check-in."""
    person, language = identity.person(update), await context.language_of(update)
    name = person.first_name or translate(language, texts.THERE)
    await update.effective_message.reply_text(translate(language, texts.START_TEXT, name=name))
    if update.effective_chat.type == ChatType.PRIVATE:  # check-ins happen in the private chat only
        await checkins.offer_checkin(update, context)


async def help_command(update: Update, context: MoodContext) -> None:
    """Lists the commands."""
    await reply_formatted(update.effective_message, translate(await context.language_of(update), texts.HELP_HTML))


async def mood(update: Update, context: MoodContext) -> None:
    """Shows how the mood moved, chart and summary: the person's own, or in a group the chat's and each member's."""
    chat, message, asker = update.effective_chat, update.effective_message, identity.person(update).id
    language = await context.language_of(update)
    in_group = chat.type != ChatType.PRIVATE
    # Days are counted in the asker's time zone, in a group too; a group's words are in the asker's language.
    report = await context.services.conversations.mood_report(
        chat_id=chat.id, user_id=None if in_group else asker, asker_id=asker,
        argument=context.args[0] if context.args else None, language=language,
    )
    if report.chart is None:
        await message.reply_text(report.text)
        return
    # "Fix a mood" lists the asker's own messages only, privately; in a group only the asker can use it.
    await send_mood_answer(message, report.text, report.chart, fix_button(asker, language))


async def reset(update: Update, context: MoodContext) -> None:
    """Sets the conversation aside so replies start fresh; the mood log is kept."""
    await context.services.conversations.reset(chat_id=update.effective_chat.id, user_id=identity.person(update).id)
    await update.effective_message.reply_text(translate(await context.language_of(update), texts.RESET_TEXT))


async def forget(update: Update, context: MoodContext) -> None:
    """Asks, with Yes/Cancel buttons, before deleting everything stored about this person in this chat."""
    user_id, language = identity.person(update).id, await context.language_of(update)
    yes, no = translate(language, texts.FORGET_YES_BUTTON), translate(language, texts.FORGET_NO_BUTTON)
    buttons = InlineKeyboardMarkup(
        [[
            InlineKeyboardButton(yes, callback_data=f"{FORGET_PREFIX}yes:{user_id}"),
            InlineKeyboardButton(no, callback_data=f"{FORGET_PREFIX}no:{user_id}"),
        ]]
    )
    await update.effective_message.reply_text(translate(language, texts.FORGET_CONFIRM_TEXT), reply_markup=buttons)


async def forget_answer(update: Update, context: MoodContext) -> None:
    """Deletes everything after "Yes" from the person who asked (Cancel deletes nothing); others get an alert."""
    query, presser, language = update.callback_query, identity.person(update), await context.language_of(update)
    choice, asker = parse_forget_data(query.data)
    # Only the person who asked may answer; and the deletion is always of the presser's own rows.
    if asker is None or asker != presser.id:
        await query.answer(translate(language, texts.FORGET_NOT_YOURS_TEXT), show_alert=True)
        return
    if choice != "yes":
        await query.answer()
        await query.edit_message_text(translate(language, texts.FORGET_CANCELLED_TEXT))
        return
    count = await context.services.conversations.forget(chat_id=update.effective_chat.id, user_id=presser.id)
    await query.answer()
    await query.edit_message_text(texts.forget_text(count, language))


async def export(update: Update, context: MoodContext) -> None:
    """Sends this person's messages, replies and moods in this chat as a JSON file, privately when asked in a group."""
    chat, person, message = update.effective_chat, identity.person(update), update.effective_message
    language = await context.language_of(update)
    data = await context.store.export_user(chat_id=chat.id, user_id=person.id)
    if not data["messages"] and not data.get("self_reports"):  # check-ins alone are worth a file too
        await message.reply_text(translate(language, texts.EXPORT_NOTHING_TEXT))
        return
    about = texts.export_about(language)
    content = json.dumps({"about": about, **data}, ensure_ascii=False, indent=2).encode("utf-8")
    filename = texts.export_filename(chat.id, person.id)
    if chat.type == ChatType.PRIVATE:
        caption = translate(language, texts.EXPORT_CAPTION)
        await message.reply_document(document=content, filename=filename, caption=caption)
        return
    await export_privately(context.bot, message, person, (content, filename), language)


async def privacy(update: Update, context: MoodContext) -> None:
    """Says plainly what is kept, where, for how long, which group messages, and how to delete or download it."""
    config, language = context.config, await context.language_of(update)
    text = privacy_view.privacy_html(
        config.storage.retention_days, config.groups.log_all, privacy_view.remote_model_host(config.engine), language
    )
    await reply_formatted(update.effective_message, text)


async def stats(update: Update, context: MoodContext) -> None:
    """For admins: how many chats, users and messages are stored, the engine's queue and the database's size."""
    language = await context.language_of(update)
    if not context.config.telegram.is_admin(identity.person(update).id):
        await update.effective_message.reply_text(translate(language, texts.ADMIN_ONLY_TEXT))
        return
    counts = await context.store.counts()
    size = database_size(context.config.storage.database)
    text = privacy_view.stats_html(counts, context.engine.queue_depth, size, language)
    await reply_formatted(update.effective_message, text)


# -- what the commands share -------------------------------------------------------------------------------------


async def reply_formatted(message: Message, html_text: str) -> Message:
    """Reply with Telegram-HTML ``html_text``; if Telegram can't parse it, the same words again as plain text."""
    try:
        return await message.reply_text(html_text, parse_mode=ParseMode.HTML)
    except BadRequest as exc:
        if "can't parse entities" not in exc.message.lower():
            raise
        logger.warning("Telegram could not parse a formatted message (%s); sending it as plain text", exc.message)
        return await message.reply_text(html_to_plain(html_text))


async def send_mood_answer(
    message: Message, text: str, chart: MoodChart, buttons: InlineKeyboardMarkup | None = None
) -> None:
    """The chart with the summary as its caption (or a short caption and the summary after it, when too long);
    the summary alone when the chart can't be drawn or Telegram refuses it. ``buttons`` go under the last part."""
    try:
        png = await asyncio.to_thread(
            render_mood_chart, chart.days, chart.first_day, chart.last_day, title=chart.title,
            self_reports=chart.self_reports, language=chart.language,
        )
    except Exception:
        logger.exception("could not draw the /mood chart; sending the summary as text")
        png = None
    if png is not None:
        caption, rest = photo_caption(text)
        try:
            await message.reply_photo(photo=png, caption=caption, reply_markup=buttons if rest is None else None)
        except BadRequest as exc:
            logger.warning("Telegram refused the /mood chart (%s); sending the summary as text", exc.message)
        else:
            if rest is None:
                return
    pieces = split_for_telegram(text)
    for number, piece in enumerate(pieces, start=1):
        await message.reply_text(piece, reply_markup=buttons if number == len(pieces) else None)


async def export_privately(
    bot: ExtBot[None], asked: Message, person: Person, file: tuple[bytes, str], language: str
) -> None:
    """Send a group member's export (``file``: its content and name) to their private chat with the bot, then say
    in the group where it went; when Telegram won't let the bot write to them first, say in the group how to open
    that chat. The group never gets the file or any of its text."""
    content, filename = file
    caption = texts.export_group_caption(asked.chat.title, language)
    sending = bot.send_document(person.id, document=content, filename=filename, caption=caption)
    if await sent_privately(sending, person.id):
        await asked.reply_text(translate(language, texts.EXPORT_SENT_PRIVATELY_TEXT))
        return
    await asked.reply_text(texts.export_open_private_chat_text(bot.username, language))


def parse_forget_data(data: str | None) -> tuple[str, int | None]:
    """``forget:yes:42`` → ``("yes", 42)`` (choice, id of the user who asked); any other shape → ``("", None)``."""
    parts = (data or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != FORGET_PREFIX or not parts[2].lstrip("-").isdigit():
        return "", None
    return parts[1], int(parts[2])


def database_size(path: Path) -> int:
    """Bytes the SQLite database takes on disk, its write-ahead log included (0 when there is no file)."""
    total = 0
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            total += file.stat().st_size
        except OSError:
            continue
    return total
