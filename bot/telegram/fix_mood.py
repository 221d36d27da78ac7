""""Fix a mood": the button under ``/mood``, the list of the person's last messages it sends them, and the face
buttons that set a message's mood.

The list is only ever sent to the person's private chat with the bot (in a private chat that is where /mood was
asked), so one person's words never reach a group or anyone else. Buttons carry no words, only the store's id of a
message (or of the person who asked /mood) and a label; every press is checked against the presser: only the
author of a message can set its mood, whatever a button claims.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest

from bot.i18n import DEFAULT_LANGUAGE, translate
from bot.telegram import identity
from bot.telegram.context import MoodContext
from bot.telegram.replies import sent_privately
from bot.views import fix_mood as fix_view
from bot.views import texts
from storage import LABELS, CorrectionOutcome, LabelledMessage, Store

logger = logging.getLogger(__name__)

FIX_LIST_PREFIX = "fixlist:"  # callback data: fixlist:<user id of the person who asked /mood>
FIX_PREFIX = "fix:"  # callback data: fix:<message id>:<label>
CALLBACK_DATA_LIMIT = 64  # bytes Telegram keeps of a button's callback data


async def fix_list(update: Update, context: MoodContext) -> None:
    """Sends the person, privately, their last messages here with their moods and face buttons to correct them."""
    query, presser, chat = update.callback_query, identity.person(update), update.effective_chat
    language = await context.language_of(update)  # the presser's: the list and the alerts are theirs alone
    if parse_fix_list_data(query.data) != presser.id:
        await query.answer(translate(language, texts.FIX_LIST_NOT_YOURS_TEXT), show_alert=True)
        return
    messages = await context.store.recent_labelled(chat_id=chat.id, user_id=presser.id, limit=fix_view.FIX_LIST_SIZE)
    if not messages:
        await query.answer(translate(language, texts.FIX_NOTHING_TEXT), show_alert=True)
        return
    text, buttons = fix_view.fix_list_text(messages, language), list_buttons(messages)
    if not await sent_privately(context.bot.send_message(presser.id, text, reply_markup=buttons), presser.id):
        await query.answer(texts.fix_open_private_chat_text(context.bot.username, language), show_alert=True)
        return
    sent = translate(language, texts.FIX_SENT_PRIVATELY_TEXT)
    await query.answer(sent if chat.type != ChatType.PRIVATE else None)


async def fix_label(update: Update, context: MoodContext) -> None:
    """Sets the mood the person chose for one of their messages, and shows their list again with it."""
    query, presser, language = update.callback_query, identity.person(update), await context.language_of(update)
    chosen = parse_fix_data(query.data)
    if chosen is None:
        await query.answer()
        return
    message_id, label = chosen
    outcome = await context.store.set_label(message_id=message_id, user_id=presser.id, label=label)
    if outcome is not CorrectionOutcome.SAVED:
        why = texts.FIX_GONE_TEXT if outcome is CorrectionOutcome.GONE else texts.FIX_NOT_YOURS_TEXT
        await query.answer(translate(language, why), show_alert=True)
        return
    await query.answer(fix_view.saved_text(label, language))
    if isinstance(query.message, Message):  # older than 48 hours, Telegram no longer shows it to the bot
        await show_list_again(query.message, context.store, presser.id, language)


# -- the buttons and what they carry ----------------------------------------------------------------------------


def fix_button(user_id: int, language: str = DEFAULT_LANGUAGE) -> InlineKeyboardMarkup:
    """The "Fix a mood" button under a /mood answer asked by ``user_id``, in their ``language``."""
    button = InlineKeyboardButton(translate(language, texts.FIX_MOOD_BUTTON), callback_data=fix_list_data(user_id))
    return InlineKeyboardMarkup([[button]])


def list_buttons(messages: Sequence[LabelledMessage]) -> InlineKeyboardMarkup | None:
    """One row of face buttons per listed message, numbered as in the list's text; None for an empty list."""
    rows = [
        [
            InlineKeyboardButton(fix_view.face_button(number, label), callback_data=fix_data(message.id, label))
            for label in LABELS
        ]
        for number, message in enumerate(messages, start=1)
    ]
    return InlineKeyboardMarkup(rows) if rows else None


def fix_list_data(user_id: int) -> str:
    """``fixlist:<user id>``."""
    return _checked(f"{FIX_LIST_PREFIX}{user_id}")


def fix_data(message_id: int, label: str) -> str:
    """``fix:<message id>:<label>``."""
    return _checked(f"{FIX_PREFIX}{message_id}:{label}")


def parse_fix_list_data(data: str | None) -> int | None:
    """``fixlist:42`` → 42; any other shape → None."""
    rest = (data or "").removeprefix(FIX_LIST_PREFIX)
    if rest == data or not rest.lstrip("-").isdigit():
        return None
    return int(rest)


def parse_fix_data(data: str | None) -> tuple[int, str] | None:
    """``fix:17:negative`` → ``(17, "negative")``; any other shape (or label) → None."""
    parts = (data or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != FIX_PREFIX or not parts[1].isdigit() or parts[2] not in LABELS:
        return None
    return int(parts[1]), parts[2]


def listed_ids(message: Message) -> list[int]:
    """The ids of the messages a list shows, read from its own buttons (the list keeps no state elsewhere)."""
    markup = message.reply_markup
    rows = markup.inline_keyboard if markup is not None else ()
    chosen = (parse_fix_data(button.callback_data) for row in rows for button in row)  # type: ignore[arg-type]
    return list(dict.fromkeys(found[0] for found in chosen if found is not None))


async def show_list_again(list_message: Message, store: Store, user_id: int, language: str) -> None:
    """Edit a list to show its messages' moods as they are now (those still stored), in ``language``."""
    messages = await store.labelled_messages(user_id=user_id, message_ids=listed_ids(list_message))
    text = fix_view.fix_list_text(messages, language)
    try:
        await list_message.edit_text(text, reply_markup=list_buttons(messages))
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():  # the same face pressed again
            raise
        logger.debug("the fix list is unchanged")


def _checked(data: str) -> str:
    if len(data.encode("utf-8")) > CALLBACK_DATA_LIMIT:
        raise ValueError(f"callback data longer than {CALLBACK_DATA_LIMIT} bytes: {data!r}")
    return data
