"""A fake Telegram Bot API server for end-to-end tests of moodbot.

``FakeBotApi`` is a small aiohttp server on 127.0.0.1 that speaks enough of the Bot API for a real
python-telegram-bot ``Application`` to run against it with long polling::

    async with FakeBotApi(token=TEST_TOKEN) as api:
        app = api.application_builder().build()          # token + base_url + base_file_url set
        app.add_handler(...)
        async with running_application(app):             # initialize/start/start_polling ... stop
            alice = api.user(1001)
            chat = api.private_chat(alice)
            api.send_text(chat, alice, "hello")
            [reply] = await api.wait_for_messages(chat["id"], count=1)

What it does, in short:

* Every request is recorded as a :class:`Call` in ``api.calls`` (params decoded, uploaded files as
  bytes). Every recorded call (and every queued update) wakes :meth:`FakeBotApi.wait_for`.
* ``getUpdates`` is a real long poll: it answers at once when updates are queued, otherwise waits
  until one is queued, its ``timeout`` passes, a newer ``getUpdates`` supersedes it (the old one
  gets 409 Conflict, as on Telegram) or the server stops (it then answers ``[]`` at once).
  Updates stay queued until confirmed by a later ``offset``.
* Bot messages are kept with their current state, so edits, "message is not modified", deletes and
  button presses on them behave like Telegram.
* Failures can be injected with :meth:`FakeBotApi.fail_next` and ``fail_parse_mode_once``.
* With ``strict_private_chats`` the bot can write only to private chats a user opened (as on Telegram: 403
  "bot can't initiate conversation with a user" otherwise); by default unknown user ids are made up.
* Forum topics (:meth:`FakeBotApi.forum_chat`, ``message_thread_id=``) and messages sent on behalf of a chat
  (:meth:`FakeBotApi.send_as_chat`: a channel, or the group itself for an anonymous admin) look as on Telegram.
* ``parse_mode="HTML"`` texts (sendMessage, editMessageText) are parsed as Telegram does: the message keeps the
  plain text with ``entities``, and an unknown tag, an unclosed one or a bare ``<`` is refused with 400
  "can't parse entities".
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import inspect
import itertools
import json
import mimetypes
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, TypeVar

from aiohttp import web

__all__ = [
    "ANONYMOUS_ADMIN_USER",
    "BOT_USER",
    "CHANNEL_BOT_USER",
    "TEST_TOKEN",
    "ApiError",
    "Call",
    "FakeBotApi",
    "running_application",
]

T = TypeVar("T")

#: A syntactically valid token whose bot id matches the fake bot's id (777).
TEST_TOKEN = "777:AAFakeMoodbotTestToken-0123456789abcdef"

#: What getMe answers.
BOT_USER: dict[str, Any] = {
    "id": 777,
    "is_bot": True,
    "first_name": "MoodBot",
    "username": "moodbot_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
# How the bot appears as ``from`` of its own messages (Telegram leaves the capability flags out).
_BOT_SENDER = {k: BOT_USER[k] for k in ("id", "is_bot", "first_name", "username")}
#: The placeholder ``from`` Telegram puts on messages sent on behalf of a channel, and of an anonymous group admin.
CHANNEL_BOT_USER: dict[str, Any] = {
    "id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"
}
ANONYMOUS_ADMIN_USER: dict[str, Any] = {
    "id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"
}

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

# Parameters that PTB JSON-encodes into strings; decoded back when they parse as an object/array.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "commands",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "allowed_updates",
        "scope",
    }
)
# Parameters cast to int when numeric (chat_id stays a str for "@channel" usernames).
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "message_thread_id",
        "from_chat_id",
        "user_id",
        "cache_time",
        "max_connections",
        "duration",
        "width",
        "height",
        "length",
    }
)
# Parameters whose "true"/"false" strings become bools.
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "show_alert",
        "drop_pending_updates",
        "has_spoiler",
        "disable_content_type_detection",
        "allow_paid_broadcast",
        "show_caption_above_media",
        "supports_streaming",
    }
)
_INT_RE = re.compile(r"-?\d+")
_FLOAT_RE = re.compile(r"-?\d+\.\d*")
_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?=$|\s)")
_BOT_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram leaves out unless they are listed in allowed_updates.
_NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
# media kind -> (Telegram's file_path folder, default extension, default mime type)
_MEDIA_KINDS: dict[str, tuple[str, str, str]] = {
    "photo": ("photos", "jpg", "image/jpeg"),
    "document": ("documents", "bin", "application/octet-stream"),
    "sticker": ("stickers", "webp", "image/webp"),
    "voice": ("voice", "oga", "audio/ogg"),
    "audio": ("music", "mp3", "audio/mpeg"),
    "video": ("videos", "mp4", "video/mp4"),
    "animation": ("animations", "mp4", "video/mp4"),
    "video_note": ("video_notes", "mp4", "video/mp4"),
}
_SEND_MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendSticker": "sticker",
    "sendVoice": "voice",
    "sendAudio": "audio",
    "sendVideo": "video",
    "sendAnimation": "animation",
    "sendVideoNote": "video_note",
}


@dataclass
class Call:
    """One request the fake received.

    ``params`` are decoded (see module constants); ``files`` maps multipart part names to the uploaded
    bytes. ``time`` is ``time.monotonic()`` at arrival. ``status``/``result``/``description`` are
    filled in when the fake answers (``status`` stays ``None`` while a long poll is pending).
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    time: float
    filenames: dict[str, str] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)
    token: str = ""
    status: int | None = None
    result: Any = None
    description: str | None = None

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.params.items() if k != "reply_markup"}
        text = json.dumps(shown, ensure_ascii=False, default=str)
        if len(text) > 160:
            text = text[:157] + "..."
        files = f" files={sorted(self.files)}" if self.files else ""
        return f"{self.method}({text}){files} -> {self.status}{': ' + self.description if self.description else ''}"


