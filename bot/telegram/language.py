"""Which language the bot speaks to each person, decided here for every text it sends.

A person's language is their stored choice (``/settings``), else their Telegram app's ``language_code``, else
``[bot] default_language``. Texts addressed to a person (replies, alerts, buttons, refusals, a private "Fix a mood"
list) are in that person's language; texts to a whole group (its ``/mood``) in the language of whoever asked. Handlers
ask ``MoodContext.language_of(update)``, which reads the store once per update.
"""

from __future__ import annotations

import logging

from telegram import Update

from bot.config import Config
from bot.i18n import choose_language
from bot.telegram import identity
from storage import PersonSettings, Store

logger = logging.getLogger(__name__)


async def stored_language(store: Store, user_id: int) -> str | None:
    """The language ``user_id`` chose, if any; None too when the store can't say (it may be what failed: the
    person still gets an answer, in Telegram's language)."""
    try:
        return (await store.person_settings(user_id)).language
    except Exception:
        logger.warning("could not read the language of user %s", user_id, exc_info=True)
        return None


async def update_language(store: Store, config: Config, update: Update) -> str:
    """The language to speak to whoever sent ``update``."""
    person = identity.person_of(update)
    stored = await stored_language(store, person.id) if person is not None else None
    return choose_language(stored, telegram_code(update), config.bot.default_language)


def settings_language(settings: PersonSettings, update: Update | None, config: Config) -> str:
    """The same rule for a person whose settings are at hand (just changed in /settings, say): their choice, else
    the Telegram app's language of ``update`` (None: a scheduled message, none at hand), else the default."""
    code = telegram_code(update) if update is not None else None
    return choose_language(settings.language, code, config.bot.default_language)


def telegram_code(update: Update) -> str | None:
    """The language code Telegram gives for whoever sent ``update`` (None when it gives none)."""
    user = update.effective_user
    return user.language_code if user is not None else None


async def person_language(store: Store, config: Config, user_id: int) -> str:
    """The language to speak to ``user_id`` without an update from them (a late reply at start-up): their stored
    choice, else the default; Telegram's code for them is only known from their updates."""
    return choose_language(await stored_language(store, user_id), None, config.bot.default_language)
