"""Plain, immutable values returned by the store."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Role = Literal["user", "assistant"]

# The labels a person may give a message, as the analyst names them.
LABELS = ("positive", "neutral", "negative")


@dataclass(frozen=True)
class StoredMessage:
    """One stored message; ``is_new`` is False when ``add_user_message`` found it already stored."""

    id: int
    chat_id: int
    user_id: int
    role: Role
    text: str
    created_at: float  # unix seconds, UTC
    telegram_message_id: int | None
    is_new: bool


@dataclass(frozen=True)
class OwedReply:
    """A stored user message still waiting for its reply: where it was written (the chat's kind, the forum topic),
    and the Telegram id of the reply message a crash left unfinished (None when no part of the reply was sent)."""

    message: StoredMessage
    chat_kind: str
    thread_id: int | None
    draft_message_id: int | None


@dataclass(frozen=True)
class HistoryTurn:
    """One earlier turn of a user's conversation with the bot."""

    role: Role
    text: str


@dataclass(frozen=True)
class SentimentRecord:
    """A classifier verdict for one message: label, score in [-1, 1], per-label probabilities, model name, and the
    probability that the message signals a crisis."""

    label: str
    score: float
    probs: dict[str, float]
    model: str
    care: float = 0.0


@dataclass(frozen=True)
class DayMood:
    """Mood of the classified user messages of one local day ('YYYY-MM-DD')."""

    day: str
    messages: int
    average_score: float
    positive: int
    neutral: int
    negative: int


@dataclass(frozen=True)
class MoodSummary:
    """Mood over a period: totals, label shares in [0, 1] and the per-day breakdown."""

    messages: int
    average_score: float | None
    positive_share: float
    neutral_share: float
    negative_share: float
    days: list[DayMood]


@dataclass(frozen=True)
class UserMood:
    """One chat member's mood over a period."""

    user_id: int
    display_name: str
    summary: MoodSummary


@dataclass(frozen=True)
class LabelledMessage:
    """One of a person's messages with the model's label and the label they gave it themselves (None where not
    given), and the chat it was written in."""

    id: int
    chat_id: int
    chat_kind: str
    chat_title: str | None
    text: str
    created_at: float  # unix seconds, UTC
    model_label: str | None  # None: not classified (yet)
    person_label: str | None

    @property
    def label(self) -> str | None:
        """The label /mood counts: the person's where they gave one, else the model's."""
        return self.person_label or self.model_label


class CorrectionOutcome(StrEnum):
    """What became of a correction: stored, refused (the message is someone else's), or its message is gone."""

    SAVED = "saved"
    NOT_YOURS = "not_yours"
    GONE = "gone"


@dataclass(frozen=True)
class CorrectedExample:
    """A message's text with the label its author gave it: one row of ``moodbot labels``."""

    message_id: int
    user_id: int
    text: str
    label: str


@dataclass(frozen=True)
class PersonSettings:
    """A person's own choices (/settings) and the schedule state of their check-ins and weekly summary.

    ``language`` None follows Telegram's language code; ``time_zone`` None uses the configured default offset.
    Times are the person's local 'HH:MM'; ``weekly_day`` 0 is Monday. ``last_checkin_day``/``last_weekly_day`` are
    the local days the bot last asked/sent (never twice a day).
    """

    user_id: int
    language: str | None = None
    time_zone: str | None = None
    checkin_enabled: bool = False
    checkin_time: str = "20:00"
    quiet_start: str | None = None
    quiet_end: str | None = None
    weekly_enabled: bool = False
    weekly_day: int = 6
    weekly_time: str = "19:00"
    reply_length: Literal["short", "normal"] = "normal"
    analyse_mood: bool = True
    checkin_offered: bool = False
    last_checkin_day: str | None = None
    last_weekly_day: str | None = None


@dataclass(frozen=True)
class SelfReport:
    """The mood a person reported themselves for one of their local days, in [-1, 1], with the day's note."""

    day: str  # 'YYYY-MM-DD', the person's local day
    score: float
    note: str | None
    reported_at: float  # unix seconds, UTC
