"""What the fake remembers of Telegram: chats, every message in them with its current state, and button presses.

Message ids count per chat and are shared by the users' messages and the bot's, as on Telegram. The bot's messages
are kept as they are now, so edits, "message is not modified", deletions and presses of their buttons behave as
on Telegram.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping
from typing import Any

from tests.support.fakebotapi.wire import ApiError

_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?=$|\s)")

ChatId = int | str
MessageKey = tuple[ChatId, int]


def command_entity(text: str) -> dict[str, Any] | None:
    """The ``bot_command`` entity Telegram adds to a text that starts with a command, if it does."""
    match = _COMMAND_RE.match(text)
    if not match:
        return None
    return {"type": "bot_command", "offset": 0, "length": len(match.group(0))}


class Chats:
    """The chats the fake knows and the messages in them."""

    def __init__(self) -> None:
        self._chats: dict[ChatId, dict[str, Any]] = {}
        self._next_message_id: dict[ChatId, int] = {}
        self._messages: dict[MessageKey, dict[str, Any]] = {}
        self._bot_messages: list[MessageKey] = []
        self._deleted: set[MessageKey] = set()
        #: Ids of callback queries (button presses) the bot may answer.
        self.callback_queries: set[str] = set()
        # Callback query and poll ids.
        self.query_ids = itertools.count(4_000_000_000_000_000_001)

    def add(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        """Remember ``chat`` (the newest description wins); returns a copy."""
        self._chats[chat["id"]] = dict(chat)
        return dict(chat)

    def register(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        """The stored chat with ``chat``'s id, remembering ``chat`` when it is new."""
        return self._chats.setdefault(chat["id"], dict(chat))

    def target(self, chat_id: Any, *, strict_private: bool) -> dict[str, Any]:
        """The chat a bot method addresses. Unknown numeric ids are made up (positive: private) unless
        ``strict_private``, where the bot may write only to private chats a user opened (else 403, as on Telegram)."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self._chats.values():
                if chat.get("username", "").lower() == chat_id[1:].lower():
                    return chat
            raise ApiError(400, "Bad Request: chat not found")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found" if chat_id else "Bad Request: chat_id is empty")
        if chat_id not in self._chats:
            if chat_id > 0 and strict_private:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            if chat_id > 0:
                self._chats[chat_id] = {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}
            else:
                chat_type = "supergroup" if str(chat_id).startswith("-100") else "group"
                self._chats[chat_id] = {"id": chat_id, "type": chat_type, "title": f"Chat {chat_id}"}
        return self._chats[chat_id]

    def new_message_id(self, chat_id: ChatId) -> int:
        """The next message id in the chat."""
        self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 0) + 1
        return self._next_message_id[chat_id]

    def add_message(self, message: dict[str, Any], *, from_bot: bool = False) -> None:
        """Keep ``message`` (the object itself: later changes to it are the message's new state)."""
        key = (message["chat"]["id"], message["message_id"])
        self._messages[key] = message
        if from_bot:
            self._bot_messages.append(key)

    def message(self, chat_id: ChatId, message_id: Any) -> dict[str, Any] | None:
        """The live message, or None when there is none (or it was deleted)."""
        key = (chat_id, message_id)
        return None if key in self._deleted else self._messages.get(key)

    def delete(self, chat_id: ChatId, message_id: int) -> None:
        """The message is deleted: it can no longer be edited, replied to or pressed."""
        if self.message(chat_id, message_id) is None:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        self._deleted.add((chat_id, message_id))

    def reply_snapshot(self, chat_id: ChatId, message_id: int) -> dict[str, Any] | None:
        """The message as a ``reply_to_message`` shows it (without its own reply), or None when it is gone."""
        message = self.message(chat_id, message_id)
        if message is None:
            return None
        snapshot = copy.deepcopy(message)
        snapshot.pop("reply_to_message", None)
        return snapshot

    def bot_messages(self, chat_id: ChatId | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of the bot's messages (to ``chat_id``), in send order, as they are now."""
        return [
            copy.deepcopy(self._messages[key])
            for key in self._bot_messages
            if (chat_id is None or key[0] == chat_id) and (include_deleted or key not in self._deleted)
        ]
