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
    "SentimentRecord",
    "Store",
    "StoredMessage",
    "UserMood",
    "migrate",
]
