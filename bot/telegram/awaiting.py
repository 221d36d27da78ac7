"""People the bot asked to type something: after "Other city…" in /settings, their next private text is a city.

The question is kept in memory, for ``ANSWER_WITHIN_S``: a restart (or a long pause) simply turns the next text
back into a message to the companion, and the person presses "Other city…" again.
"""

from __future__ import annotations

import time

from telegram import Message
from telegram.constants import ChatType
from telegram.ext import filters

ANSWER_WITHIN_S = 600.0  # a city typed later than this after "Other city…" is a message like any other


class TypedCity(filters.MessageFilter):
    """Matches a private text message from someone who was asked to type a city and has not answered yet."""

    __slots__ = ("_asked",)

    def __init__(self) -> None:
        super().__init__(name="TypedCity")
        self._asked: dict[int, float] = {}  # user id -> when they were asked (time.monotonic())

    def ask(self, user_id: int) -> None:
        """``user_id`` was just asked to type a city."""
        self._asked[user_id] = time.monotonic()

    def done(self, user_id: int) -> None:
        """``user_id`` answered, or went elsewhere in the menu: their next text is a message again."""
        self._asked.pop(user_id, None)

    def filter(self, message: Message) -> bool:
        """True for the awaited city: a private text from someone asked within ``ANSWER_WITHIN_S``."""
        author = message.from_user
        if message.chat.type != ChatType.PRIVATE or author is None or author.id not in self._asked:
            return False
        if time.monotonic() - self._asked[author.id] > ANSWER_WITHIN_S:
            self.done(author.id)
            return False
        return True