class ApiError(Exception):
    """An error answer of the Bot API: ``{"ok": false, "error_code": status, "description": ...}``."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {description}")
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _decode_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            if key in _JSON_FIELDS:
                with contextlib.suppress(ValueError):
                    parsed = json.loads(value)
                    if isinstance(parsed, dict | list):
                        value = parsed
            elif key in _INT_FIELDS:
                if _INT_RE.fullmatch(value):
                    value = int(value)
                elif _FLOAT_RE.fullmatch(value):
                    value = float(value)
            elif key in _BOOL_FIELDS and value in ("true", "false"):
                value = value == "true"
        params[key] = value
    return params


def _update_type(update: Mapping[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")


def _inline_markup(markup: Any) -> dict[str, Any] | None:
    """Telegram echoes only inline keyboards in the Message it returns."""
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        return markup
    return None


def _buttons(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


# Telegram's HTML tags → entity types.
_HTML_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "code": "code", "pre": "pre",
    "a": "text_link", "tg-spoiler": "spoiler", "blockquote": "blockquote",
}


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _TelegramHtml(HTMLParser):
    """Text and entities of a ``parse_mode=HTML`` message; ``error`` says why Telegram would refuse it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.text = ""
        self.entities: list[dict[str, Any]] = []
        self.open: list[tuple[str, int, dict[str, Any]]] = []
        self.error: str | None = None

    def fail(self, why: str) -> None:
        self.error = self.error or why

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_ENTITY_TYPES:
            self.fail(f'Unsupported start tag "{tag}"')
            return
        entity: dict[str, Any] = {"type": _HTML_ENTITY_TYPES[tag]}
        if tag == "a":
            entity["url"] = dict(attrs).get("href") or ""
        self.open.append((tag, _utf16_length(self.text), entity))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1][0] != tag:
            self.fail(f'Unmatched end tag "{tag}"')
            return
        _, offset, entity = self.open.pop()
        length = _utf16_length(self.text) - offset
        if length:
            self.entities.append({**entity, "offset": offset, "length": length})

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self.fail("Unsupported start tag or bare '<'/'>': escape them as &lt; and &gt;")
        self.text += data

    def handle_entityref(self, name: str) -> None:
        self.text += html.unescape(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.text += html.unescape(f"&#{name};")


def _parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """``(plain text, entities)`` of Telegram-HTML ``text``, or ApiError 400 "can't parse entities"."""
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    if parser.open:
        parser.fail(f"Can't find end tag corresponding to start tag \"{parser.open[-1][0]}\"")
    if parser.error:
        raise ApiError(400, f"Bad Request: can't parse entities: {parser.error}")
    parser.entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return parser.text, parser.entities


def _command_entity(text: str) -> dict[str, Any] | None:
    match = _COMMAND_RE.match(text)
    if not match:
        return None
    return {"type": "bot_command", "offset": 0, "length": len(match.group(0))}


class FakeBotApi:
    """Fake Telegram Bot API server; see the module docstring."""

    def __init__(
        self, token: str | None = None, *, fail_parse_mode_once: bool = False, strict_private_chats: bool = False
    ) -> None:
        self._expected_token = token
        #: When True, the next send/edit that carries a ``parse_mode`` gets 400 "can't parse entities".
        self.fail_parse_mode_once = fail_parse_mode_once
        #: When True, like Telegram, the bot may write only to private chats the user opened (``private_chat()`` or
        #: a message there); any other user id gets 403 "Forbidden: bot can't initiate conversation with a user".
        self.strict_private_chats = strict_private_chats
        self.calls: list[Call] = []
        self.seen_tokens: list[str] = []
        self.unknown_methods: list[str] = []
        #: Exceptions raised by the fake itself (answered with 500): a bug in the fake or in a test.
        self.internal_errors: list[BaseException] = []
        #: ``answerCallbackQuery`` params by callback query id.
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.webhook_url = ""
        self.allowed_updates: list[str] | None = None

        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._changed = asyncio.Event()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(10_001)
        self._poll_generation = 0
        self._failures: dict[str, list[ApiError]] = {}
        self._chats: dict[int | str, dict[str, Any]] = {}
        self._next_message_id: dict[int | str, int] = {}
        self._messages: dict[tuple[int | str, int], dict[str, Any]] = {}
        self._bot_messages: list[tuple[int | str, int]] = []
        self._deleted: set[tuple[int | str, int]] = set()
        self._callback_queries: set[str] = set()
        self._callback_ids = itertools.count(4_000_000_000_000_000_001)
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._file_numbers = itertools.count(1)

        self._handlers: dict[str, Callable[[Call], Any]] = {
            "getMe": lambda call: dict(BOT_USER),
            "logOut": lambda call: True,
            "close": lambda call: True,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getChat": self._get_chat,
            "getFile": self._get_file,
        }
        for method, kind in _SEND_MEDIA_METHODS.items():
            self._handlers[method] = lambda call, kind=kind: self._send_media(call, kind)
        self._canonical = {name.lower(): name for name in self._handlers}

    # ------------------------------------------------------------------ server lifecycle

    async def start(self) -> FakeBotApi:
        """Bind 127.0.0.1 on a free port and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeBotApi is already running")
        self._stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Stop serving. Pending long polls answer ``[]`` at once instead of holding the shutdown up."""
        self._stopping = True
        self._notify()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeBotApi:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotApi is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)``: ``http://127.0.0.1:PORT/bot``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url(...)``: ``http://127.0.0.1:PORT/file/bot``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def token(self) -> str | None:
        """The token given to the constructor, else the first token a request used (None before that)."""
        if self._expected_token is not None:
            return self._expected_token
        return self.seen_tokens[0] if self.seen_tokens else None

    def application_builder(self) -> Any:
        """An ``ApplicationBuilder`` with token, base_url and base_file_url pointing at this fake."""
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(self.token or TEST_TOKEN)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    # ------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        With status 429 the answer is "Too Many Requests: retry after N" with ``parameters.retry_after``
        (PTB raises ``RetryAfter``); other statuses answer ``description`` (or a default one: 400 →
        BadRequest, 403 → Forbidden, 409 → Conflict, 5xx → NetworkError in PTB).
        """

        def make() -> ApiError:
            if status == 429:
                text = description or f"Too Many Requests: retry after {retry_after}"
                return ApiError(429, text, {"retry_after": retry_after})
            return ApiError(status, description or _DEFAULT_DESCRIPTIONS.get(status, "Error"))

        self._failures.setdefault(method.lower(), []).extend(make() for _ in range(times))

    # ------------------------------------------------------------------ users, chats, updates

    def user(
        self,
        id: int,
        first_name: str = "Alice",
        username: str | None = None,
        language_code: str | None = "en",
        *,
        last_name: str | None = None,
    ) -> dict[str, Any]:
        """A (human) ``User`` dict."""
        user: dict[str, Any] = {"id": id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    def private_chat(self, user: Mapping[str, Any]) -> dict[str, Any]:
        """The private ``Chat`` between ``user`` and the bot (registered for getChat)."""
        chat: dict[str, Any] = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        self._chats[chat["id"]] = chat
        return dict(chat)

    def group_chat(self, id: int = -1001234567890, title: str = "Mood Group") -> dict[str, Any]:
        """A group ``Chat``; ids starting with -100 are supergroups, like on Telegram."""
        chat_type = "supergroup" if str(id).startswith("-100") else "group"
        chat = {"id": id, "type": chat_type, "title": title}
        self._chats[id] = chat
        return dict(chat)

    def forum_chat(self, id: int = -1001987654321, title: str = "Mood Forum") -> dict[str, Any]:
        """A supergroup with topics; send into a topic with ``send_text(..., message_thread_id=...)``."""
        chat = {"id": id, "type": "supergroup", "title": title, "is_forum": True}
        self._chats[id] = chat
        return dict(chat)

    def channel(self, id: int = -1002000000001, title: str = "Mood Channel") -> dict[str, Any]:
        """A channel ``Chat``, to post as with :meth:`send_as_chat`."""
        chat = {"id": id, "type": "channel", "title": title}
        self._chats[id] = chat
        return dict(chat)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Queued updates not yet confirmed by a getUpdates ``offset``."""
        return list(self._updates)

    def queue_update(self, payload: Mapping[str, Any]) -> int:
        """Queue a raw update (``{"message": {...}}`` etc.); assigns and returns its ``update_id``."""
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **copy.deepcopy(dict(payload))})
        self._notify()
        return update_id

    def send_text(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        text: str,
        *,
        reply_to_message_id: int | None = None,
        entities: Sequence[Mapping[str, Any]] | None = None,
        message_thread_id: int | None = None,
        sender_chat: Mapping[str, Any] | None = None,
    ) -> int:
        """Queue a text message from ``user``; returns its message_id.

        A text starting with a command (``/start``, ``/mood@moodbot_test_bot``) gets a ``bot_command``
        entity at offset 0, as Telegram adds it. ``message_thread_id`` puts it in a forum topic;
        ``sender_chat`` marks it as sent on behalf of that chat (see :meth:`send_as_chat`).
        """
        content: dict[str, Any] = {"text": text}
        if message_thread_id is not None:
            content.update(message_thread_id=message_thread_id, is_topic_message=True)
        if sender_chat is not None:
            content["sender_chat"] = dict(sender_chat)
        all_entities = [dict(e) for e in entities or ()]
        command = _command_entity(text)
        if command and not any(e.get("type") == "bot_command" and e.get("offset") == 0 for e in all_entities):
            all_entities.insert(0, command)
        if all_entities:
            content["entities"] = all_entities
        return self._queue_user_message(chat, user, content, reply_to_message_id)

    def send_as_chat(
        self, chat: Mapping[str, Any], sender_chat: Mapping[str, Any], text: str, **kwargs: Any
    ) -> int:
        """Queue a text sent on behalf of ``sender_chat``: a channel (``from`` is Telegram's "Channel_Bot"
        placeholder) or, when it is ``chat`` itself, an anonymous admin ("GroupAnonymousBot")."""
        placeholder = ANONYMOUS_ADMIN_USER if sender_chat["id"] == chat["id"] else CHANNEL_BOT_USER
        return self.send_text(chat, placeholder, text, sender_chat=sender_chat, **kwargs)

    def send_command(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        text: str,
        *,
        reply_to_message_id: int | None = None,
        entities: Sequence[Mapping[str, Any]] | None = None,
        message_thread_id: int | None = None,
    ) -> int:
        """Alias of :meth:`send_text`; a missing leading "/" is added."""
        if not text.startswith("/"):
            text = "/" + text
        return self.send_text(
            chat, user, text, reply_to_message_id=reply_to_message_id, entities=entities,
            message_thread_id=message_thread_id,
        )

    def send_sticker(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        emoji: str = "🙂",
        set_name: str = "MoodStickers",
        reply_to_message_id: int | None = None,
    ) -> int:
        sticker = self._media("sticker", None, emoji=emoji, set_name=set_name)
        return self._queue_user_message(chat, user, {"sticker": sticker}, reply_to_message_id)

    def send_photo(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        caption: str | None = None,
        content: bytes | None = None,
        width: int = 1280,
        height: int = 960,
        reply_to_message_id: int | None = None,
    ) -> int:
        photo = self._media("photo", content, width=width, height=height)
        return self._queue_user_message(chat, user, self._with_caption({"photo": photo}, caption), reply_to_message_id)

    def send_voice(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        duration: int = 3,
        content: bytes | None = None,
        caption: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        voice = self._media("voice", content, duration=duration)
        return self._queue_user_message(chat, user, self._with_caption({"voice": voice}, caption), reply_to_message_id)

    def send_document(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        file_name: str = "notes.txt",
        mime_type: str | None = None,
        content: bytes | None = None,
        caption: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        document = self._media("document", content, file_name=file_name, mime_type=mime_type)
        return self._queue_user_message(
            chat, user, self._with_caption({"document": document}, caption), reply_to_message_id
        )

    def send_location(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        latitude: float = 52.520008,
        longitude: float = 13.404954,
        *,
        reply_to_message_id: int | None = None,
    ) -> int:
        location = {"latitude": latitude, "longitude": longitude}
        return self._queue_user_message(chat, user, {"location": location}, reply_to_message_id)

    def send_contact(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        phone_number: str = "+15555550123",
        first_name: str = "Bob",
        *,
        last_name: str | None = None,
        user_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
        if last_name is not None:
            contact["last_name"] = last_name
        if user_id is not None:
            contact["user_id"] = user_id
        return self._queue_user_message(chat, user, {"contact": contact}, reply_to_message_id)

    def send_video(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        duration: int = 5,
        width: int = 640,
        height: int = 360,
        caption: str | None = None,
        content: bytes | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        video = self._media("video", content, duration=duration, width=width, height=height)
        return self._queue_user_message(chat, user, self._with_caption({"video": video}, caption), reply_to_message_id)

    def send_animation(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        caption: str | None = None,
        content: bytes | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """A GIF. Like Telegram, the message carries the same file as ``document`` too."""
        animation = self._media("animation", content, duration=2, width=320, height=240)
        document = {k: animation[k] for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")}
        return self._queue_user_message(
            chat, user, self._with_caption({"animation": animation, "document": document}, caption), reply_to_message_id
        )

    def send_audio(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        duration: int = 180,
        performer: str = "Some Artist",
        title: str = "Some Song",
        caption: str | None = None,
        content: bytes | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        audio = self._media("audio", content, duration=duration, performer=performer, title=title)
        return self._queue_user_message(chat, user, self._with_caption({"audio": audio}, caption), reply_to_message_id)

    def send_video_note(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        *,
        duration: int = 4,
        length: int = 240,
        content: bytes | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        video_note = self._media("video_note", content, duration=duration, length=length)
        return self._queue_user_message(chat, user, {"video_note": video_note}, reply_to_message_id)

    def send_poll(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        question: str = "How are you today?",
        options: Sequence[str] = ("Good", "Meh", "Bad"),
        *,
        is_anonymous: bool = True,
        allows_multiple_answers: bool = False,
        reply_to_message_id: int | None = None,
    ) -> int:
        poll_id = str(next(self._callback_ids))
        poll = {
            "id": poll_id,
            "question": question,
            "options": [{"text": o, "voter_count": 0, "persistent_id": str(i)} for i, o in enumerate(options)],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": is_anonymous,
            "type": "regular",
            "allows_multiple_answers": allows_multiple_answers,
            "allows_revoting": False,  # required by PTB 22.8 (Bot API 9.6)
            "members_only": False,  # required by PTB 22.8 (Bot API 10.0)
        }
        return self._queue_user_message(chat, user, {"poll": poll}, reply_to_message_id)

    def edit_text(self, chat: Mapping[str, Any], user: Mapping[str, Any], message_id: int, new_text: str) -> int:
        """The user edits their text message: updates it and queues an ``edited_message``; returns update_id."""
        message = self._messages.get((chat["id"], message_id))
        if message is None or message.get("from", {}).get("id") != user["id"]:
            raise ValueError(f"no message {message_id} from user {user['id']} in chat {chat['id']}")
        if "text" not in message:
            raise ValueError(f"message {message_id} has no text to edit")
        message["text"] = new_text
        message.pop("entities", None)
        command = _command_entity(new_text)
        if command:
            message["entities"] = [command]
        message["edit_date"] = int(time.time())
        return self.queue_update({"edited_message": message})

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
        key = (chat["id"], message_id)
        message = self._messages.get(key)
        if message is None or key in self._deleted:
            raise ValueError(f"no message {message_id} in chat {chat['id']}")
        buttons = [b for b in _buttons(message) if "callback_data" in b]
        if button_text is not None:
            match = next((b for b in buttons if b.get("text") == button_text), None)
        else:
            match = next((b for b in buttons if b["callback_data"] == data), None)
        if match is None:
            available = [(b.get("text"), b["callback_data"]) for b in buttons]
            raise ValueError(f"message {message_id} has no button {button_text or data!r}; it has {available}")
        query_id = str(next(self._callback_ids))
        self._callback_queries.add(query_id)
        self.queue_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": dict(user),
                    "message": message,
                    "chat_instance": str(abs(int(chat["id"])) * 7919 % 10**12 + 10**12),
                    "data": match["callback_data"],
                }
            }
        )
        return query_id

    # ------------------------------------------------------------------ assertion helpers

    def calls_of(self, method: str) -> list[Call]:
        """Recorded calls of ``method`` (case-insensitive), oldest first."""
        method = method.lower()
        return [call for call in self.calls if call.method.lower() == method]

    def sent_messages(self, chat_id: int | str | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The bot's messages (copies, in send order) with their CURRENT text/caption/markup after edits."""
        return [
            copy.deepcopy(self._messages[key])
            for key in self._bot_messages
            if (chat_id is None or key[0] == chat_id) and (include_deleted or key not in self._deleted)
        ]

    def sent_texts(self, chat_id: int | str | None = None) -> list[str]:
        """Current texts (or captions) of the bot's messages."""
        return [m.get("text", m.get("caption", "")) for m in self.sent_messages(chat_id)]

    def commands(self, scope: Mapping[str, Any] | None = None, language_code: str = "") -> list[dict[str, Any]]:
        """The command list set with setMyCommands for ``scope`` (default scope) and language."""
        return copy.deepcopy(self._commands.get(self._commands_key(scope, language_code), []))

    def file_content(self, file_id: str) -> bytes:
        """Bytes behind a file_id (uploaded by the bot, or made up for a user's media)."""
        return self._files[file_id]["content"]

    async def wait_for(self, predicate: Callable[[FakeBotApi], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value.

        Re-checked whenever a call is recorded or answered or an update is queued (no polling). Raises
        ``TimeoutError`` with a summary of what the fake saw.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            result = predicate(self)
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s\n{self.summary()}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def wait_for_messages(
        self, chat_id: int | str | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until the bot has sent at least ``count`` messages (to ``chat_id``); returns all of them."""
        return await self.wait_for(
            lambda api: msgs if len(msgs := api.sent_messages(chat_id)) >= count else None, timeout
        )

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``method`` was called (and answered) at least ``count`` times; returns those calls."""

        def answered(api: FakeBotApi) -> list[Call] | None:
            calls = [c for c in api.calls_of(method) if c.status is not None]
            return calls if len(calls) >= count else None

        return await self.wait_for(answered, timeout)

    def summary(self, last: int = 40) -> str:
        """Human-readable digest of the recorded calls (repeats collapsed) and the fake's state."""
        lines = [f"{len(self.calls)} calls recorded; {len(self._updates)} updates not yet confirmed"]
        shown: list[str] = []
        previous, repeats = "", 0
        for call in self.calls:
            line = repr(call)
            if call.method == "getUpdates" and isinstance(call.result, list):
                line = f"{line}: update_ids {[u['update_id'] for u in call.result]}"
            if line == previous:
                repeats += 1
                continue
            if repeats:
                shown.append(f"    ... {repeats} more x the same")
            shown.append(f"  {line}")
            previous, repeats = line, 0
        if repeats:
            shown.append(f"    ... {repeats} more x the same")
        if len(shown) > last:
            shown = [f"  ... {len(shown) - last} earlier lines left out", *shown[-last:]]
        lines += shown
        deliveries: dict[int, int] = {}
        for call in self.calls_of("getUpdates"):
            for update in call.result if isinstance(call.result, list) else ():
                deliveries[update["update_id"]] = deliveries.get(update["update_id"], 0) + 1
        stuck = [u for u in self._updates if deliveries.get(u["update_id"], 0) >= 3]
        if stuck:
            lines.append(
                f"update {stuck[0]['update_id']} was delivered {deliveries[stuck[0]['update_id']]} times but never "
                f"confirmed: PTB probably failed to parse it (look for 'Error while parsing updates' in the log): "
                f"{json.dumps(stuck[0], ensure_ascii=False)[:500]}"
            )
        if self.unknown_methods:
            lines.append(f"unknown methods: {self.unknown_methods}")
        if self.internal_errors:
            lines.append(f"internal errors of the fake: {self.internal_errors!r}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ HTTP plumbing

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return self._handle_file(path[len("/file/bot") :])
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z0-9_]+)/?", path)
        if match is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        token, raw_method = match.groups()
        raw, files, filenames, content_types = await self._read_request(request)
        method = self._canonical.get(raw_method.lower(), raw_method)
        call = Call(
            method,
            _decode_params(raw),
            files,
            time.monotonic(),
            filenames=filenames,
            content_types=content_types,
            token=token,
        )
        self.calls.append(call)
        if token not in self.seen_tokens:
            self.seen_tokens.append(token)
        try:
            if self._expected_token is not None and token != self._expected_token:
                raise ApiError(401, "Unauthorized")
            failures = self._failures.get(method.lower())
            if failures:
                raise failures.pop(0)
            handler = self._handlers.get(method)
            if handler is None:
                self.unknown_methods.append(raw_method)
                raise ApiError(404, "Not Found: method not found")
            result = handler(call)
            if inspect.isawaitable(result):
                self._notify()
                result = await result
            call.status, call.result = 200, result
        except ApiError as exc:
            call.status, call.description = exc.status, exc.description
            return web.json_response(exc.payload(), status=exc.status)
        except Exception as exc:  # a bug in the fake or a malformed test request: make it visible
            self.internal_errors.append(exc)
            call.status, call.description = 500, f"Internal Server Error: fake crashed: {exc!r}"
            return web.json_response(ApiError(500, call.description).payload(), status=500)
        finally:
            self._notify()
        return web.json_response({"ok": True, "result": result}, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @staticmethod
    async def _read_request(
        request: web.Request,
    ) -> tuple[dict[str, Any], dict[str, bytes], dict[str, str], dict[str, str]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        filenames: dict[str, str] = {}
        content_types: dict[str, str] = {}
        if request.body_exists:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    raw.update(body)
            else:  # application/x-www-form-urlencoded or multipart/form-data
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = value.file.read()
                        filenames[key] = value.filename
                        content_types[key] = value.content_type
                    else:
                        raw[key] = value
        return raw, files, filenames, content_types

    def _handle_file(self, rest: str) -> web.Response:
        token, _, file_path = rest.partition("/")
        if self._expected_token is not None and token != self._expected_token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        for record in self._files.values():
            if record["file_path"] == file_path:
                return web.Response(body=record["content"], content_type="application/octet-stream")
        return web.json_response(ApiError(404, "Not Found").payload(), status=404)

    # ------------------------------------------------------------------ state helpers

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        """The chat a bot method targets; unknown numeric ids are made up (positive = private)."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self._chats.values():
                if chat.get("username", "").lower() == chat_id[1:].lower():
                    return chat
            raise ApiError(400, "Bad Request: chat not found")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found" if chat_id else "Bad Request: chat_id is empty")
        if chat_id not in self._chats:
            if chat_id > 0 and self.strict_private_chats:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            if chat_id > 0:
                self._chats[chat_id] = {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}
            else:
                self.group_chat(chat_id, f"Chat {chat_id}")
        return self._chats[chat_id]

    def _register_chat(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        return self._chats.setdefault(chat["id"], dict(chat))

    def _new_message_id(self, chat_id: int | str) -> int:
        self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 0) + 1
        return self._next_message_id[chat_id]

    def _reply_snapshot(self, chat_id: int | str, message_id: int) -> dict[str, Any] | None:
        message = self._messages.get((chat_id, message_id))
        if message is None or (chat_id, message_id) in self._deleted:
            return None
        snapshot = copy.deepcopy(message)
        snapshot.pop("reply_to_message", None)
        return snapshot

    def _queue_user_message(
        self,
        chat: Mapping[str, Any],
        user: Mapping[str, Any],
        content: Mapping[str, Any],
        reply_to_message_id: int | None,
    ) -> int:
        stored_chat = self._register_chat(chat)
        message_id = self._new_message_id(chat["id"])
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(user),
            "chat": dict(stored_chat),
            "date": int(time.time()),
        }
        if reply_to_message_id is not None:
            reply = self._reply_snapshot(chat["id"], reply_to_message_id)
            if reply is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat['id']} to reply to")
            message["reply_to_message"] = reply
        message.update(copy.deepcopy(dict(content)))
        self._messages[(chat["id"], message_id)] = message
        self.queue_update({"message": message})
        return message_id

    @staticmethod
    def _with_caption(content: dict[str, Any], caption: str | None) -> dict[str, Any]:
        if caption is not None:
            content["caption"] = caption
        return content

    def _register_file(self, kind: str, content: bytes | None, ext: str | None = None) -> dict[str, Any]:
        number = next(self._file_numbers)
        folder, default_ext, _ = _MEDIA_KINDS[kind]
        if content is None:
            content = f"fake {kind} content #{number}".encode()
        record = {
            "file_id": f"Fake{kind.title().replace('_', '')}FileId-{number:06d}",
            "file_unique_id": f"FakeUnique{number:06d}",
            "file_size": len(content),
            "file_path": f"{folder}/file_{number}.{ext or default_ext}",
            "content": content,
        }
        self._files[record["file_id"]] = record
        return record

    def _media(
        self,
        kind: str,
        content: bytes | None,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        existing: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Any:
        """Telegram-shaped payload of a media kind (a PhotoSize list for photos)."""
        _, default_ext, default_mime = _MEDIA_KINDS[kind]
        ext = file_name.rsplit(".", 1)[-1] if file_name and "." in file_name else None
        record = existing or self._register_file(kind, content, ext)
        ids = {k: record[k] for k in ("file_id", "file_unique_id", "file_size")}
        if kind == "photo":
            width, height = extra.get("width", 1280), extra.get("height", 960)
            sizes = []
            for scale in (90, 320, 800):
                factor = min(1.0, scale / max(width, height))
                sizes.append({"width": max(1, round(width * factor)), "height": max(1, round(height * factor))})
            result = []
            for size in sizes[:-1]:
                small = self._register_file(kind, record["content"][: max(1, len(record["content"]) // 4)])
                result.append({**{k: small[k] for k in ("file_id", "file_unique_id", "file_size")}, **size})
            result.append({**ids, **sizes[-1]})
            return result
        payload: dict[str, Any] = dict(ids)
        if kind == "sticker":
            payload.update(
                width=512,
                height=512,
                is_animated=False,
                is_video=False,
                type="regular",
                emoji=extra.get("emoji", "🙂"),
                set_name=extra.get("set_name", "MoodStickers"),
            )
            return payload
        if kind in ("document", "audio", "video", "animation"):
            payload["file_name"] = file_name or f"{kind}.{default_ext}"
        if kind != "video_note":
            guessed = mimetypes.guess_type(payload.get("file_name", ""))[0]
            payload["mime_type"] = mime_type or guessed or default_mime
        if kind in ("voice", "audio", "video", "animation", "video_note"):
            payload["duration"] = extra.get("duration", 3)
        if kind in ("video", "animation"):
            payload["width"] = extra.get("width", 640)
            payload["height"] = extra.get("height", 360)
        if kind == "video_note":
            payload["length"] = extra.get("length", 240)
        if kind == "audio":
            payload["performer"] = extra.get("performer", "Some Artist")
            payload["title"] = extra.get("title", "Some Song")
        return payload

    def _check_parse_mode(self, call: Call) -> None:
        if self.fail_parse_mode_once and call.params.get("parse_mode"):
            self.fail_parse_mode_once = False
            raise ApiError(
                400, "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"
            )

    def _formatted_text(self, call: Call, text: str) -> tuple[str, list[dict[str, Any]] | None]:
        """The text and entities a send/edit shows: HTML parsed, anything else as given (with its entities)."""
        self._check_parse_mode(call)
        if str(call.params.get("parse_mode", "")).lower() == "html":
            return _parse_html(text)
        entities = call.params.get("entities")
        return text, entities if isinstance(entities, list) else None

    def _new_bot_message(self, call: Call, content: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(call.params.get("chat_id"))
        params = call.params
        reply_to: int | None = params.get("reply_to_message_id")
        reply_chat = chat["id"]
        allow_without_reply = bool(params.get("allow_sending_without_reply"))
        reply_parameters = params.get("reply_parameters")
        if isinstance(reply_parameters, dict):
            reply_to = reply_parameters.get("message_id")
            reply_chat = reply_parameters.get("chat_id", reply_chat)
            allow_without_reply = bool(reply_parameters.get("allow_sending_without_reply", allow_without_reply))
        reply = None
        if reply_to is not None:
            reply = self._reply_snapshot(reply_chat, int(reply_to))
            if reply is None and not allow_without_reply:
                raise ApiError(400, "Bad Request: message to be replied not found")
        message_id = self._new_message_id(chat["id"])
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(_BOT_SENDER),
            "chat": dict(chat),
            "date": int(time.time()),
        }
        if reply is not None:
            message["reply_to_message"] = reply
        if isinstance(params.get("message_thread_id"), int):
            message["message_thread_id"] = params["message_thread_id"]
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        message.update(content)
        markup = _inline_markup(params.get("reply_markup"))
        if markup is not None:
            message["reply_markup"] = markup
        key = (chat["id"], message_id)
        self._messages[key] = message
        self._bot_messages.append(key)
        return copy.deepcopy(message)

    def _target_message(self, call: Call, missing: str) -> dict[str, Any] | None:
        """The bot message an edit targets; None for inline messages (not tracked)."""
        if call.params.get("inline_message_id"):
            return None
        chat = self._chat(call.params.get("chat_id"))
        key = (chat["id"], call.params.get("message_id"))
        message = self._messages.get(key)  # type: ignore[arg-type]
        if message is None or key in self._deleted:
            raise ApiError(400, f"Bad Request: {missing}")
        if message.get("from", {}).get("id") != BOT_USER["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    # ------------------------------------------------------------------ Bot API methods

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        self._poll_generation += 1
        generation = self._poll_generation
        params = call.params
        offset, limit, timeout = params.get("offset"), params.get("limit"), params.get("timeout")
        limit = min(100, max(1, limit)) if isinstance(limit, int) else 100
        timeout = max(0.0, float(timeout)) if isinstance(timeout, int | float) else 0.0
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):  # [] resets to the default, absent keeps the previous setting
            self.allowed_updates = list(allowed) or None
        if isinstance(offset, int) and offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            self._updates = self._updates[offset:]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            self._drop_unwanted_updates()
            if self._updates:
                return copy.deepcopy(self._updates[:limit])
            if self._stopping:
                return []
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    def _drop_unwanted_updates(self) -> None:
        allowed = set(self.allowed_updates) if self.allowed_updates else None
        self._updates = [
            u
            for u in self._updates
            if (_update_type(u) in allowed if allowed else _update_type(u) not in _NOT_DEFAULT_UPDATES)
        ]

    def _delete_webhook(self, call: Call) -> bool:
        self.webhook_url = ""
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _set_webhook(self, call: Call) -> bool:
        url = call.params.get("url", "")
        if url and not str(url).startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, call: Call) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url:
            info["max_connections"] = 40
        return info

    def _check_text(self, text: Any, *, kind: str = "text") -> str:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, f"Bad Request: message {kind} is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    def _check_caption(self, caption: Any) -> None:
        if isinstance(caption, str) and len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError(400, "Bad Request: message caption is too long")

    def _send_message(self, call: Call) -> dict[str, Any]:
        text = self._check_text(call.params.get("text"))
        self._chat(call.params.get("chat_id"))
        text, entities = self._formatted_text(call, text)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        if isinstance(call.params.get("link_preview_options"), dict):
            content["link_preview_options"] = call.params["link_preview_options"]
        return self._new_bot_message(call, content)

    def _send_media(self, call: Call, kind: str) -> dict[str, Any]:
        self._chat(call.params.get("chat_id"))
        caption = call.params.get("caption")
        self._check_caption(caption)
        if caption is not None:
            self._check_parse_mode(call)
        content_bytes: bytes | None = None
        filename: str | None = None
        mime: str | None = None
        existing: dict[str, Any] | None = None
        value = call.params.get(kind)
        part = kind if kind in call.files else None
        if part is None and isinstance(value, str) and value.startswith("attach://"):
            part = value[len("attach://") :]
        if part is not None:
            if part not in call.files:
                raise ApiError(400, f"Bad Request: wrong file identifier/HTTP URL specified ({part} not uploaded)")
            content_bytes, filename, mime = call.files[part], call.filenames.get(part), call.content_types.get(part)
        elif isinstance(value, str) and value in self._files:
            existing = self._files[value]
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            content_bytes = f"downloaded from {value}".encode()
            filename = value.rstrip("/").rsplit("/", 1)[-1] or None
        elif value:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        else:
            raise ApiError(400, f"Bad Request: there is no {kind.replace('_', ' ')} in the request")
        if mime in (None, "application/octet-stream"):
            mime = None
        extra = {
            k: call.params[k]
            for k in ("duration", "width", "height", "length", "performer", "title", "emoji")
            if k in call.params
        }
        payload = self._media(kind, content_bytes, file_name=filename, mime_type=mime, existing=existing, **extra)
        content: dict[str, Any] = {kind: payload}
        if caption is not None and kind != "sticker":
            content["caption"] = caption
            if isinstance(call.params.get("caption_entities"), list):
                content["caption_entities"] = call.params["caption_entities"]
        return self._new_bot_message(call, content)

    def _edit_message_text(self, call: Call) -> dict[str, Any] | bool:
        text = self._check_text(call.params.get("text"))
        message = self._target_message(call, "message to edit not found")
        text, entities = self._formatted_text(call, text)
        if message is None:
            return True
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = _inline_markup(call.params.get("reply_markup"))
        if text == message["text"] and markup == message.get("reply_markup"):
            raise ApiError(400, _NOT_MODIFIED)
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        self._set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _edit_message_caption(self, call: Call) -> dict[str, Any] | bool:
        caption = call.params.get("caption")
        self._check_caption(caption)
        message = self._target_message(call, "message to edit not found")
        if caption:
            self._check_parse_mode(call)
        if message is None:
            return True
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        markup = _inline_markup(call.params.get("reply_markup"))
        if caption == message.get("caption") and markup == message.get("reply_markup"):
            raise ApiError(400, _NOT_MODIFIED)
        message.pop("caption_entities", None)
        if caption:
            message["caption"] = caption
        else:
            message.pop("caption", None)
        self._set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _edit_message_reply_markup(self, call: Call) -> dict[str, Any] | bool:
        message = self._target_message(call, "message to edit not found")
        if message is None:
            return True
        markup = _inline_markup(call.params.get("reply_markup"))
        if markup == message.get("reply_markup"):
            raise ApiError(400, _NOT_MODIFIED)
        self._set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    @staticmethod
    def _set_markup(message: dict[str, Any], markup: dict[str, Any] | None) -> None:
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup

    def _delete_message(self, call: Call) -> bool:
        chat = self._chat(call.params.get("chat_id"))
        key = (chat["id"], call.params.get("message_id"))
        if key not in self._messages or key in self._deleted:
            raise ApiError(400, "Bad Request: message to delete not found")
        self._deleted.add(key)  # type: ignore[arg-type]
        return True

    def _send_chat_action(self, call: Call) -> bool:
        self._chat(call.params.get("chat_id"))
        if call.params.get("action") not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _answer_callback_query(self, call: Call) -> bool:
        query_id = call.params.get("callback_query_id")
        if query_id not in self._callback_queries or query_id in self.callback_answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = call.params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(call.params)
        return True

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope if isinstance(scope, Mapping) and scope else {"type": "default"}
        return json.dumps(scope, sort_keys=True), language_code or ""

    def _set_my_commands(self, call: Call) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not isinstance(command, dict) or not _BOT_COMMAND_RE.fullmatch(str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(call.params.get("scope"), call.params.get("language_code"))
        if commands:
            self._commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        else:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, call: Call) -> list[dict[str, Any]]:
        key = self._commands_key(call.params.get("scope"), call.params.get("language_code"))
        return copy.deepcopy(self._commands.get(key, []))

    def _delete_my_commands(self, call: Call) -> bool:
        self._commands.pop(self._commands_key(call.params.get("scope"), call.params.get("language_code")), None)
        return True

    def _get_chat(self, call: Call) -> dict[str, Any]:
        chat_id = call.params.get("chat_id")
        if isinstance(chat_id, int) and chat_id not in self._chats:
            raise ApiError(400, "Bad Request: chat not found")
        chat = dict(self._chat(chat_id))
        chat.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        )
        return chat

    def _get_file(self, call: Call) -> dict[str, Any]:
        record = self._files.get(call.params.get("file_id"))  # type: ignore[arg-type]
        if record is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {k: record[k] for k in ("file_id", "file_unique_id", "file_size", "file_path")}


@contextlib.asynccontextmanager
async def running_application(app: Any, *, poll_timeout: int = 1, **polling_kwargs: Any) -> AsyncIterator[Any]:
    """Run a PTB ``Application`` with polling for the duration of the block, then shut it down.

    ``poll_interval=0`` and a short long-poll ``timeout`` keep tests fast; stopping cancels the pending
    long poll, so teardown does not wait for it.
    """
    await app.initialize()
    try:
        await app.start()
        try:
            await app.updater.start_polling(poll_interval=0, timeout=poll_timeout, **polling_kwargs)
            try:
                yield app
            finally:
                if app.updater.running:
                    await app.updater.stop()
        finally:
            if app.running:
                await app.stop()
    finally:
        await app.shutdown()
