"""The daily check-in in Telegram: its five face buttons and what a tap does, the offer after /start, and the
day's note taken from the person's next message.

Buttons carry only the id of the person they were sent to and a number (a face, or a choice); every press is
checked against the presser, so only that person can answer, and data that can't be read is answered kindly.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.flow.checkins import OFFERED_CHECKIN_TIME
from bot.i18n import translate
from bot.telegram import identity
from bot.telegram.context import MoodContext
from bot.views import checkins as view

logger = logging.getLogger(__name__)

CHECKIN_PREFIX = "checkin:"  # callback data: checkin:<user id it was sent to>:<face 0-4>
OFFER_PREFIX = "offer:"  # callback data: offer:<user id it was offered to>:<choice>
OFFER_CHOICES = ("yes", "settings", "no")


async def checkin_tap(update: Update, context: MoodContext) -> None:
    """Keeps the face the person tapped as today's mood and invites a few words as the day's note."""
    query, presser = update.callback_query, identity.person(update)
    language = await context.language_of(update)
    tapped = parse_checkin_data(query.data)
    if not await _pressed_by_its_owner(query, tapped, presser.id, language):
        return
    assert tapped is not None
    score = view.SCORES[tapped[1]]
    await context.services.checkins.report(presser.id, score)
    await query.answer()
    await edit_quietly(query, view.saved_text(score, language), checkin_buttons(presser.id))


async def offer_answer(update: Update, context: MoodContext) -> None:
    """Switches the daily check-in on at 20:00, or points to /settings, as the person chose."""
    query, presser = update.callback_query, identity.person(update)
    language = await context.language_of(update)
    chosen = parse_offer_data(query.data)
    if not await _pressed_by_its_owner(query, chosen, presser.id, language):
        return
    assert chosen is not None
    if chosen[1] == "yes":
        settings = await context.services.checkins.accept_offer(presser.id)
        zone = view.zone_label(settings.time_zone, context.config.mood.utc_offset_minutes)
        answer = view.offer_accepted_text(settings.checkin_time, zone, language)
    else:
        message = view.OFFER_TO_SETTINGS if chosen[1] == "settings" else view.OFFER_DECLINED
        answer = translate(language, message)
    await query.answer()
    await edit_quietly(query, answer, None)


async def offer_checkin(update: Update, context: MoodContext) -> None:
    """After the /start greeting in a private chat: the daily check-in offered once, with three buttons."""
    person = identity.person(update)
    settings = await context.services.checkins.take_offer(person.id)
    if settings is None:
        return
    language = await context.language_of(update)
    buttons = offer_buttons(person.id, OFFERED_CHECKIN_TIME, language)
    await update.effective_message.reply_text(translate(language, view.OFFER), reply_markup=buttons)


# -- the buttons and what they carry ----------------------------------------------------------------------------


def checkin_buttons(user_id: int) -> InlineKeyboardMarkup:
    """One row of the five faces, 😞 to 😄, for ``user_id``'s check-in."""
    return InlineKeyboardMarkup(
        [[
            InlineKeyboardButton(face, callback_data=f"{CHECKIN_PREFIX}{user_id}:{index}")
            for index, face in enumerate(view.FACES)
        ]]
    )


def offer_buttons(user_id: int, checkin_time: str, language: str) -> InlineKeyboardMarkup:
    """Yes (at ``checkin_time``) / I'll choose in /settings / No, thanks: one per row, so each reads whole."""
    labels = (
        translate(language, view.OFFER_YES, time=checkin_time),
        translate(language, view.OFFER_SETTINGS),
        translate(language, view.OFFER_NO),
    )
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=f"{OFFER_PREFIX}{user_id}:{choice}")]
         for label, choice in zip(labels, OFFER_CHOICES, strict=True)]
    )


def parse_checkin_data(data: str | None) -> tuple[int, int] | None:
    """``checkin:42:3`` → ``(42, 3)`` (the person it was sent to, the face); any other shape → None."""
    parts = (data or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != CHECKIN_PREFIX or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    face = int(parts[2])
    return (int(parts[1]), face) if face < len(view.FACES) else None


def parse_offer_data(data: str | None) -> tuple[int, str] | None:
    """``offer:42:yes`` → ``(42, "yes")``; any other shape or choice → None."""
    parts = (data or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != OFFER_PREFIX or not parts[1].isdigit() or parts[2] not in OFFER_CHOICES:
        return None
    return int(parts[1]), parts[2]


async def edit_quietly(query: CallbackQuery, text: str, buttons: InlineKeyboardMarkup | None) -> None:
    """Edit the pressed message; the same answer pressed twice ("not modified") and a message Telegram won't edit
    any more (the answer is stored all the same) are only logged."""
    try:
        await query.edit_message_text(text, reply_markup=buttons)
    except BadRequest as exc:
        if "not modified" in exc.message.lower():
            return
        logger.info("could not edit a check-in message (%s); the answer is kept", exc.message)


async def _pressed_by_its_owner(
    query: CallbackQuery, parsed: tuple[int, object] | None, presser_id: int, language: str
) -> bool:
    """True when the button's data was readable and names the person who pressed it; else answers kindly why
    nothing happened (unreadable data, or someone else's button) and returns False."""
    if parsed is not None and parsed[0] == presser_id:
        return True
    reason = view.UNREADABLE if parsed is None else view.NOT_YOURS
    await query.answer(translate(language, reason), show_alert=True)
    return False
