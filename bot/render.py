"""Pure, synchronous text for users: help, mood summaries, friendly answers. No Telegram, no I/O.

Texts sent with ``parse_mode=HTML`` are named ``…_html``/``…_HTML``; their dynamic parts are escaped here, and
``html_to_plain`` gives the same words without markup for when Telegram can't parse it anyway.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import date, timedelta

from storage import DayMood, MoodSummary, UserMood

TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
MAX_MEMBERS_LISTED = 10  # /mood in a group lists at most this many members
TREND_FLAT = 0.05  # a smaller change of the average score is shown as → (steady)

HELP_HTML = (
    "<b>I'm Moodbot</b>, a friendly ear. Write to me about anything and I'll answer with care. "
    "I also keep a private mood log, so you can see how your days have been.\n\n"
    "/mood [7d|30d|90d|all] – how your mood moved (default: last 7 days)\n"
    "/reset – start our conversation fresh (your mood log stays)\n"
    "/forget – delete everything I stored about you in this chat\n"
    "/export – download everything I stored about you in this chat (a JSON file, sent to you privately)\n"
    "/privacy – what I keep, where, for how long, and how to delete it\n"
    "/help – this message"
)

START_TEXT = (
    "Hi {name}! 👋 I'm Moodbot. Tell me how you're doing, what's on your mind, big or small – I'm here to listen.\n\n"
    "Each message you send is stored in this bot's database with an estimate of its mood, so /mood can show "
    "how your days went; /forget deletes all of it. Type /help for everything I can do."
)

RESET_TEXT = "Fresh start 🌱 I've set our earlier conversation aside. Your mood log is kept (/mood)."
FORGET_TEXT = "Done. I deleted everything I had stored about you in this chat ({count} messages). 🧹"
FORGET_CONFIRM_TEXT = (
    "Delete everything I stored about you in this chat – your messages, my replies and their moods? "
    "This can't be undone. (/export first if you'd like a copy.)"
)
FORGET_YES_BUTTON = "Yes, delete everything"
FORGET_NO_BUTTON = "Cancel"
FORGET_CANCELLED_TEXT = "Nothing was deleted."
FORGET_NOT_YOURS_TEXT = "Only the person who asked can answer this. Send /forget yourself to delete your own data."
EXPORT_CAPTION = "Everything I stored about you in this chat: your messages, my replies and their moods."
EXPORT_GROUP_CAPTION = "Everything I stored about you in {chat}: your messages, my replies and their moods."
EXPORT_NOTHING_TEXT = "I have nothing stored about you in this chat – there's nothing to export. 🙂"
EXPORT_SENT_PRIVATELY_TEXT = "I've sent your export to you in our private chat. 📬"
EXPORT_OPEN_PRIVATE_CHAT_TEXT = (
    "I only send exports in a private chat, and I can't write to you there yet. Open a chat with me ({bot}), "
    "press Start, then send /export here again. 📬"
)
# Said only after the message is committed to the database (see handlers.text_message and new_message_saved).
BUSY_TEXT = "I'm talking with a lot of people right now 😅 Your message is saved – please try again in a moment."
FAILED_SAVED_TEXT = "Sorry, something went wrong on my side. Your message is saved; please try again in a moment."
FAILED_TEXT = "Sorry, something went wrong on my side. Please try again in a moment."
LONG_MESSAGE_TEXT = (
    "That was a long message! It's saved in full, but I could only read its first {limit} characters for my answer "
    "and your mood log. 📜"
)
REFUSAL_TEXT = (
    "Sorry, this Moodbot is private and only talks with the people its owner has allowed. 🙏 "
    "If you know the owner, they can let you in with your user id: {user_id}"
)
POSTED_AS_CHAT_TEXT = (
    "I keep a personal mood log for each person, and a message sent as a channel or as an anonymous admin "
    "doesn't tell me who wrote it – so I don't keep or answer it. Please write to me as yourself (pick your own "
    "account under “Send as”, or turn off “Remain anonymous”). 🙏"
)
ADMIN_ONLY_TEXT = "Sorry, /stats is only for the people who run this bot. 🙏"
SLOW_DOWN_TEXT = (
    "Slow down a little, please 🙂 I can answer again in {seconds} s. "
    "Everything you write meanwhile is still saved in your mood log."
)
BACKLOG_TEXT = (
    "That's a lot of messages at once! 🙂 Everything is saved in your mood log, but I'll only answer what I already "
    "have; give me a moment to catch up."
)
GROUP_LOGS_ADDRESSED_TEXT = "In groups I only read messages that mention me or reply to me."
GROUP_LOGS_ALL_TEXT = (
    "In groups where I can see every message, I keep each text message and its mood (so /mood shows the whole "
    "chat), but I only answer messages that mention me or reply to me."
)
GROUP_POSTED_AS_CHAT_TEXT = (
    "Messages sent as a channel or as an anonymous admin are neither kept nor answered: they don't say whose "
    "they are."
)
BACKUPS_TEXT = (
    "the database file holds all of the above, and so does every backup of it that the person who runs this bot "
    "makes. /forget and the automatic deletion can't reach those copies."
)
GROUP_MOOD_ADDRESSED_NOTE = "(Only messages written to me count: mentions and replies.)"
GROUP_MOOD_ALL_NOTE = "(Every text message in this chat counts.)"
NOTHING_YET_TEXT = "Nothing yet for {period} – write to me and your mood will show up here. 🙂"

NON_TEXT_REPLIES = {
    "sticker": "Nice sticker! 😄 I can only read text, though – tell me in words how you're feeling?",
    "photo": "Thanks for sharing a picture! I can't see images yet – would you tell me about it in words?",
    "voice": "I can't listen to voice messages yet 🙉 Could you write it down for me?",
    "audio": "I can't listen to audio yet 🎧 Could you tell me in a few words?",
    "video": "I can't watch videos yet 🎬 Would you tell me about it in words?",
    "video_note": "I can't watch video notes yet – could you write me instead?",
    "animation": "Ha, a GIF! 😄 I only understand text, though – what's on your mind?",
    "document": "I can't open files, sorry 📄 Tell me in a message what's up?",
    "location": "Thanks for the location! I only read text, though – how are you doing?",
    "contact": "I can only read text messages – how are you doing today?",
    "poll": "I can't vote in polls 🙂 but I'd love to hear how you're doing.",
}
DEFAULT_NON_TEXT_REPLY = "I can only read text messages for now – tell me in words how you're doing? 🙂"

def privacy_html(retention_days: int, log_all_group_messages: bool = False, model_host: str | None = None) -> str:
    """The ``/privacy`` answer: what is kept, where (and, with ``model_host``, the language-model server messages
    are sent to), for how long, which group messages, backups, and how to delete or download it."""
    if retention_days > 0:
        how_long = (
            f"Messages older than {retention_days} day{'s' if retention_days != 1 else ''} are deleted "
            "automatically (once a day); you can delete yours sooner with /forget."
        )
    else:
        how_long = "Everything is kept until you delete it with /forget."
    groups = GROUP_LOGS_ALL_TEXT if log_all_group_messages else GROUP_LOGS_ADDRESSED_TEXT
    return (
        "<b>🔒 What I keep</b>\n"
        "• your messages to me and my replies\n"
        "• a mood estimate (sentiment) for each of your messages\n"
        "• your name, username and Telegram ids (yours and the chat's)\n\n"
        f"<b>Where:</b> in one SQLite database on the server of the person who runs this bot. {model_where(model_host)}"
        "\n\n"
        f"<b>How long:</b> {how_long}\n\n"
        f"<b>Groups:</b> {groups} {GROUP_POSTED_AS_CHAT_TEXT}\n\n"
        f"<b>Backups:</b> {BACKUPS_TEXT}\n\n"
        "/export – download everything I stored about you in this chat (a JSON file; asked in a group, it "
        "arrives in a private chat with me, never in the group)\n"
        "/forget – delete all of it"
    )


def refusal_text(user_id: int) -> str:
    """The polite no for someone outside the allowlists, with their user id for the owner to add."""
    return REFUSAL_TEXT.format(user_id=user_id)


def failed_text(saved: bool) -> str:
    """The apology after an error; it says the message is saved only when the store holds it (``saved``)."""
    return FAILED_SAVED_TEXT if saved else FAILED_TEXT


def export_group_caption(chat_title: str | None) -> str:
    """The caption of an export asked for in a group and delivered privately: it names the group."""
    return EXPORT_GROUP_CAPTION.format(chat=f"“{chat_title}”" if chat_title else "that group")


def export_open_private_chat_text(bot_username: str | None) -> str:
    """The group notice when an export can't be delivered privately: open a private chat with the bot first."""
    return EXPORT_OPEN_PRIVATE_CHAT_TEXT.format(bot=f"@{bot_username}" if bot_username else "tap my name")


