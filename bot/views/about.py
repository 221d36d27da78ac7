"""What the bot says about itself in Telegram: its profile's description and short description, and its command
menu, in each language. Pure: ``bot.telegram.menus`` publishes them at start."""

from __future__ import annotations

from bot.i18n import DEFAULT_LANGUAGE, _, translate

# Telegram's limits: a description (shown in an empty chat) up to 512 characters, a short one (on the profile and in
# shared links) up to 120, a command's description up to 256.
DESCRIPTION_LIMIT, SHORT_DESCRIPTION_LIMIT, COMMAND_DESCRIPTION_LIMIT = 512, 120, 256

DESCRIPTION = _(
    "Hi! I'm Moodbot, a friendly ear. Write to me about anything – I'll answer with care and keep a private mood "
    "log, so /mood can show how your days have been. /privacy says what I keep; /forget deletes it."
)
SHORT_DESCRIPTION = _("A friendly ear that answers with care and keeps a private mood log.")

# The public menu, in this order; /stats is added for admins only, in their own chats.
COMMANDS = (
    ("mood", _("How my mood moved (7d, 30d, 90d, all)")),
    ("reset", _("Start the conversation fresh")),
    ("forget", _("Delete everything stored about me here")),
    ("export", _("Download everything stored about me here")),
    ("settings", _("Language, time zone, check-ins, reply length")),
    ("privacy", _("What is kept, where, and for how long")),
    ("help", _("What this bot does")),
    ("start", _("Say hello")),
)
ADMIN_COMMANDS = (("stats", _("Chats, users, messages and the engine's queue (admins)")),)


def description(language: str = DEFAULT_LANGUAGE) -> str:
    """The description an empty chat with the bot shows."""
    return translate(language, DESCRIPTION)


def short_description(language: str = DEFAULT_LANGUAGE) -> str:
    """The short description on the bot's profile."""
    return translate(language, SHORT_DESCRIPTION)


def command_menu(language: str = DEFAULT_LANGUAGE, *, admin: bool = False) -> list[tuple[str, str]]:
    """``(command, description)`` pairs of the menu, with the admin's commands when ``admin``."""
    commands = COMMANDS + ADMIN_COMMANDS if admin else COMMANDS
    return [(command, translate(language, text)) for command, text in commands]
