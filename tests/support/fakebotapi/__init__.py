"""A fake Telegram Bot API server for end-to-end tests of moodbot (see ``server``)."""

from tests.support.fakebotapi.server import (
    ANONYMOUS_ADMIN_USER,
    BOT_USER,
    CHANNEL_BOT_USER,
    TEST_TOKEN,
    ApiError,
    Call,
    FakeBotApi,
    _parse_html,
    running_application,
)

__all__ = [
    "ANONYMOUS_ADMIN_USER",
    "BOT_USER",
    "CHANNEL_BOT_USER",
    "TEST_TOKEN",
    "ApiError",
    "Call",
    "FakeBotApi",
    "_parse_html",
    "running_application",
]