def model_where(model_host: str | None) -> str:
    """Where the language model reads the messages: on the bot's server, or a named remote server."""
    if model_host is None:
        return "Apart from Telegram itself, nothing leaves that server – the language model runs there too."
    return (
        "To be answered and given a mood estimate, your messages and our recent conversation are also sent to a "
        f"language-model server, <code>{html.escape(model_host)}</code>; what that server keeps is up to whoever "
        "runs it."
    )


def privacy_text(retention_days: int, log_all_group_messages: bool = False, model_host: str | None = None) -> str:
    """``privacy_html`` as plain text."""
    return html_to_plain(privacy_html(retention_days, log_all_group_messages, model_host))


def stats_html(counts: dict[str, int], queue_depth: int, database_bytes: int) -> str:
    """The admin's ``/stats``: rows stored, the engine's queue depth and the database's size on disk."""
    return (
        "<b>📊 Moodbot stats</b>\n"
        f"Chats: {counts.get('chats', 0)}\n"
        f"Users: {counts.get('users', 0)}\n"
        f"Messages: {counts.get('messages', 0)} (with a mood: {counts.get('sentiments', 0)})\n"
        f"Engine queue: {queue_depth}\n"
        f"Database: {html.escape(human_bytes(database_bytes))}"
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


_TAG = re.compile(r"<[^>]*>")


def html_to_plain(text: str) -> str:
    """The words of Telegram-HTML ``text`` without markup (tags dropped, entities such as ``&lt;`` decoded)."""
    return html.unescape(_TAG.sub("", text))


def export_filename(chat_id: int, user_id: int) -> str:
    """The file name of an ``/export`` download."""
    return f"moodbot-export-{chat_id}-{user_id}.json"


PERIODS: dict[str, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}
_PERIOD_PATTERN = re.compile(r"^(\d{1,4})d?$")


def parse_period(argument: str | None, default_days: int = 7) -> int | None:
    """``/mood`` argument → number of days (None = all time); raises ValueError with a friendly message."""
    if not argument:
        return default_days
    key = argument.strip().lower()
    if key in PERIODS:
        return PERIODS[key]
    match = _PERIOD_PATTERN.match(key)
    if match and 1 <= int(match.group(1)) <= 3650:
        return int(match.group(1))
    raise ValueError("I understand /mood 7d, /mood 30d, /mood 90d or /mood all.")


def period_label(days: int | None) -> str:
    """Human words for a period."""
    if days is None:
        return "all time"
    return "today" if days == 1 else f"the last {days} days"


def mood_emoji(score: float) -> str:
    """One face for an average score in [-1, 1]."""
    if score >= 0.5:
        return "😄"
    if score >= 0.15:
        return "🙂"
    if score > -0.15:
        return "😐"
    if score > -0.5:
        return "🙁"
    return "😢"


def day_strip(days: list[DayMood], first_day: date, last_day: date, max_days: int = 31) -> str:
    """One emoji per day from ``first_day`` to ``last_day`` (· for a day without messages), newest at the end."""
    by_day = {d.day: d for d in days}
    start = max(first_day, last_day - timedelta(days=max_days - 1))
    cells = []
    current = start
    while current <= last_day:
        mood = by_day.get(current.isoformat())
        cells.append(mood_emoji(mood.average_score) if mood else "·")
        current += timedelta(days=1)
    return "".join(cells)


def signed(score: float) -> str:
    """A score with its sign and two decimals (``+0.27``, ``-0.30``); never ``-0.00``."""
    text = f"{score:+.2f}"
    return "+0.00" if text == "-0.00" else text


def short_date(day: date, today: date) -> str:
    """``Fri 20 Nov``, with the year when it is not ``today``'s year (``Sat 20 Dec 2025``)."""
    text = f"{day:%a} {day.day} {day:%b}"
    return text if day.year == today.year else f"{text} {day.year}"


def mood_trend(current: MoodSummary, previous: MoodSummary | None) -> float | None:
    """How much the average score moved since the previous period; None when either period has no mood."""
    if previous is None or previous.average_score is None or current.average_score is None:
        return None
    return current.average_score - previous.average_score


def trend_text(change: float, days: int) -> str:
    """``↗ +0.21 vs the 7 days before`` (``↘`` down, ``→`` when it moved less than ``TREND_FLAT``)."""
    arrow = "↗" if change >= TREND_FLAT else "↘" if change <= -TREND_FLAT else "→"
    before = "the day before" if days == 1 else f"the {days} days before"
    return f"{arrow} {signed(change)} vs {before}"


def best_and_worst_day(days: Sequence[DayMood]) -> tuple[DayMood, DayMood] | None:
    """The days with the highest and lowest average score (ties: the busier, then the later day).

    None with fewer than two days, where "best" and "worst" would be the same day.
    """
    if len(days) < 2:
        return None
    best = max(days, key=lambda d: (d.average_score, d.messages, d.day))
    worst = max(days, key=lambda d: (-d.average_score, d.messages, d.day))
    return best, worst


def day_mood_text(day: DayMood, today: date) -> str:
    """``Fri 20 Nov 😄 +0.80``."""
    score = day.average_score
    return f"{short_date(date.fromisoformat(day.day), today)} {mood_emoji(score)} {signed(score)}"


def member_lines(members: Sequence[UserMood], limit: int = MAX_MEMBERS_LISTED) -> list[str]:
    """``Alice 😄 +0.62 (12 msgs)`` per member whose mood is known, most active first, at most ``limit`` lines
    plus one ``…and N more``."""
    known = [m for m in members if m.summary.messages and m.summary.average_score is not None]
    known.sort(key=lambda m: (-m.summary.messages, m.display_name.casefold(), m.user_id))
    lines = []
    for member in known[:limit]:
        score, count = member.summary.average_score or 0.0, member.summary.messages
        messages = "1 msg" if count == 1 else f"{count} msgs"
        lines.append(f"{member.display_name} {mood_emoji(score)} {signed(score)} ({messages})")
    if len(known) > limit:
        lines.append(f"…and {len(known) - limit} more")
    return lines


def mood_summary_text(
    summary: MoodSummary,
    days: int | None,
    today: date,
    who: str = "Your",
    *,
    previous: MoodSummary | None = None,
    members: Sequence[UserMood] | None = None,
    note: str | None = None,
) -> str:
    """The ``/mood`` text: messages, average score, the trend against ``previous`` (the period of the same length
    just before), label shares, best and worst day, a day-by-day strip and, in a group, a ``note`` saying which
    messages count and one line per ``members``."""
    period = period_label(days)
    if summary.messages == 0 or summary.average_score is None:
        return NOTHING_YET_TEXT.format(period=period)
    lines = [
        f"{who} mood over {period} {mood_emoji(summary.average_score)}",
        f"Messages: {summary.messages} · average score {signed(summary.average_score)} (from −1 to +1)",
    ]
    if note:
        lines.append(note)
    change = mood_trend(summary, previous)
    if change is not None and days is not None:
        lines.append(trend_text(change, days))
    lines.append(
        f"😊 {summary.positive_share:.0%} positive · 😐 {summary.neutral_share:.0%} neutral · "
        f"😟 {summary.negative_share:.0%} negative"
    )
    extremes = best_and_worst_day(summary.days)
    if extremes is not None:
        best, worst = extremes
        lines.append(f"Best day: {day_mood_text(best, today)} · worst: {day_mood_text(worst, today)}")
    first_day, last_day = period_days(summary, days, today)
    lines.append(f"Day by day: {day_strip(summary.days, first_day, last_day)}")
    listed = member_lines(members or [])
    if listed:
        lines += ["", "Who spoke (most active first):", *listed]
    return "\n".join(lines)


def period_days(summary: MoodSummary, days: int | None, today: date) -> tuple[date, date]:
    """First and last local day a ``/mood`` answer covers (for all time: from the first day with messages)."""
    first_day = today - timedelta(days=(days or 1) - 1)
    if days is None and summary.days:
        first_day = min(first_day, date.fromisoformat(summary.days[0].day))
    return first_day, today


def chart_title(who: str, days: int | None) -> str:
    """The chart's title, e.g. ``Your mood · the last 7 days``."""
    return f"{who} mood · {period_label(days)}"


def telegram_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: most emoji count twice)."""
    return len(text.encode("utf-16-le")) // 2


def photo_caption(text: str, limit: int = TELEGRAM_CAPTION_LIMIT) -> tuple[str, str | None]:
    """``(caption, text to send separately)``: the whole text as the caption when it fits, else its first line
    (shortened if need be) as the caption and the whole text as a message of its own."""
    if telegram_length(text) <= limit:
        return text, None
    first_line = text.split("\n", 1)[0]
    if telegram_length(first_line) > limit:
        while telegram_length(first_line) > limit - 1:
            first_line = first_line[:-1]
        first_line += "…"
    return first_line, text


def split_for_telegram(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into pieces Telegram accepts, preferring paragraph, line and word boundaries."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces
