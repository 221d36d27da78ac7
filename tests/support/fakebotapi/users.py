"""The people's side of the fake: users and chats, and what they do there (write, send media, edit, press a
button, delete), each turned into the update Telegram would deliver to the bot."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from tests.support.fakebotapi.files import MediaFactory
from tests.support.fakebotapi.state import Chats, command_entity
from tests.support.fakebotapi.updates import UpdateQueue
from tests.support.fakebotapi.wire import ANONYMOUS_ADMIN_USER, CHANNEL_BOT_USER

Json = dict[str, Any]
_POLL_OPTIONS = ("Good", "Meh", "Bad")


class UserActions:
    """Mixed into :class:`~tests.support.fakebotapi.server.FakeBotApi`, which owns the state used here."""

    _chats: Chats
    _updates: UpdateQueue
    _media: MediaFactory

    # -- people and chats

    def user(
        self,
        id: int,
        first_name: str = "Alice",
        username: str | None = None,
        language_code: str | None = "en",
    ) -> Json:
        """A (human) ``User`` dict."""
        user: Json = {"id": id, "is_bot": False, "first_name": first_name}
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    def private_chat(self, user: Mapping[str, Any]) -> Json:
        """The private ``Chat`` between ``user`` and the bot: opened, so the bot may write there."""
        chat: Json = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        return self._chats.add(chat)

    def group_chat(self, id: int = -1001234567890, title: str = "Mood Group") -> Json:
        """A group ``Chat``; ids starting with -100 are supergroups, like on Telegram."""
        chat_type = "supergroup" if str(id).startswith("-100") else "group"
        return self._chats.add({"id": id, "type": chat_type, "title": title})

    def forum_chat(self, id: int = -1001987654321, title: str = "Mood Forum") -> Json:
        """A supergroup with topics; send into a topic with ``send_text(..., message_thread_id=...)``."""
        return self._chats.add({"id": id, "type": "supergroup", "title": title, "is_forum": True})

    def channel(self, id: int = -1002000000001, title: str = "Mood Channel") -> Json:
        """A channel ``Chat``, to post as with :meth:`send_as_chat`."""
        return self._chats.add({"id": id, "type": "channel", "title": title})

    # -- messages

    def queue_update(self, payload: Mapping[str, Any]) -> int:
        """Queue a raw update (``{"message": {...}}`` etc.); assigns and returns its ``update_id``."""
        return self._updates.queue(payload)

    def send_text(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        text: str,
        *,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        sender_chat: Mapping[str, Any] | None = None,
    ) -> int:
        """Queue a text message from ``user``; returns its message_id.

        A text starting with a command (``/start``, ``/mood@moodbot_test_bot``) gets a ``bot_command``
        entity at offset 0, as Telegram adds it. ``message_thread_id`` puts it in a forum topic;
        ``sender_chat`` marks it as sent on behalf of that chat (see :meth:`send_as_chat`).
        """
        content: Json = {"text": text}
        if message_thread_id is not None:
            content.update(message_thread_id=message_thread_id, is_topic_message=True)
        if sender_chat is not None:
            content["sender_chat"] = dict(sender_chat)
        command = command_entity(text)
        if command:
            content["entities"] = [command]
        return self._queue_user_message(chat, user, content, reply_to_message_id)

    def send_as_chat(self, chat: Mapping[str, Any], sender_chat: Mapping[str, Any], text: str, **kwargs: Any) -> int:
        """Queue a text sent on behalf of ``sender_chat``: a channel (``from`` is Telegram's "Channel_Bot"
        placeholder) or, when it is ``chat`` itself, an anonymous admin ("GroupAnonymousBot")."""
        placeholder = ANONYMOUS_ADMIN_USER if sender_chat["id"] == chat["id"] else CHANNEL_BOT_USER
        return self.send_text(chat, placeholder, text, sender_chat=sender_chat, **kwargs)

    def send_command(
        self, chat: Mapping[str, Any], user: Mapping[str, Any], text: str, *, message_thread_id: int | None = None
    ) -> int:
        """Like :meth:`send_text`; a missing leading "/" is added."""
        text = text if text.startswith("/") else "/" + text
        return self.send_text(chat, user, text, message_thread_id=message_thread_id)

    def edit_text(self, chat: Mapping[str, Any], user: Mapping[str, Any], message_id: int, new_text: str) -> int:
        """The user edits their text message: updates it and queues an ``edited_message``; returns update_id."""
        message = self._chats.message(chat["id"], message_id)
        if message is None or message.get("from", {}).get("id") != user["id"]:
            raise ValueError(f"no message {message_id} from user {user['id']} in chat {chat['id']}")
        if "text" not in message:
            raise ValueError(f"message {message_id} has no text to edit")
        message["text"] = new_text
        message.pop("entities", None)
        command = command_entity(new_text)
        if command:
            message["entities"] = [command]
        message["edit_date"] = int(time.time())
        return self.queue_update({"edited_message": message})

    def delete_message(self, chat: Mapping[str, Any], message_id: int) -> None:
        """Someone deletes a message in ``chat`` (Telegram does not tell the bot): the bot can no longer edit it or
        reply to it."""
        self._chats.delete(chat["id"], message_id)

    def press_button(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        message_id: int,
        data: str | None = None,
        *,
        button_text: str | None = None,
    ) -> str:
        """The user presses an inline button of bot message ``message_id``: queues a ``callback_query``.

        Pick the button by its ``callback_data`` (``data``) or by its label (``button_text``, handy with
        PTB's arbitrary callback data). Like on Telegram, only buttons the message really has can be
        pressed. Returns the callback query id (see ``callback_answers``).
        """
        message = self._chats.message(chat["id"], message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat['id']}")
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        buttons = [button for row in rows for button in row if "callback_data" in button]
        if button_text is not None:
            match = next((b for b in buttons if b.get("text") == button_text), None)
        else:
            match = next((b for b in buttons if b["callback_data"] == data), None)
        if match is None:
            available = [(b.get("text"), b["callback_data"]) for b in buttons]
            raise ValueError(f"message {message_id} has no button {button_text or data!r}; it has {available}")
        return self.press_any(chat, user, message_id, match["callback_data"])

    def press_any(self, chat: Mapping[str, Any], user: Mapping[str, Any], message_id: int, data: str) -> str:
        """A press on message ``message_id`` carrying ``data`` whatever its buttons say: a button of a keyboard
        since replaced, or a modified client. Returns the callback query id."""
        message = self._chats.message(chat["id"], message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat['id']}")
        query_id = str(next(self._chats.query_ids))
        self._chats.callback_queries.add(query_id)
        self.queue_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": dict(user),
                    "message": message,
                    "chat_instance": str(abs(int(chat["id"])) * 7919 % 10**12 + 10**12),
                    "data": data,
                }
            }
        )
        return query_id

    # -- everything but text: moodbot answers each kind in private chats; each returns the new message's id

    def send_sticker(self, chat: Mapping[str, Any], user: Mapping[str, Any], *, emoji: str = "🙂") -> int:
        """Queue a sticker from ``user``."""
        return self._queue_user_message(chat, user, {"sticker": self._media.media("sticker", emoji=emoji)})

    def send_photo(self, chat: Mapping[str, Any], user: Mapping[str, Any], *, caption: str | None = None) -> int:
        """Queue a photo (in Telegram's three sizes)."""
        content: Json = {"photo": self._media.photo(None)}
        if caption is not None:
            content["caption"] = caption
        return self._queue_user_message(chat, user, content)

    def send_document(self, chat: Mapping[str, Any], user: Mapping[str, Any], *, file_name: str = "notes.txt") -> int:
        """Queue a file; its mime type follows ``file_name``."""
        return self._queue_user_message(chat, user, {"document": self._media.document(None, file_name)})

    def send_animation(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a GIF. Like Telegram, the message carries the same file as ``document`` too."""
        animation = self._media.media("animation")
        document = {k: animation[k] for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")}
        return self._queue_user_message(chat, user, {"animation": animation, "document": document})

    def send_voice(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a voice note."""
        return self._queue_user_message(chat, user, {"voice": self._media.media("voice")})

    def send_audio(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a music file."""
        return self._queue_user_message(chat, user, {"audio": self._media.media("audio")})

    def send_video(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a video."""
        return self._queue_user_message(chat, user, {"video": self._media.media("video")})

    def send_video_note(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a round video message."""
        return self._queue_user_message(chat, user, {"video_note": self._media.media("video_note")})

    def send_location(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a shared location."""
        return self._queue_user_message(chat, user, {"location": {"latitude": 52.520008, "longitude": 13.404954}})

    def send_contact(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a shared contact."""
        return self._queue_user_message(chat, user, {"contact": {"phone_number": "+15555550123", "first_name": "Bob"}})

    def send_poll(self, chat: Mapping[str, Any], user: Mapping[str, Any]) -> int:
        """Queue a poll."""
        poll = {
            "id": str(next(self._chats.query_ids)),
            "question": "How are you today?",
            "options": [
                {"text": option, "voter_count": 0, "persistent_id": str(i)} for i, option in enumerate(_POLL_OPTIONS)
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,  # required by PTB 22.8 (Bot API 9.6)
            "members_only": False,  # required by PTB 22.8 (Bot API 10.0)
        }
        return self._queue_user_message(chat, user, {"poll": poll})

    def _queue_user_message(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        content: Mapping[str, Any],
        reply_to_message_id: int | None = None,
    ) -> int:
        stored_chat = self._chats.register(chat)
        message: Json = {
            "message_id": self._chats.new_message_id(chat["id"]),
            "from": dict(user),
            "chat": dict(stored_chat),
            "date": int(time.time()),
        }
        if reply_to_message_id is not None:
            reply = self._chats.reply_snapshot(chat["id"], reply_to_message_id)
            if reply is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat['id']} to reply to")
            message["reply_to_message"] = reply
        message.update(copy.deepcopy(dict(content)))
        self._chats.add_message(message)
        self.queue_update({"message": message})
        return message["message_id"]

