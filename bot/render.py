"""Pure, synchronous text for users: help, mood summaries, friendly answers. No Telegram, no I/O."""

from __future__ import annotations

import re
from datetime import date, timedelta

from storage import DayMood, MoodSummary

TELEGRAM_TEXT_LIMIT = 4096

HELP_TEXT = (
    "I'm Moodbot, a friendly ear. Write to me about anything and I'll answer with care. "
    "I also keep a private mood log, so you can see how your days have been.\n\n"
    "/mood [7d|30d|90d|all] – how your mood moved (default: last 7 days)\n"
    "/reset – start our conversation fresh (your mood log stays)\n"
    "/forget – delete everything I stored about you in this chat\n"
    "/help – this message"
)

START_TEXT = (
    "Hi {name}! 👋 I'm Moodbot. Tell me how you're doing, what's on your mind, big or small – I'm here to listen.\n\n"
    "Each message you send is stored in this bot's database with an estimate of its mood, so /mood can show "
    "how your days went; /forget deletes all of it. Type /help for everything I can do."
)

RESET_TEXT = "Fresh start 🌱 I've set our earlier conversation aside. Your mood log is kept (/mood)."
FORGET_TEXT = "Done. I deleted everything I had stored about you in this chat ({count} messages). 🧹"
BUSY_TEXT = "I'm talking with a lot of people right now 😅 Your message is saved – please try again in a moment."
FAILED_TEXT = "Sorry, something went wrong on my side. Your message is saved; please try again in a moment."
REFUSAL_TEXT = "Sorry, this Moodbot is private and only talks with the people its owner has allowed. 🙏"
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


def mood_summary_text(summary: MoodSummary, days: int | None, today: date, who: str = "Your") -> str:
    """The ``/mood`` text: messages, average score, label shares and a day-by-day strip."""
    period = period_label(days)
    if summary.messages == 0 or summary.average_score is None:
        return NOTHING_YET_TEXT.format(period=period)
    first_day = today - timedelta(days=(days or 1) - 1)
    if days is None and summary.days:
        first_day = date.fromisoformat(summary.days[0].day)
    lines = [
        f"{who} mood over {period} {mood_emoji(summary.average_score)}",
        f"Messages: {summary.messages} · average score {summary.average_score:+.2f} (from −1 to +1)",
        f"😊 {summary.positive_share:.0%} positive · 😐 {summary.neutral_share:.0%} neutral · "
        f"😟 {summary.negative_share:.0%} negative",
        f"Day by day: {day_strip(summary.days, first_day, today)}",
    ]
    return "\n".join(lines)


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
