"""The fake Bot API server works with a real python-telegram-bot Application (no model involved)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from tests.support.fakebotapi import BOT_USER, TEST_TOKEN, FakeBotApi


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(token=TEST_TOKEN) as fake:
        yield fake


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    await update.message.reply_text(f"echo: {update.message.text}")


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    await update.message.reply_text("Hi! I'm MoodBot.")


async def _sticker(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None and update.message.sticker is not None
    await update.message.reply_text(f"nice sticker {update.message.sticker.emoji}")


@contextlib.asynccontextmanager
async def _running(app: Application, *, poll_timeout: int = 1) -> AsyncIterator[Application]:
    """Run ``app`` with polling for the duration of the block, then shut it down (``poll_interval=0`` and a short
    long-poll ``timeout`` keep tests fast; stopping cancels the pending long poll)."""
    await app.initialize()
    try:
        await app.start()
        try:
            await app.updater.start_polling(poll_interval=0, timeout=poll_timeout)
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


def _build_app(api: FakeBotApi) -> Application:
    app = Application.builder().token(TEST_TOKEN).base_url(api.base_url).build()
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.UpdateType.MESSAGE, _echo))
    app.add_handler(MessageHandler(filters.Sticker.ALL, _sticker))
    return app


@pytest.fixture
async def app(api: FakeBotApi) -> AsyncIterator[Application]:
    async with _running(_build_app(api)) as application:
        yield application


async def test_echo_command_and_sticker(api: FakeBotApi, app: Application) -> None:
    alice = api.user(1001, "Alice", username="alice")
    chat = api.private_chat(alice)

    first = api.send_text(chat, alice, "hello there")
    api.send_command(chat, alice, "/start")
    api.send_text(chat, alice, "123")
    api.send_sticker(chat, alice, emoji="😢")

    messages = await api.wait_for_messages(chat["id"], count=4)
    assert [m["text"] for m in messages] == ["echo: hello there", "Hi! I'm MoodBot.", "echo: 123", "nice sticker 😢"]
    assert all(m["from"]["id"] == BOT_USER["id"] and m["chat"]["id"] == chat["id"] for m in messages)
    # message ids are per chat and shared with the user's messages
    assert first == 1
    assert len({m["message_id"] for m in messages}) == 4 and min(m["message_id"] for m in messages) > first

    # params are decoded: chat_id is an int, a numeric text stays a string
    texts = [c.params["text"] for c in api.calls_of("sendMessage")]
    assert "echo: 123" in texts
    assert all(isinstance(c.params["chat_id"], int) for c in api.calls_of("sendMessage"))

    # startup went through getMe and deleteWebhook; all updates are eventually confirmed
    assert api.calls_of("getMe") and api.calls_of("deleteWebhook")
    assert app.bot.username == "moodbot_test_bot"
    await api.wait_for(lambda a: not a.pending_updates)
    assert api.calls_of("getUpdates")[-1].params["timeout"] == 1


async def test_command_entity_and_group_mention(api: FakeBotApi, app: Application) -> None:
    bob = api.user(2002, "Bob")
    group = api.group_chat(-1009876543210, "Feelings")
    api.send_text(group, bob, "/start@moodbot_test_bot please")
    [reply] = await api.wait_for_messages(group["id"])
    assert reply["text"] == "Hi! I'm MoodBot."
    assert reply["chat"] == {"id": -1009876543210, "type": "supergroup", "title": "Feelings"}
    update = next(c.result for c in api.calls_of("getUpdates") if c.result)[0]
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 23}]


async def test_every_update_builder_parses_in_ptb(api: FakeBotApi) -> None:
    seen: list[Update] = []

    async def collect(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update)

    application = Application.builder().token(TEST_TOKEN).base_url(api.base_url).build()
    application.add_handler(TypeHandler(Update, collect))
    alice = api.user(1001)
    chat = api.private_chat(alice)
    bot_msg_id = None
    async with _running(application):
        sent = await application.bot.send_message(
            chat["id"],
            "How do you feel?",
            reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Fine", callback_data="fine")]]),
        )
        bot_msg_id = sent.message_id
        text_id = api.send_text(chat, alice, "plain", reply_to_message_id=bot_msg_id)
        api.send_photo(chat, alice, caption="me")
        api.send_voice(chat, alice)
        api.send_document(chat, alice, file_name="diary.pdf")
        api.send_location(chat, alice)
        api.send_contact(chat, alice)
        api.send_video(chat, alice)
        api.send_animation(chat, alice)
        api.send_audio(chat, alice)
        api.send_video_note(chat, alice)
        api.send_poll(chat, alice)
        api.send_sticker(chat, alice)
        api.edit_text(chat, alice, text_id, "plain, edited")
        api.press_button(chat, alice, bot_msg_id, button_text="Fine")
        await api.wait_for(lambda a: len(seen) == 14)

    messages = [u.message for u in seen[:12]]
    assert all(m is not None for m in messages)
    assert messages[0].reply_to_message.message_id == bot_msg_id
    assert messages[1].photo[-1].width == 800 and messages[1].caption == "me"
    assert messages[2].voice.mime_type == "audio/ogg"
    assert messages[3].document.file_name == "diary.pdf" and messages[3].document.mime_type == "application/pdf"
    assert messages[4].location.latitude == pytest.approx(52.520008)
    assert messages[5].contact.phone_number == "+15555550123"
    assert messages[6].video.width == 640
    assert messages[7].animation is not None and messages[7].document is not None
    assert messages[8].audio.title == "Some Song"
    assert messages[9].video_note.length == 240
    assert [o.text for o in messages[10].poll.options] == ["Good", "Meh", "Bad"]
    assert messages[11].sticker.emoji == "🙂"
    assert seen[12].edited_message.text == "plain, edited"
    query = seen[13].callback_query
    assert query.data == "fine" and query.message.message_id == bot_msg_id and query.from_user.id == 1001


async def test_retry_after_and_other_injected_failures(api: FakeBotApi, app: Application) -> None:
    api.fail_next("sendMessage", retry_after=3)
    with pytest.raises(RetryAfter) as excinfo:
        await app.bot.send_message(1001, "hi")
    assert "Retry in 3 seconds" in str(excinfo.value)
    call = api.calls_of("sendMessage")[-1]
    assert call.status == 429

    api.fail_next("sendmessage", status=403, times=2)
    for _ in range(2):
        with pytest.raises(Forbidden, match="blocked"):
            await app.bot.send_message(1001, "hi")
    await app.bot.send_message(1001, "hi")  # back to normal
    assert api.sent_texts(1001) == ["hi"]


async def test_retry_after_inside_a_handler_reaches_the_error_handler(api: FakeBotApi, app: Application) -> None:
    errors: list[BaseException] = []
    got_error = asyncio.Event()

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error)  # type: ignore[arg-type]
        got_error.set()

    app.add_error_handler(on_error)
    alice = api.user(1001)
    chat = api.private_chat(alice)
    api.fail_next("sendMessage", retry_after=2)
    api.send_text(chat, alice, "are you there?")
    # wait_for only re-checks when the fake sees activity; state outside the fake needs its own event
    await asyncio.wait_for(got_error.wait(), 5)
    assert api.calls_of("sendMessage")[-1].status == 429
    assert isinstance(errors[0], RetryAfter)


async def test_edit_text_not_modified_and_deleted(api: FakeBotApi, app: Application) -> None:
    chat = api.private_chat(api.user(1001))
    message = await app.bot.send_message(1001, "Thinking…")
    await app.bot.edit_message_text("You sound happy!", chat_id=1001, message_id=message.message_id)
    assert api.sent_texts(1001) == ["You sound happy!"]
    assert api.sent_messages(1001)[0]["edit_date"] >= api.sent_messages(1001)[0]["date"]
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_text("You sound happy!", chat_id=1001, message_id=message.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await app.bot.edit_message_text("x", chat_id=1001, message_id=999)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.send_message(1001, "x" * 4097)
    api.delete_message(chat, message.message_id)
    assert api.sent_messages(1001) == []
    assert api.sent_texts(1001) == [] and len(api.sent_messages(1001, include_deleted=True)) == 1
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await app.bot.edit_message_text("gone", chat_id=1001, message_id=message.message_id)
    with pytest.raises(ValueError, match="no message"):
        api.delete_message(chat, message.message_id)


async def test_fail_parse_mode_once(api: FakeBotApi, app: Application) -> None:
    api.fail_parse_mode_once = True
    await app.bot.send_message(1001, "plain is fine")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await app.bot.send_message(1001, "*bold", parse_mode=ParseMode.MARKDOWN_V2)
    await app.bot.send_message(1001, "*bold*", parse_mode=ParseMode.MARKDOWN_V2)
    assert api.sent_texts(1001) == ["plain is fine", "*bold*"]


async def test_inline_keyboard_round_trip(api: FakeBotApi, app: Application) -> None:
    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        await query.answer("Noted")
        await query.edit_message_text(f"You chose {query.data}")

    app.add_handler(CallbackQueryHandler(on_button))
    alice = api.user(1001)
    chat = api.private_chat(alice)
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("😊", callback_data="good"), InlineKeyboardButton("😞", callback_data="bad")]]
    )
    sent = await app.bot.send_message(chat["id"], "How are you?", reply_markup=keyboard)
    assert api.calls_of("sendMessage")[-1].params["reply_markup"]["inline_keyboard"][0][1]["callback_data"] == "bad"
    assert api.sent_messages(chat["id"])[0]["reply_markup"]["inline_keyboard"][0][0]["text"] == "😊"
    with pytest.raises(ValueError, match="no button"):
        api.press_button(chat, alice, sent.message_id, "meh")
    query_id = api.press_button(chat, alice, sent.message_id, "bad")
    await api.wait_for(lambda a: a.sent_texts(chat["id"]) == ["You chose bad"])
    assert api.callback_answers[query_id]["text"] == "Noted"
    assert "reply_markup" not in api.sent_messages(chat["id"])[0]  # editing without markup removes it


async def test_stop_is_fast_while_a_long_poll_is_pending(api: FakeBotApi) -> None:
    application = _build_app(api)
    await application.initialize()
    await application.start()
    await application.updater.start_polling(poll_interval=0, timeout=30)
    await api.wait_for(
        lambda a: any(c.params.get("timeout") == 30 and c.status is None for c in a.calls_of("getUpdates"))
    )
    started = time.monotonic()
    await application.updater.stop()
    await application.stop()
    await application.shutdown()
    assert time.monotonic() - started < 2
    # the cleanup getUpdates (timeout 0) confirmed the offset
    assert api.calls_of("getUpdates")[-1].params["timeout"] == 0


async def test_server_stop_releases_pending_long_poll() -> None:
    api = await FakeBotApi().start()
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.post(f"{api.base_url}anytoken/getUpdates", data={"timeout": "30"}))
        await api.wait_for(lambda a: a.calls_of("getUpdates"))
        started = time.monotonic()
        await api.stop()
        response = await asyncio.wait_for(request, 2)
    assert time.monotonic() - started < 2
    assert response.json() == {"ok": True, "result": []}
    assert api.token == "anytoken"


async def test_get_updates_offset_limit_and_long_poll(api: FakeBotApi) -> None:
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        alice = api.user(1001)
        chat = api.private_chat(alice)
        for i in range(3):
            api.send_text(chat, alice, f"m{i}")
        first_two = await bot.get_updates(limit=2, timeout=5)
        assert [u.message.text for u in first_two] == ["m0", "m1"]
        again = await bot.get_updates(timeout=0)  # nothing confirmed yet
        assert len(again) == 3
        rest = await bot.get_updates(offset=first_two[-1].update_id + 1, timeout=0)
        assert [u.message.text for u in rest] == ["m2"]
        assert len(api.pending_updates) == 1

        # a waiting long poll wakes up as soon as an update is queued
        poll = asyncio.create_task(bot.get_updates(offset=rest[-1].update_id + 1, timeout=10))
        await api.wait_for(lambda a: a.calls_of("getUpdates")[-1].status is None)
        started = time.monotonic()
        api.send_text(chat, alice, "wake up")
        woke = await asyncio.wait_for(poll, 2)
        assert [u.message.text for u in woke] == ["wake up"] and time.monotonic() - started < 1

        # a long poll with nothing to deliver answers [] after its timeout
        started = time.monotonic()
        assert await bot.get_updates(offset=woke[-1].update_id + 1, timeout=0.2) == ()  # type: ignore[arg-type]
        assert 0.15 < time.monotonic() - started < 1

        api.send_text(chat, alice, "dropped")
        await bot.delete_webhook(drop_pending_updates=True)
        assert api.pending_updates == []


async def test_send_photo_and_document_multipart(api: FakeBotApi, app: Application) -> None:
    png = b"\x89PNG\r\n\x1a\nfake-image-bytes"
    message = await app.bot.send_photo(1001, photo=png, caption="your mood chart")
    call = api.calls_of("sendPhoto")[-1]
    assert call.files["photo"] == png
    assert call.params["caption"] == "your mood chart" and call.params["chat_id"] == 1001
    assert message.caption == "your mood chart" and len(message.photo) == 3
    assert message.photo[-1].file_size == len(png)

    doc = await app.bot.send_document(1001, document=b"date,mood\n", filename="moods.csv")
    assert api.calls_of("sendDocument")[-1].files["document"] == b"date,mood\n"
    assert doc.document.file_name == "moods.csv" and doc.document.mime_type == "text/csv"
    assert [("photo" in m, "document" in m) for m in api.sent_messages(1001)] == [(True, False), (False, True)]


async def test_commands_chat_action_and_unknown_methods(api: FakeBotApi, app: Application) -> None:
    await app.bot.set_my_commands([("start", "Start"), ("mood", "Log your mood")])
    assert api.calls_of("setMyCommands")[-1].params["commands"][1] == {
        "command": "mood",
        "description": "Log your mood",
    }
    assert [c["command"] for c in api.commands()] == ["start", "mood"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await app.bot.set_my_commands([("Start Now", "bad")])
    await app.bot.set_my_commands([])
    assert api.commands() == []

    assert await app.bot.send_chat_action(1001, "typing")
    with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
        await app.bot.send_chat_action(1001, "dancing")

    # a method moodbot never calls is not faked: it answers 404 and is listed
    with pytest.raises(EndPointNotFound):  # PTB turns the 404 of do_api_request into EndPointNotFound
        await app.bot.do_api_request("setFancyThing", {"x": 1})
    assert api.unknown_methods == ["setFancyThing"]


async def test_wrong_token_is_rejected(api: FakeBotApi) -> None:
    bot = Bot("1:wrong", base_url=api.base_url)
    with pytest.raises(InvalidToken):
        await bot.initialize()
    assert api.calls[-1].status == 401 and "1:wrong" in api.seen_tokens


async def test_wait_for_times_out_with_a_summary(api: FakeBotApi) -> None:
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        await bot.send_message(1001, "only this")
    with pytest.raises(TimeoutError, match=r"sendMessage\(.*only this"):
        await api.wait_for(lambda a: len(a.sent_messages()) > 1, timeout=0.1)


async def test_strict_private_chats_forum_topics_and_posts_on_behalf_of_a_chat(
    api: FakeBotApi, app: Application
) -> None:
    api.strict_private_chats = True
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await app.bot.send_message(1001, "hi")
    alice = api.user(1001)
    api.private_chat(alice)  # she opened the chat: now the bot may write
    await app.bot.send_message(1001, "hi")

    forum, channel = api.forum_chat(), api.channel()
    api.send_text(forum, alice, "in a topic", message_thread_id=7)
    api.send_as_chat(forum, channel, "as a channel")
    api.send_as_chat(forum, forum, "as an anonymous admin")
    echoes = await api.wait_for_messages(forum["id"], count=3)
    assert [(m["text"], m.get("message_thread_id")) for m in echoes] == [
        ("echo: in a topic", 7), ("echo: as a channel", None), ("echo: as an anonymous admin", None)
    ]
    assert echoes[0]["is_topic_message"] is True, "PTB's reply_text kept the topic"
    updates = [u for c in api.calls_of("getUpdates") for u in c.result or []]
    senders = [(u["message"]["from"]["id"], u["message"].get("sender_chat", {}).get("id")) for u in updates]
    assert senders[-2:] == [(136817688, channel["id"]), (1087968824, forum["id"])]
