"""The bot's profile and command menu in Telegram, in every language, set at start.

Telegram shows each person the menu and descriptions for their app's language (``language_code``), else the ones
set without a language: English here. ``/stats`` is in the menu only in each admin's own chat with the bot
(``BotCommandScopeChat``). A menu that can't be set (an admin who never opened a chat with the bot, a Telegram
hiccup) is logged and skipped: the commands work all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from bot.config import Config
from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES
from bot.views import about

logger = logging.getLogger(__name__)


def menu(language: str, *, admin: bool = False) -> list[BotCommand]:
    """The command menu in ``language`` (with the admin's commands when ``admin``)."""
    return [BotCommand(command, description) for command, description in about.command_menu(language, admin=admin)]


async def publish_menus(bot: Bot, config: Config) -> None:
    """Set the command menu, the description and the short description for every language, and the admins' menus."""
    for language in LANGUAGES:
        code = None if language == DEFAULT_LANGUAGE else language  # English is what everyone else sees
        where = f"language {code or 'default'}"
        await _best_effort(bot.set_my_commands(menu(language), language_code=code), f"command menu ({where})")
        await _best_effort(bot.set_my_description(about.description(language), language_code=code), where)
        await _best_effort(
            bot.set_my_short_description(about.short_description(language), language_code=code), where
        )
        for admin in config.telegram.admin_user_ids:
            await _best_effort(
                bot.set_my_commands(menu(language, admin=True), scope=BotCommandScopeChat(admin), language_code=code),
                f"admin {admin}'s command menu ({where})",
            )


async def _best_effort(call: Awaitable[object], what: str) -> None:
    try:
        await call
    except TelegramError as exc:
        logger.warning("could not set the bot's %s: %s", what, exc.message)
