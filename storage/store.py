"""The bot's only door to SQLite: the ``Store``, composed of one class per concern over one connection."""

from __future__ import annotations

from .connection import Database, fetch_one
from .corrections import Corrections
from .messages import Messages
from .mood import Mood
from .pending import PendingWork
from .privacy import Privacy
from .settings import Settings


class Store(Messages, PendingWork, Mood, Corrections, Settings, Privacy, Database):
    """Chats, users, messages, sentiments, the work still owed for them, and /reset markers, in one SQLite file.

    ``Store.open(path)`` opens and migrates it. All methods are coroutines serialised on the one connection; every
    write is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) committed before the method returns. Where each
    operation lives: ``connection`` (open, close, checkpoint, pragmas), ``messages`` (chats, users, messages,
    replies, edits, history, /reset), ``pending`` (replies and moods still owed), ``mood`` (sentiments, care events,
    the mood log), ``corrections`` (the labels people give their own messages), ``settings`` (a person's /settings and
    self-reported moods), ``privacy`` (forget, retention,
    export).
    """

    async def counts(self) -> dict[str, int]:
        """Rows per table."""
        async with self._reading() as db:
            row = await fetch_one(
                db,
                """
                SELECT (SELECT COUNT(*) FROM chats) AS chats,
                       (SELECT COUNT(*) FROM users) AS users,
                       (SELECT COUNT(*) FROM messages) AS messages,
                       (SELECT COUNT(*) FROM sentiments) AS sentiments,
                       (SELECT COUNT(*) FROM conversations) AS conversations,
                       (SELECT COUNT(*) FROM care_events) AS care_events,
                       (SELECT COUNT(*) FROM corrections) AS corrections,
                       (SELECT COUNT(*) FROM person_settings) AS person_settings,
                       (SELECT COUNT(*) FROM self_reports) AS self_reports
                """,
            )
        assert row is not None
        return dict(row)
