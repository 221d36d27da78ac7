"""The ``/mood`` text: messages, average score, trend, shares, best and worst day, a strip of one emoji per day and,
in a group, a line per member. Pure and synchronous (the chart is ``bot.views.charts``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from storage import DayMood, MoodSummary, UserMood

MAX_MEMBERS_LISTED = 10  # /mood in a group lists at most this many members
TREND_FLAT = 0.05  # a smaller change of the average score is shown as → (steady)

GROUP_MOOD_ADDRESSED_NOTE = "(Only messages written to me count: mentions and replies.)"
GROUP_MOOD_ALL_NOTE = "(Every text message in this chat counts.)"
NOTHING_YET_TEXT = "Nothing yet for {period} – write to me and your mood will show up here. 🙂"

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
