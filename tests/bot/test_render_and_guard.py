"""Pure helpers: /mood text, period parsing, message splitting, and the reply guard."""

from __future__ import annotations

from datetime import date

import pytest

from bot.views.mood import day_strip, mood_emoji, mood_summary_text, parse_period
from bot.views.telegram_text import photo_caption, shorten, split_for_telegram, telegram_length
from engine.roles.guard import visible_reply
from engine.roles.prompts import COMPANION_SYSTEM_PROMPT
from storage import DayMood, MoodSummary


def summary(days: list[DayMood]) -> MoodSummary:
    total = sum(d.messages for d in days)
    pos, neu, neg = (sum(getattr(d, k) for d in days) for k in ("positive", "neutral", "negative"))
    average = sum(d.average_score * d.messages for d in days) / total if total else None
    return MoodSummary(total, average, pos / max(total, 1), neu / max(total, 1), neg / max(total, 1), days)


def test_mood_text_has_counts_average_shares_and_one_cell_per_day() -> None:
    days = [DayMood("2026-11-20", 2, 0.6, 2, 0, 0), DayMood("2026-11-22", 2, -0.6, 0, 0, 2)]
    text = mood_summary_text(summary(days), 7, today=date(2026, 11, 22))
    assert "Messages: 4" in text and "+0.00" in text
    assert "50% positive" in text and "50% negative" in text
    assert text.splitlines()[-1] == "Day by day: ····😄·😢"


def test_empty_period_is_a_friendly_nothing_yet() -> None:
    text = mood_summary_text(summary([]), 30, today=date(2026, 11, 22))
    assert text.startswith("Nothing yet for the last 30 days")


@pytest.mark.parametrize(("arg", "days"), [(None, 7), ("7d", 7), ("30d", 30), ("90D", 90), ("all", None), ("14", 14)])
def test_periods(arg: str | None, days: int | None) -> None:
    assert parse_period(arg) == days


def test_bad_period_explains_the_choices() -> None:
    with pytest.raises(ValueError, match="/mood 7d"):
        parse_period("yesterday")


def test_emoji_scale_and_day_strip() -> None:
    assert [mood_emoji(s) for s in (0.9, 0.3, 0.0, -0.3, -0.9)] == ["😄", "🙂", "😐", "🙁", "😢"]
    assert day_strip([], date(2026, 1, 1), date(2026, 1, 3)) == "···"


def test_long_text_is_split_on_boundaries_under_the_limit() -> None:
    text = ("word " * 1000).strip()
    parts = split_for_telegram(text, limit=4096)
    assert len(parts) == 2 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text
    assert split_for_telegram("short") == ["short"]
    assert all(len(p) <= 100 for p in split_for_telegram("x" * 250, limit=100))


def test_every_length_is_counted_in_utf16_code_units_as_telegram_does() -> None:
    text = "😀" * 3000  # 3,000 characters, 6,000 UTF-16 code units
    parts = split_for_telegram(text)
    assert len(parts) == 2 and "".join(parts) == text
    assert all(telegram_length(part) <= 4096 for part in parts)
    assert shorten("😀" * 10, 5) == "😀😀…" and shorten("😀😀", 4) == "😀😀"
    caption, rest = photo_caption("😀" * 600)  # 1,200 units: over the caption limit
    assert telegram_length(caption) <= 1024 and caption.endswith("…") and rest == "😀" * 600


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Sentiment: negative\nI'm sorry to hear that.", "I'm sorry to hear that."),
        ("I hear you.\n**Label**: positive", "I hear you."),
        ("你好\n情感：负面\n别难过", "你好\n别难过"),
        (COMPANION_SYSTEM_PROMPT[:60] + "\nHow are you?", "How are you?"),
        ("That sounds hard. How are you holding up?", "That sounds hard. How are you holding up?"),
    ],
)
def test_guard_removes_verdicts_and_prompt_echoes(raw: str, shown: str) -> None:
    assert visible_reply(raw, final=True) == shown


def test_guard_never_takes_back_streamed_text() -> None:
    raw = "Sentiment: negative\nI'm sorry. Score: none of that matters.\nScore: -0.8\nTake care."
    shown = ""
    for end in range(len(raw) + 1):
        now = visible_reply(raw[:end], final=False)
        assert now.startswith(shown), (shown, now)
        shown = now
    assert "-0.8" not in visible_reply(raw, final=True) and "negative" not in visible_reply(raw, final=True)
