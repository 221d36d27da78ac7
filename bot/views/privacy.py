"""The ``/privacy`` and ``/stats`` texts: what is kept, where, for how long; what the database holds. Pure; in the
reader's language.

Texts sent with ``parse_mode=HTML`` are named ``…_html``; their dynamic parts are escaped here.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from bot.i18n import DEFAULT_LANGUAGE, _, ngettext_for, translate
from bot.views.telegram_text import html_to_plain
from engine import EngineSettings

GROUP_LOGS_ADDRESSED_TEXT = _("In groups I only read messages that mention me or reply to me.")
GROUP_LOGS_ALL_TEXT = _(
    "In groups where I can see every message, I keep each text message and its mood (so /mood shows the whole "
    "chat), but I only answer messages that mention me or reply to me."
)
GROUP_POSTED_AS_CHAT_TEXT = _(
    "Messages sent as a channel or as an anonymous admin are neither kept nor answered: they don't say whose "
    "they are."
)
CORRECTIONS_TEXT = _(
    "the moods you set yourself with “Fix a mood” (the button under your mood chart) are kept apart from my "
    "estimates. The person who runs this bot may use them, with the words of those messages, to improve the mood "
    "analysis (they export them with <code>moodbot labels</code>). /forget deletes them along with your messages."
)
BACKUPS_TEXT = _(
    "the database file holds all of the above, and so does every backup of it that the person who runs this bot "
    "makes. /forget and the automatic deletion can't reach those copies."
)
PRIVACY_HTML = _(
    "<b>🔒 What I keep</b>\n"
    "• your messages to me and my replies\n"
    "• a mood estimate (sentiment) for each of your messages\n"
    "• the moods you set yourself with “Fix a mood”\n"
    "• your name, username and Telegram ids (yours and the chat's)\n\n"
    "<b>Where:</b> in one SQLite database on the server of the person who runs this bot. {model_where}\n\n"
    "<b>How long:</b> {how_long}\n\n"
    "<b>Groups:</b> {groups} {posted_as_chat}\n\n"
    "<b>Your corrections:</b> {corrections}\n\n"
    "<b>Backups:</b> {backups}\n\n"
    "/export – download everything I stored about you in this chat (a JSON file; asked in a group, it "
    "arrives in a private chat with me, never in the group)\n"
    "/forget – delete all of it"
)
MODEL_HERE_TEXT = _("Apart from Telegram itself, nothing leaves that server – the language model runs there too.")
MODEL_REMOTE_HTML = _(
    "To be answered and given a mood estimate, your messages and our recent conversation are also sent to a "
    "language-model server, <code>{host}</code>; what that server keeps is up to whoever runs it."
)
STATS_HTML = _(
    "<b>📊 Moodbot stats</b>\n"
    "Chats: {chats}\n"
    "Users: {users}\n"
    "Messages: {messages} (with a mood: {sentiments})\n"
    "Engine queue: {queue}\n"
    "Database: {size}"
)


def privacy_html(
    retention_days: int, log_all_group_messages: bool = False, model_host: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """The ``/privacy`` answer: what is kept, where (and, with ``model_host``, the language-model server messages
    are sent to), for how long, which group messages, backups, and how to delete or download it."""
    if retention_days > 0:
        how_long = ngettext_for(
            language,
            "Messages older than {count} day are deleted automatically (once a day); you can delete yours sooner "
            "with /forget.",
            "Messages older than {count} days are deleted automatically (once a day); you can delete yours sooner "
            "with /forget.",
            retention_days,
        )
    else:
        how_long = translate(language, _("Everything is kept until you delete it with /forget."))
    return translate(
        language, PRIVACY_HTML,
        model_where=model_where(model_host, language), how_long=how_long,
        groups=translate(language, GROUP_LOGS_ALL_TEXT if log_all_group_messages else GROUP_LOGS_ADDRESSED_TEXT),
        posted_as_chat=translate(language, GROUP_POSTED_AS_CHAT_TEXT),
        corrections=translate(language, CORRECTIONS_TEXT), backups=translate(language, BACKUPS_TEXT),
    )


def model_where(model_host: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """Where the language model reads the messages: on the bot's server, or a named remote server."""
    if model_host is None:
        return translate(language, MODEL_HERE_TEXT)
    return translate(language, MODEL_REMOTE_HTML, host=html.escape(model_host))


def privacy_text(
    retention_days: int, log_all_group_messages: bool = False, model_host: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """``privacy_html`` as plain text."""
    return html_to_plain(privacy_html(retention_days, log_all_group_messages, model_host, language))


def stats_html(counts: dict[str, int], queue_depth: int, database_bytes: int, language: str = DEFAULT_LANGUAGE) -> str:
    """The admin's ``/stats``: rows stored, the engine's queue depth and the database's size on disk."""
    return translate(
        language, STATS_HTML,
        chats=counts.get("chats", 0), users=counts.get("users", 0), messages=counts.get("messages", 0),
        sentiments=counts.get("sentiments", 0), queue=queue_depth, size=html.escape(human_bytes(database_bytes)),
    )


def human_bytes(size: int) -> str:
    """``1536`` → ``1.5 KB`` (powers of 1024; whole bytes below 1 KB)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def remote_model_host(engine: EngineSettings) -> str | None:
    """The host of the language-model server that messages are sent to; None when the model runs in-process."""
    if engine.backend != "openai":
        return None
    return urlsplit(engine.base_url).hostname or engine.base_url
