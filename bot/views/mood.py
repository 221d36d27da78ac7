"""The ``/mood`` text: messages, average score, trend, shares, best and worst day, a strip of one emoji per day and,
in a group, a line per member; in the reader's language. Pure and synchronous (the chart is ``bot.views.charts``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from bot.i18n import DEFAULT_LANGUAGE, _, format_day, ngettext_for, translate
from storage import DayMood, MoodSummary, UserMood

MAX_MEMBERS_LISTED = 10  # /mood in a group lists at most this many members
TREND_FLAT = 0.05  # a smaller change of the average score is shown as → (steady)

GROUP_MOOD_ADDRESSED_NOTE = _("(Only messages written to me count: mentions and replies.)")
GROUP_MOOD_ALL_NOTE = _("(Every text message in this chat counts.)")
NOTHING_YET_TEXT = _("Nothing yet for {period} – write to me and your mood will show up here. 🙂")
PERIOD_HELP_TEXT = _("I understand /mood 7d, /mood 30d, /mood 90d or /mood all.")
# Translators: a CLDR date pattern (EEE weekday, d day, MMM month, y year); order them as your language writes dates.
SHORT_DATE = _("EEE d MMM")
# Translators: a CLDR date pattern, SHORT_DATE with the year, for a day of another year.
SHORT_DATE_WITH_YEAR = _("EEE d MMM y")

PERIODS: dict[str, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}
_PERIOD_PATTERN = re.compile(r"^(\d{1,4})d?$")


def parse_period(argument: str | None, default_days: int = 7) -> int | None:
    """``/mood`` argument → number of days (None = all time); raises ValueError with ``PERIOD_HELP_TEXT`` (English:
    translate it for the reader)."""
    if not argument:
        return default_days
    key = argument.strip().lower()
    if key in PERIODS:
        return PERIODS[key]
    match = _PERIOD_PATTERN.match(key)
    if match and 1 <= int(match.group(1)) <= 3650:
        return int(match.group(1))
    raise ValueError(PERIOD_HELP_TEXT)


def period_label(days: int | None, language: str = DEFAULT_LANGUAGE) -> str:
    """Human words for a period."""
    if days is None:
        return translate(language, _("all time"))
    if days == 1:
        return translate(language, _("today"))
    return ngettext_for(language, "the last {count} day", "the last {count} days", days)


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


def short_date(day: date, today: date, language: str = DEFAULT_LANGUAGE) -> str:
    """``Fri 20 Nov``, with the year when it is not ``today``'s year (``Sat 20 Dec 2025``); ``11月20日 周五`` in
    Chinese."""
    return format_day(day, SHORT_DATE if day.year == today.year else SHORT_DATE_WITH_YEAR, language)


def mood_trend(current: MoodSummary, previous: MoodSummary | None) -> float | None:
    """How much the average score moved since the previous period; None when either period has no mood."""
    if previous is None or previous.average_score is None or current.average_score is None:
        return None
    return current.average_score - previous.average_score


def trend_text(change: float, days: int, language: str = DEFAULT_LANGUAGE) -> str:
    """``↗ +0.21 vs the 7 days before`` (``↘`` down, ``→`` when it moved less than ``TREND_FLAT``)."""
    arrow = "↗" if change >= TREND_FLAT else "↘" if change <= -TREND_FLAT else "→"
    if days == 1:
        return translate(language, _("{arrow} {change} vs the day before"), arrow=arrow, change=signed(change))
    return ngettext_for(
        language, "{arrow} {change} vs the {count} day before", "{arrow} {change} vs the {count} days before", days,
        arrow=arrow, change=signed(change),
    )


def best_and_worst_day(days: Sequence[DayMood]) -> tuple[DayMood, DayMood] | None:
    """The days with the highest and lowest average score (ties: the busier, then the later day).

    None with fewer than two days, where "best" and "worst" would be the same day.
    """
    if len(days) < 2:
        return None
    best = max(days, key=lambda d: (d.average_score, d.messages, d.day))
    worst = max(days, key=lambda d: (-d.average_score, d.messages, d.day))
    return best, worst


def day_mood_text(day: DayMood, today: date, language: str = DEFAULT_LANGUAGE) -> str:
    """``Fri 20 Nov 😄 +0.80``."""
    score = day.average_score
    return f"{short_date(date.fromisoformat(day.day), today, language)} {mood_emoji(score)} {signed(score)}"


def member_lines(
    members: Sequence[UserMood], limit: int = MAX_MEMBERS_LISTED, language: str = DEFAULT_LANGUAGE
) -> list[str]:
    """``Alice 😄 +0.62 (12 msgs)`` per member whose mood is known, most active first, at most ``limit`` lines
    plus one ``…and N more``."""
    known = [m for m in members if m.summary.messages and m.summary.average_score is not None]
    known.sort(key=lambda m: (-m.summary.messages, m.display_name.casefold(), m.user_id))
    lines = []
    for member in known[:limit]:
        score, count = member.summary.average_score or 0.0, member.summary.messages
        messages = ngettext_for(language, "{count} msg", "{count} msgs", count)
        lines.append(f"{member.display_name} {mood_emoji(score)} {signed(score)} ({messages})")
    if len(known) > limit:
        lines.append(ngettext_for(language, "…and {count} more", "…and {count} more", len(known) - limit))
    return lines


def mood_summary_text(
    summary: MoodSummary,
    days: int | None,
    today: date,
    *,
    group: bool = False,
    previous: MoodSummary | None = None,
    members: Sequence[UserMood] | None = None,
    note: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """The ``/mood`` text, the person's own or (``group``) the whole chat's: messages, average score, the trend
    against ``previous`` (the period of the same length just before), label shares, best and worst day, a
    day-by-day strip and, in a group, a ``note`` (a msgid) saying which messages count and one line per
    ``members``."""
    period = period_label(days, language)
    if summary.messages == 0 or summary.average_score is None:
        return translate(language, NOTHING_YET_TEXT, period=period)
    emoji = mood_emoji(summary.average_score)
    heading = _("This chat's mood over {period} {emoji}") if group else _("Your mood over {period} {emoji}")
    lines = [
        translate(language, heading, period=period, emoji=emoji),
        translate(
            language, _("Messages: {count} · average score {score} (from −1 to +1)"),
            count=summary.messages, score=signed(summary.average_score),
        ),
    ]
    if note:
        lines.append(translate(language, note))
    change = mood_trend(summary, previous)
    if change is not None and days is not None:
        lines.append(trend_text(change, days, language))
    lines.append(
        translate(
            language, _("😊 {positive} positive · 😐 {neutral} neutral · 😟 {negative} negative"),
            positive=f"{summary.positive_share:.0%}", neutral=f"{summary.neutral_share:.0%}",
            negative=f"{summary.negative_share:.0%}",
        )
    )
    extremes = best_and_worst_day(summary.days)
    if extremes is not None:
        best, worst = extremes
        lines.append(
            translate(
                language, _("Best day: {best} · worst: {worst}"),
                best=day_mood_text(best, today, language), worst=day_mood_text(worst, today, language),
            )
        )
    first_day, last_day = period_days(summary, days, today)
    lines.append(translate(language, _("Day by day: {strip}"), strip=day_strip(summary.days, first_day, last_day)))
    listed = member_lines(members or [], language=language)
    if listed:
        lines += ["", translate(language, _("Who spoke (most active first):")), *listed]
    return "\n".join(lines)


def period_days(summary: MoodSummary, days: int | None, today: date) -> tuple[date, date]:
    """First and last local day a ``/mood`` answer covers (for all time: from the first day with messages)."""
    first_day = today - timedelta(days=(days or 1) - 1)
    if days is None and summary.days:
        first_day = min(first_day, date.fromisoformat(summary.days[0].day))
    return first_day, today


def chart_title(group: bool, days: int | None, language: str = DEFAULT_LANGUAGE) -> str:
    """The chart's title, e.g. ``Your mood · the last 7 days``."""
    title = _("This chat's mood · {period}") if group else _("Your mood · {period}")
    return translate(language, title, period=period_label(days, language))
