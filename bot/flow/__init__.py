"""The conversation flow, written once for every front end (Telegram, the terminal): the turn (persist → classify →
reply → persist, then care and notes), the ``/mood`` report, and the steps around them (reset, forget, retention,
the back-fill); check-ins and the weekly summary (``checkins``) and when they are due (``schedule``). Knows storage
and the engine, never Telegram."""

from bot.flow.conversations import MAX_CLASSIFY_ATTEMPTS, Conversations, Incoming
from bot.flow.mood import MoodChart, MoodReport
from bot.flow.turn import ReplyOutput, Turn

__all__ = ["MAX_CLASSIFY_ATTEMPTS", "Conversations", "Incoming", "MoodChart", "MoodReport", "ReplyOutput", "Turn"]
