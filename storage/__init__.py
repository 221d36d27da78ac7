"""SQLite storage for moodbot: the ``Store`` and the values it returns."""

from .migrations import MigrationRegistry, migrate
from .models import (
    LABELS,
    CorrectedExample,
    CorrectionOutcome,
    DayMood,
    HistoryTurn,
    LabelledMessage,
    MoodSummary,
    OwedReply,
    PersonSettings,
    SelfReport,
    SentimentRecord,
    StoredMessage,
    UserMood,
)
from .store import Store

__all__ = [
    "LABELS",
    "CorrectedExample",
    "CorrectionOutcome",
    "DayMood",
    "HistoryTurn",
    "LabelledMessage",
    "MigrationRegistry",
    "MoodSummary",
    "OwedReply",
    "PersonSettings",
    "SelfReport",
    "SentimentRecord",
    "Store",
    "StoredMessage",
    "UserMood",
    "migrate",
]
