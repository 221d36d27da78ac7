"""SQLite storage for moodbot: the ``Store`` and the values it returns."""

from .migrations import MigrationRegistry, migrate
from .models import DayMood, HistoryTurn, MoodSummary, OwedReply, SentimentRecord, StoredMessage, UserMood
from .store import Store

__all__ = [
    "DayMood",
    "HistoryTurn",
    "MigrationRegistry",
    "MoodSummary",
    "OwedReply",
    "SentimentRecord",
    "Store",
    "StoredMessage",
    "UserMood",
    "migrate",
]
