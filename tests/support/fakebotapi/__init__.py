"""A fake Telegram Bot API server for end-to-end tests of moodbot.

``FakeBotApi`` is a small aiohttp server on 127.0.0.1 that speaks the part of the Bot API moodbot uses, so that the
real python-telegram-bot ``Application`` runs against it with long polling (``tests/support/e2e.py`` starts moodbot
on it)::

    async with FakeBotApi() as api:
        alice = api.user(1001)
        chat = api.private_chat(alice)
        async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
            api.send_text(chat, alice, "hello")
            [reply] = await api.wait_for_messages(chat["id"], count=1)

Where things live:

* ``server``: the HTTP side. Every request is recorded as a :class:`Call` in ``api.calls`` (params decoded,
  uploaded files as bytes), and every recorded call (and every queued update) wakes :meth:`FakeBotApi.wait_for`.
  Failures can be injected with :meth:`FakeBotApi.fail_next` and ``fail_parse_mode_once``.
* ``users``: what people do (write, send media, edit, press a button, delete), as the updates Telegram delivers.
  Forum topics (``message_thread_id=``) and messages sent on behalf of a chat (:meth:`FakeBotApi.send_as_chat`: a
  channel, or the group itself for an anonymous admin) look as on Telegram.
* ``methods``: the Bot API methods moodbot calls: getMe, getUpdates, deleteWebhook, setWebhook, setMyCommands
  (per scope and language: ``api.commands(scope, language_code)``), setMyDescription and setMyShortDescription
  (``api.descriptions``, ``api.short_descriptions`` by language), sendMessage, sendMessageDraft (recorded in
  ``api.drafts``), editMessageText, sendPhoto, sendDocument, sendChatAction, answerCallbackQuery. Any other method
  answers 404 and is listed in ``api.unknown_methods``. With ``strict_private_chats`` the bot can write only to
  private chats a user opened (403 "bot can't initiate conversation with a user" otherwise, as on Telegram); a
  user in ``api.blocked_by`` blocked the bot (403 "bot was blocked by the user"). ``api.latency`` slows a method
  down so that concurrent calls overlap, and ``api.max_in_flight`` says how many of them ever did.
* ``updates``: ``getUpdates`` is a real long poll: it answers at once when updates are queued, otherwise waits
  until one is queued, its ``timeout`` passes, a newer ``getUpdates`` supersedes it (409 Conflict, as on
  Telegram) or the server stops (then ``[]`` at once). Updates stay queued until a later ``offset`` confirms them.
* ``state``: chats and messages; the bot's messages keep their current state, so edits, "message is not
  modified", deletions and button presses behave as on Telegram.
* ``telegram_html``: ``parse_mode="HTML"`` texts keep the plain text with ``entities``; an unknown tag, an unclosed
  one or a bare ``<`` is refused with 400 "can't parse entities".
* ``files``: the media payloads of users' media and of the bot's uploads.
* ``wire``: the bot's identity, the test token, :class:`Call`, :class:`ApiError` and parameter decoding.
"""

from tests.support.fakebotapi.server import FakeBotApi
from tests.support.fakebotapi.telegram_html import parse_html
from tests.support.fakebotapi.wire import (
    ANONYMOUS_ADMIN_USER,
    BOT_USER,
    CHANNEL_BOT_USER,
    TEST_TOKEN,
    ApiError,
    Call,
)

__all__ = [
    "ANONYMOUS_ADMIN_USER",
    "BOT_USER",
    "CHANNEL_BOT_USER",
    "TEST_TOKEN",
    "ApiError",
    "Call",
    "FakeBotApi",
    "parse_html",
]
