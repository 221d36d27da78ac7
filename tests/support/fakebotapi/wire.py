"""What travels over the fake's HTTP: who the bot is, a recorded request, an error answer, parameter decoding."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
#: How the bot appears as ``from`` of its own messages (Telegram leaves the capability flags out).
BOT_SENDER = {k: BOT_USER[k] for k in ("id", "is_bot", "first_name", "username")}
#: The placeholder ``from`` Telegram puts on messages sent on behalf of a channel, and of an anonymous group admin.
CHANNEL_BOT_USER: dict[str, Any] = {
    "id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"
}
ANONYMOUS_ADMIN_USER: dict[str, Any] = {
    "id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"
}

# Parameters that PTB JSON-encodes into strings; decoded back when they parse as an object/array.
_JSON_FIELDS = frozenset(
    {"reply_markup", "commands", "entities", "caption_entities", "reply_parameters", "allowed_updates", "scope"}
)
# Parameters cast to int when numeric (chat_id stays a str for "@channel" usernames).
_INT_FIELDS = frozenset(
    {
        "chat_id", "message_id", "offset", "limit", "timeout", "message_thread_id", "cache_time", "max_connections",
        "draft_id",
    }
)
# Parameters whose "true"/"false" strings become bools.
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "has_spoiler",
        "disable_content_type_detection",
        "allow_paid_broadcast",
        "show_caption_above_media",
    }
)
_INT_RE = re.compile(r"-?\d+")
_FLOAT_RE = re.compile(r"-?\d+\.\d*")

#: What an error answer says when a test injects one without a description.
DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass
class Call:
    """One request the fake received.

    ``params`` are decoded (see :func:`decode_params`); ``files`` maps multipart part names to the uploaded
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
        """The JSON body of this error answer."""
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def decode_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as the methods want them: PTB sends form fields as strings, so JSON objects, numbers
    and booleans are decoded back (only for the parameters known to hold them)."""
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
