"""/settings: one message with buttons that edits itself in place as the person goes through it, and the city they
may type after "Other city…". Asked in a group, it answers with a button that opens the menu in the private chat
(``/start settings``): settings are personal. The pages and what each button changes are ``bot.views.settings``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import BadRequest
from telegram.ext import filters

from bot.i18n import translator
from bot.telegram import identity
from bot.telegram.context import MoodContext
from bot.telegram.language import settings_language
from bot.views import settings as view
from bot.zones import find_zones, person_zone
from storage import PersonSettings

logger = logging.getLogger(__name__)

START_PAYLOAD = "settings"  # t.me/<bot>?start=settings opens the menu in the private chat
# "/start settings" in the private chat, which the group's button sends: the menu, not the greeting.
START_SETTINGS = filters.ChatType.PRIVATE & filters.Regex(rf"^/start(@\w+)?\s+{START_PAYLOAD}\s*$")


async def open_settings(update: Update, context: MoodContext) -> None:
    """Shows the person's settings with buttons to change them; in a group, a button to open them privately."""
    person, message = identity.person(update), update.effective_message
    settings = await context.store.person_settings(person.id)
    t = translator(person_language(settings, update, context)).gettext
    if update.effective_chat.type != ChatType.PRIVATE:
        link = f"https://t.me/{context.bot.username}?start={START_PAYLOAD}"
        button = InlineKeyboardButton(t(view.OPEN_PRIVATELY_BUTTON), url=link)
        await message.reply_text(t(view.OPEN_PRIVATELY_TEXT), reply_markup=InlineKeyboardMarkup([[button]]))
        return
    context.services.typed_city.done(person.id)
    menu = settings_page("home", settings, update, context)
    await message.reply_text(menu.text, reply_markup=keyboard(menu))


async def settings_press(update: Update, context: MoodContext) -> None:
    """Changes the setting a button names (in the presser's own menu only) and shows the menu's next page."""
    query, presser = update.callback_query, identity.person(update)
    press = view.parse_press(query.data)
    settings = await context.store.person_settings(presser.id)
    if press is None or press.owner != presser.id:  # garbled, from an older menu, or someone else's menu
        t = translator(person_language(settings, update, context)).gettext
        await query.answer(t(view.STALE_TEXT if press is None else view.NOT_YOURS_TEXT), show_alert=True)
        return
    changes = view.changes_for(press)
    if changes:
        settings = await context.store.update_settings(presser.id, **changes)
    page = view.page_after(press)
    await_city(context, presser.id, page == "city")
    t = translator(person_language(settings, update, context)).gettext
    await query.answer(t(view.SAVED_TOAST) if changes else None)
    if query.message is not None:  # the menu itself (older than 48 hours it is "inaccessible" but keeps its ids)
        menu = settings_page(page, settings, update, context)
        await show(context, query.message.chat.id, query.message.message_id, menu)


async def typed_city(update: Update, context: MoodContext) -> None:
    """Sets the time zone of the city the person typed, or offers the zones it may mean as buttons."""
    person, message = identity.person(update), update.effective_message
    # Stored the moment it arrived like any message; it answers the bot's question, so it is no message to keep.
    stored = context.services.arrivals.get(update.update_id)
    if stored is not None:
        await context.store.discard_user_message(stored.id)
    names = find_zones(message.text or "")
    settings = await context.store.person_settings(person.id)
    if len(names) == 1:  # unambiguous: saved at once, and the menu shows it
        context.services.typed_city.done(person.id)
        settings = await context.store.update_settings(person.id, time_zone=names[0])
        menu = settings_page("home", settings, update, context)
    else:
        await_city(context, person.id, not names)  # nothing found: the next text is another try
        menu = view.city_matches(person.id, message.text or "", names, person_language(settings, update, context))
    await message.reply_text(menu.text, reply_markup=keyboard(menu))


# -- what the handlers share -------------------------------------------------------------------------------------


def person_language(settings: PersonSettings, update: Update, context: MoodContext) -> str:
    """The language to show /settings in, from the settings at hand (a new choice shows at once)."""
    return settings_language(settings, update, context.config)


def settings_page(page: str, settings: PersonSettings, update: Update, context: MoodContext) -> view.Menu:
    """Page ``page`` of the person's menu ("done": the closed menu) in their language, with their zone's offset."""
    zone = person_zone(settings.time_zone, context.config.mood.utc_offset_minutes)
    language, now = person_language(settings, update, context), datetime.now(UTC)
    if page == "done":
        return view.settings_done(settings, language, zone, now)
    return view.settings_menu(page, settings, language, zone, now)


def keyboard(menu: view.Menu) -> InlineKeyboardMarkup | None:
    """The menu's buttons as Telegram's inline keyboard (None when it has none)."""
    rows = [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in menu.rows]
    return InlineKeyboardMarkup(rows) if rows else None


def await_city(context: MoodContext, user_id: int, asking: bool) -> None:
    """Take the person's next private text as a city (``asking``), or as a message again."""
    if asking:
        context.services.typed_city.ask(user_id)
    else:
        context.services.typed_city.done(user_id)


async def show(context: MoodContext, chat_id: int, message_id: int, menu: view.Menu) -> None:
    """Edit the menu message in place to show ``menu`` (a press that changes nothing leaves it as it is)."""
    try:
        await context.bot.edit_message_text(menu.text, chat_id, message_id, reply_markup=keyboard(menu))
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
        logger.debug("the settings menu is unchanged")

