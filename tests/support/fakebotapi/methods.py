"""The Bot API methods moodbot calls (python-telegram-bot calls them on its behalf), answered as Telegram does,
errors included: too long or empty texts, "message is not modified", unparsable HTML, bad commands."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from typing import Any

from tests.support.fakebotapi.files import MediaFactory
from tests.support.fakebotapi.state import Chats
from tests.support.fakebotapi.telegram_html import parse_html
from tests.support.fakebotapi.updates import UpdateQueue
from tests.support.fakebotapi.wire import BOT_SENDER, BOT_USER, ApiError, Call

Json = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_DESCRIPTION_LENGTH = 512
MAX_SHORT_DESCRIPTION_LENGTH = 120

_BOT_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_ONE_CHAT_SCOPES = frozenset({"chat", "chat_administrators", "chat_member"})
_LANGUAGE_CODE_RE = re.compile(r"[a-z]{2}")  # ISO 639-1, or empty for everyone without a language of their own
_SCOPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
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
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


class BotMethods:
    """Mixed into :class:`~tests.support.fakebotapi.server.FakeBotApi`, which owns the state used here."""

    _chats: Chats
    _updates: UpdateQueue
    _media: MediaFactory
    #: When True, the next send/edit that carries a ``parse_mode`` gets 400 "can't parse entities".
    fail_parse_mode_once: bool
    #: When True, like Telegram, the bot may write only to private chats the user opened (``private_chat()`` or
    #: a message there); any other user id gets 403 "Forbidden: bot can't initiate conversation with a user".
    strict_private_chats: bool
    #: ``answerCallbackQuery`` params by callback query id.
    callback_answers: dict[str, Json]
    #: The bot's descriptions (setMyDescription) and short descriptions (setMyShortDescription) by language code
    #: ("" for everyone without one of their own).
    descriptions: dict[str, str]
    short_descriptions: dict[str, str]
    #: Every draft the bot showed (``sendMessageDraft``): chat_id, draft_id, text and message_thread_id, in order.
    drafts: list[Json]
    #: Users who blocked the bot: every method addressed to their private chat gets 403 "bot was blocked by the user".
    blocked_by: set[int]
    _commands: dict[tuple[str, str], list[Json]]  # by (scope, language code), see commands()

    def _methods(self) -> dict[str, Callable[[Call], Any]]:
        """Each method's handler, by its name in the Bot API."""
        return {
            "getMe": lambda call: dict(BOT_USER),
            "getUpdates": lambda call: self._updates.get_updates(call.params),
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "setMyCommands": self._set_my_commands,
            "setMyDescription": lambda call: self._set_description(call, self.descriptions, MAX_DESCRIPTION_LENGTH),
            "setMyShortDescription": lambda call: self._set_description(
                call, self.short_descriptions, MAX_SHORT_DESCRIPTION_LENGTH
            ),
            "sendMessage": self._send_message,
            "sendMessageDraft": self._send_message_draft,
            "editMessageText": self._edit_message_text,
            "sendPhoto": lambda call: self._send_file(call, "photo"),
            "sendDocument": lambda call: self._send_file(call, "document"),
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
        }

    def commands(self, scope: Json | None = None, language_code: str = "") -> list[Json]:
        """The command menu the bot set with setMyCommands for ``scope`` (a ``BotCommandScope`` dict; None: the
        default scope) and ``language_code`` ("" : everyone without a menu in their language)."""
        return copy.deepcopy(self._commands.get((_scope_key(scope), language_code), []))

    def command_menus(self) -> dict[tuple[str, str], list[Json]]:
        """Every menu set, by ``(scope, language code)``; a scope is written ``default`` or ``chat:<id>`` …"""
        return copy.deepcopy(self._commands)

    # -- how updates reach the bot

    def _delete_webhook(self, call: Call) -> bool:
        self._updates.webhook_url = ""
        if call.params.get("drop_pending_updates"):
            self._updates.drop_pending()
        return True

    def _set_webhook(self, call: Call) -> bool:
        url = call.params.get("url", "")
        if url and not str(url).startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self._updates.webhook_url = url
        if call.params.get("drop_pending_updates"):
            self._updates.drop_pending()
        return True

    def _set_my_commands(self, call: Call) -> bool:
        key = (self._checked_scope(call.params.get("scope")), _checked_language(call.params.get("language_code")))
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
        self._commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        if not commands:  # an empty list deletes the menu: the broader one shows again
            del self._commands[key]
        return True

    def _checked_scope(self, scope: Any) -> str:
        """The key of a command scope; a chat scope names a chat the bot may see (400 "chat not found" else)."""
        if scope is None:
            return "default"
        if not isinstance(scope, dict) or scope.get("type") not in _SCOPES:
            raise ApiError(400, "Bad Request: can't parse BotCommandScope JSON object")
        if scope["type"] in _ONE_CHAT_SCOPES:
            if "chat_id" not in scope:
                raise ApiError(400, "Bad Request: chat_id is empty")
            try:
                self._chats.target(scope["chat_id"], strict_private=self.strict_private_chats)
            except ApiError:
                raise ApiError(400, "Bad Request: chat not found") from None
        return _scope_key(scope)

    def _set_description(self, call: Call, descriptions: dict[str, str], limit: int) -> bool:
        """setMyDescription / setMyShortDescription: an empty text removes the one for that language."""
        language = _checked_language(call.params.get("language_code"))
        text = call.params.get("description", call.params.get("short_description", ""))
        if not isinstance(text, str) or len(text) > limit:
            raise ApiError(400, "Bad Request: description is too long")
        if text:
            descriptions[language] = text
        else:
            descriptions.pop(language, None)
        return True

    # -- messages

    def _send_message(self, call: Call) -> Json:
        text = _checked_text(call.params.get("text"))
        self._target_chat(call)
        text, entities = self._formatted_text(call, text)
        content: Json = {"text": text}
        if entities:
            content["entities"] = entities
        return self._new_bot_message(call, content)

    def _send_file(self, call: Call, kind: str) -> Json:
        """sendPhoto and sendDocument with the file uploaded (moodbot sends the bytes it made)."""
        self._target_chat(call)
        caption = call.params.get("caption")
        if isinstance(caption, str) and len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError(400, "Bad Request: message caption is too long")
        if caption is not None:
            self._check_parse_mode(call)
        if kind not in call.files:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        upload = call.files[kind]
        if kind == "photo":
            payload: Any = self._media.photo(upload)
        else:  # the mime type PTB gives, else one guessed from the file name
            mime = call.content_types.get(kind)
            file_name = call.filenames.get(kind) or "document.bin"
            payload = self._media.document(upload, file_name, None if mime == "application/octet-stream" else mime)
        content: Json = {kind: payload}
        if caption is not None:
            content["caption"] = caption
            if isinstance(call.params.get("caption_entities"), list):
                content["caption_entities"] = call.params["caption_entities"]
        return self._new_bot_message(call, content)

    def _send_message_draft(self, call: Call) -> bool:
        """A passing preview of a message being written, in a private chat only; it is no message (nothing to
        edit or reply to), so it is only recorded in ``drafts``."""
        chat = self._target_chat(call)
        if chat.get("type") != "private":
            raise ApiError(400, "Bad Request: message drafts can be sent only to private chats")
        draft_id = call.params.get("draft_id")
        if not isinstance(draft_id, int) or draft_id == 0:
            raise ApiError(400, "Bad Request: draft_id must be a non-zero integer")
        text = call.params.get("text", "")
        if not isinstance(text, str) or len(text) > MAX_TEXT_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        text, _entities = self._formatted_text(call, text)
        self.drafts.append(
            {"chat_id": chat["id"], "draft_id": draft_id, "text": text,
             "message_thread_id": call.params.get("message_thread_id")}
        )
        return True

    def _edit_message_text(self, call: Call) -> Json:
        text = _checked_text(call.params.get("text"))
        chat = self._target_chat(call)
        message = self._chats.message(chat["id"], call.params.get("message_id"))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != BOT_USER["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        text, entities = self._formatted_text(call, text)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = _inline_markup(call.params.get("reply_markup"))
        if text == message["text"] and markup == message.get("reply_markup"):
            raise ApiError(400, _NOT_MODIFIED)
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        if markup is None:  # an edit without a keyboard removes the one the message had
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _send_chat_action(self, call: Call) -> bool:
        self._target_chat(call)
        if call.params.get("action") not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _answer_callback_query(self, call: Call) -> bool:
        query_id = call.params.get("callback_query_id")
        if query_id not in self._chats.callback_queries or query_id in self.callback_answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = call.params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(call.params)
        return True

    # -- shared by the methods

    def _target_chat(self, call: Call) -> Json:
        chat_id = call.params.get("chat_id")
        if chat_id in self.blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return self._chats.target(chat_id, strict_private=self.strict_private_chats)

    def _check_parse_mode(self, call: Call) -> None:
        if self.fail_parse_mode_once and call.params.get("parse_mode"):
            self.fail_parse_mode_once = False
            raise ApiError(
                400, "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"
            )

    def _formatted_text(self, call: Call, text: str) -> tuple[str, list[Json] | None]:
        """The text and entities a send/edit shows: HTML parsed, anything else as given (with its entities)."""
        self._check_parse_mode(call)
        if str(call.params.get("parse_mode", "")).lower() == "html":
            return parse_html(text)
        entities = call.params.get("entities")
        return text, entities if isinstance(entities, list) else None

    def _new_bot_message(self, call: Call, content: Json) -> Json:
        """Keep and return the message a send creates: its reply (``reply_parameters``), topic and keyboard."""
        params = call.params
        chat = self._target_chat(call)
        reply = None
        reply_parameters = params.get("reply_parameters")
        if isinstance(reply_parameters, dict):
            reply_chat = reply_parameters.get("chat_id", chat["id"])
            reply = self._chats.reply_snapshot(reply_chat, int(reply_parameters["message_id"]))
            if reply is None and not reply_parameters.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
        message: Json = {
            "message_id": self._chats.new_message_id(chat["id"]),
            "from": dict(BOT_SENDER),
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
        self._chats.add_message(message, from_bot=True)
        return copy.deepcopy(message)


def _scope_key(scope: Json | None) -> str:
    """``default``, ``all_private_chats`` …, or ``chat:<id>`` / ``chat_member:<id>:<user id>`` for one chat."""
    if scope is None:
        return "default"
    return ":".join(str(part) for part in (scope["type"], scope.get("chat_id"), scope.get("user_id")) if part)


def _checked_language(code: Any) -> str:
    if code in (None, ""):
        return ""
    if not isinstance(code, str) or not _LANGUAGE_CODE_RE.fullmatch(code):
        raise ApiError(400, "Bad Request: invalid language code specified")
    return code


def _checked_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise ApiError(400, "Bad Request: message is too long")
    return text


def _inline_markup(markup: Any) -> Json | None:
    """Telegram echoes only inline keyboards in the Message it returns."""
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        return markup
    return None

