"""Pure helpers for mood queries: local-day modifiers, display names, summaries built from days."""

from __future__ import annotations

from collections.abc import Sequence

from .models import DayMood, MoodSummary

MAX_UTC_OFFSET_MINUTES = 24 * 60


def day_modifier(utc_offset_minutes: int) -> str:
    """The SQLite date() modifier that shifts UTC to local time, e.g. ``'+180 minutes'``."""
    if not isinstance(utc_offset_minutes, int) or abs(utc_offset_minutes) > MAX_UTC_OFFSET_MINUTES:
        raise ValueError(f"utc_offset_minutes must be an int within ±{MAX_UTC_OFFSET_MINUTES}")
    return f"{utc_offset_minutes:+d} minutes"


def display_name(user_id: int, first_name: str | None, username: str | None) -> str:
    """First name, else @username, else 'user <id>'."""
    if first_name:
        return first_name
    if username:
        return f"@{username}"
    return f"user {user_id}"


def summarize(days: Sequence[DayMood]) -> MoodSummary:
    """Totals and label shares over ``days``; ``average_score`` is None when nothing was classified."""
    total = sum(day.messages for day in days)
    if total == 0:
        return MoodSummary(0, None, 0.0, 0.0, 0.0, list(days))
    return MoodSummary(
        messages=total,
        average_score=sum(day.average_score * day.messages for day in days) / total,
        positive_share=sum(day.positive for day in days) / total,
        neutral_share=sum(day.neutral for day in days) / total,
        negative_share=sum(day.negative for day in days) / total,
        days=list(days),
    )
