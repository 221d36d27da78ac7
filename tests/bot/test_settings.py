"""/settings through the fake Bot API with the scripted engine: every button stores its setting (read back through
the store, and after a restart), one menu message edited in place, presses on someone else's menu or with garbled
data change nothing, time zones by city button, by UTC offset and by a typed city, /mood's days in the asker's zone,
mood analysis switched off, short replies, and /export showing a changed setting."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from telegram.ext import Application

from bot.telegram.context import SERVICES_KEY
from bot.views import settings as view
from storage import PersonSettings, SentimentRecord, Store
from tests.support.e2e import answered, config_for, final_texts, rows, running_bot
from tests.support.fakebotapi import BOT_USER, FakeBotApi
from tests.support.fakeengine import ScriptedEngine

ALICE, BOB = 1, 2


def store_of(application: Application) -> Store:
    return application.bot_data[SERVICES_KEY].store


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data") or b.get("url", "")) for row in markup.get("inline_keyboard", [])
            for b in row]


def bot_message(api: FakeBotApi, chat: dict, message_id: int) -> dict[str, Any]:
    return next(m for m in api.sent_messages(chat["id"]) if m["message_id"] == message_id)


async def open_menu(api: FakeBotApi, chat: dict, user: dict) -> dict[str, Any]:
    """Send /settings; return the menu message."""
    before = len(api.sent_messages(chat["id"]))
    api.send_command(chat, user, "/settings")
    messages = await api.wait_for_messages(chat["id"], before + 1)
    return messages[before]


async def press(api: FakeBotApi, chat: dict, user: dict, menu: dict, action: str, value: str = "") -> dict[str, Any]:
    """Press the menu's button for ``action``/``value`` (it must be on the page shown); return the menu as edited."""
    edits = len(api.calls_of("editMessageText"))
    api.press_button(chat, user, menu["message_id"], view.press_data(user["id"], action, value))
    await api.wait_for_call("editMessageText", count=edits + 1)
    return bot_message(api, chat, menu["message_id"])


async def typed(api: FakeBotApi, chat: dict, user: dict, text: str) -> dict[str, Any]:
    """Type ``text``; return the bot's next message."""
    before = len(api.sent_messages(chat["id"]))
    api.send_text(chat, user, text)
    return (await api.wait_for_messages(chat["id"], before + 1))[before]


# -- every setting, stored and kept ------------------------------------------------------------------------------


async def test_each_button_stores_its_setting_in_one_message_and_it_survives_a_restart(
    api: FakeBotApi, tmp_path: Path
) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    config = config_for(api, tmp_path)
    async with running_bot(config, engine=ScriptedEngine()) as application:
        menu = await open_menu(api, chat, alice)
        assert "🌐 Language: follows Telegram (English)" in menu["text"]
        assert [label for label, _ in buttons(menu)][:2] == ["🌐 Language", "🕰 Time zone"]
        steps = [
            ("page", "lang"), ("lang", "zh"), ("page", "tz"), ("tz", "Asia/Tokyo"), ("page", "ci"), ("ci", "on"),
            ("cit", "07"), ("page", "home"), ("page", "quiet"), ("quiet", "22-07"), ("page", "wk"), ("wk", "on"),
            ("wkd", "0"), ("wkt", "09"), ("page", "home"), ("page", "len"), ("len", "short"), ("page", "mood"),
            ("mood", "off"),
        ]
        for action, value in steps:
            menu = await press(api, chat, alice, menu, action, value)
        stored = await store_of(application).person_settings(ALICE)
    assert stored == PersonSettings(
        user_id=ALICE, language="zh", time_zone="Asia/Tokyo", checkin_enabled=True, checkin_time="07:00",
        quiet_start="22:00", quiet_end="07:00", weekly_enabled=True, weekly_day=0, weekly_time="09:00",
        reply_length="short", analyse_mood=False,
    )
    assert len(api.sent_messages(chat["id"])) == 1, "one menu message, edited in place"
    answers = [call.params for call in api.calls_of("answerCallbackQuery")]
    assert len(answers) == len(steps) and all(not a.get("show_alert") for a in answers)

    async with running_bot(config, engine=ScriptedEngine()) as application:  # a new application, the same database
        assert await store_of(application).person_settings(ALICE) == stored
        old_menu = await press(api, chat, alice, menu, "page", "lang")  # the menu from before still works
        assert old_menu["text"] == "我应该用哪种语言？"
        menu = await open_menu(api, chat, alice)
        assert "东京" in menu["text"] and "07:00" in menu["text"] and "22:00–07:00" in menu["text"]
        menu = await press(api, chat, alice, menu, "page", "tz")
        assert ("✓ 东京", view.press_data(ALICE, "tz", "Asia/Tokyo")) in buttons(menu)
        menu = await press(api, chat, alice, menu, "page", "home")
        menu = await press(api, chat, alice, menu, "done")
        assert buttons(menu) == [] and "/settings" in menu["text"]


async def test_following_telegram_again_and_switching_things_off(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(ALICE, "Alice", language_code="zh-hans")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        store = store_of(application)
        await store.update_settings(ALICE, language="en", quiet_start="23:00", quiet_end="08:00", checkin_enabled=True)
        menu = await open_menu(api, chat, alice)
        assert "🌐 Language: English" in menu["text"]
        menu = await press(api, chat, alice, menu, "page", "lang")
        menu = await press(api, chat, alice, menu, "lang", "tg")
        assert "跟随 Telegram" in menu["text"], "Telegram's language (zh-hans) is Chinese"
        menu = await press(api, chat, alice, menu, "page", "quiet")
        menu = await press(api, chat, alice, menu, "quiet", "off")
        menu = await press(api, chat, alice, menu, "page", "ci")
        menu = await press(api, chat, alice, menu, "ci", "off")
        stored = await store.person_settings(ALICE)
    assert (stored.language, stored.quiet_start, stored.quiet_end, stored.checkin_enabled) == (None, None, None, False)


# -- who may press, and what a broken button does ----------------------------------------------------------------


async def test_a_press_on_someone_elses_menu_is_refused_and_changes_nothing(api: FakeBotApi, tmp_path: Path) -> None:
    alice, bob = api.user(ALICE, "Alice"), api.user(BOB, "Bob")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        menu = await open_menu(api, chat, alice)
        query = api.press_any(chat, bob, menu["message_id"], view.press_data(ALICE, "mood", "off"))
        assert (await answered(api, query)) | {"callback_query_id": ""} == {
            "callback_query_id": "", "text": view.NOT_YOURS_TEXT, "show_alert": True
        }
        # Bob's own menu, with a button claiming to be Alice's (a modified client).
        bob_chat = api.private_chat(bob)
        bobs = await open_menu(api, bob_chat, bob)
        query = api.press_any(bob_chat, bob, bobs["message_id"], view.press_data(ALICE, "len", "short"))
        assert (await answered(api, query))["text"] == view.NOT_YOURS_TEXT
        store = store_of(application)
        assert await store.person_settings(ALICE) == PersonSettings(ALICE)
        assert await store.person_settings(BOB) == PersonSettings(BOB)
    assert bot_message(api, chat, menu["message_id"])["text"] == menu["text"], "the menu is left as it was"
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM person_settings") == [(0,)]


@pytest.mark.parametrize(
    "data",
    ["set:1:tz:Mars/Olympus_Mons", "set:1:cit:25", "set:1:nope:x", "set:abc:len:short", "set:1:len", "set:",
     "set:1:page:secret", "set:1:tz:../../etc/passwd", "set:1:wkd:7"],
)
async def test_garbled_or_stale_data_gets_a_friendly_answer_and_changes_nothing(
    api: FakeBotApi, tmp_path: Path, data: str
) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        menu = await open_menu(api, chat, alice)
        answer = await answered(api, api.press_any(chat, alice, menu["message_id"], data))
    assert (answer["text"], answer["show_alert"]) == (view.STALE_TEXT, True)
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM person_settings") == [(0,)]
    assert api.calls_of("editMessageText") == []


# -- time zones --------------------------------------------------------------------------------------------------


async def test_time_zone_by_city_button_and_by_utc_offset(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        store = store_of(application)
        menu = await open_menu(api, chat, alice)
        menu = await press(api, chat, alice, menu, "page", "tz")
        assert len([label for label, _ in buttons(menu)]) == len(view.CITY_ZONES) + 3
        menu = await press(api, chat, alice, menu, "tz", "America/New_York")
        assert (await store.person_settings(ALICE)).time_zone == "America/New_York"
        assert "🕰 Time zone: New York · UTC−0" in menu["text"]
        menu = await press(api, chat, alice, menu, "page", "tz")
        menu = await press(api, chat, alice, menu, "page", "off")
        assert [label for label, _ in buttons(menu)][:3] == ["-12", "-11", "-10"]
        assert ("+8", view.press_data(ALICE, "tz", "Etc/GMT-8")) in buttons(menu), "the POSIX sign: GMT-8 is UTC+8"
        menu = await press(api, chat, alice, menu, "tz", "Etc/GMT-8")
        assert (await store.person_settings(ALICE)).time_zone == "Etc/GMT-8"
        assert "🕰 Time zone: UTC+8 · UTC+08:00" in menu["text"]
        menu = await press(api, chat, alice, menu, "page", "tz")
        menu = await press(api, chat, alice, menu, "page", "off")
        menu = await press(api, chat, alice, menu, "tz", "Etc/GMT+5")
        assert "🕰 Time zone: UTC-5 · UTC−05:00" in menu["text"]


async def test_time_zone_by_a_typed_city(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    engine = ScriptedEngine()
    async with running_bot(config_for(api, tmp_path), engine=engine) as application:
        store = store_of(application)
        menu = await open_menu(api, chat, alice)
        menu = await press(api, chat, alice, menu, "page", "tz")
        menu = await press(api, chat, alice, menu, "page", "city")
        assert menu["text"] == view.CITY_PROMPT

        answer = await typed(api, chat, alice, "Lisbon")  # one match: saved at once
        assert "🕰 Time zone: Lisbon · UTC" in answer["text"]
        assert (await store.person_settings(ALICE)).time_zone == "Europe/Lisbon"

        menu = await press(api, chat, alice, answer, "page", "tz")
        menu = await press(api, chat, alice, menu, "page", "city")
        answer = await typed(api, chat, alice, "Atlantis")
        assert answer["text"] == view.CITY_NOT_FOUND.format(query="Atlantis")
        answer = await typed(api, chat, alice, "san")  # still asked: another try
        assert answer["text"] == view.CITY_CHOOSE
        choices = buttons(answer)
        assert ("America/Santiago".replace("_", " "), view.press_data(ALICE, "tz", "America/Santiago")) in choices
        await press(api, chat, alice, answer, "tz", "America/Santiago")
        assert (await store.person_settings(ALICE)).time_zone == "America/Santiago"

        # Answered: the next text is a message to the companion again.
        api.send_text(chat, alice, "Paris is lovely")
        await api.wait_for(lambda fake: "echo: Paris is lovely" in fake.sent_texts(chat["id"]))
    stored = rows(tmp_path / "bot.db", "SELECT text FROM messages WHERE role = 'user'")
    assert stored == [("Paris is lovely",)], "typed cities are answers to the bot, not messages"
    assert engine.classified == ["Paris is lovely"] and [m for _, m in engine.seen_histories] == ["Paris is lovely"]


# -- /settings in a group ----------------------------------------------------------------------------------------


async def test_in_a_group_a_button_opens_the_settings_privately(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(ALICE, "Alice")
    group = api.group_chat()
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        answer = await open_menu(api, group, alice)
        link = f"https://t.me/{BOT_USER['username']}?start=settings"
        assert buttons(answer) == [(view.OPEN_PRIVATELY_BUTTON, link)]
        assert answer["text"] == view.OPEN_PRIVATELY_TEXT
        chat = api.private_chat(alice)
        api.send_command(chat, alice, "/start settings")  # what the link makes Telegram send
        [menu] = await api.wait_for_messages(chat["id"])
    assert menu["text"].startswith(view.TITLE)
    assert {"command": "settings", "description": "Language, time zone, check-ins, reply length"} in api.commands()


# -- what the settings change ------------------------------------------------------------------------------------


def near_midnight_in_shanghai() -> tuple[float, float]:
    """Two times an hour apart on one UTC day, on two days in Shanghai: 23:30 and 00:30 there, yesterday night."""
    shanghai = ZoneInfo("Asia/Shanghai")
    midnight = datetime.combine(datetime.now(shanghai).date() - timedelta(days=1), time(0), tzinfo=shanghai)
    return (midnight - timedelta(minutes=30)).timestamp(), (midnight + timedelta(minutes=30)).timestamp()


async def mood_text(api: FakeBotApi, chat: dict, user: dict) -> str:
    before = len(api.sent_messages(chat["id"]))
    api.send_command(chat, user, "/mood 7d")
    messages = await api.wait_for_messages(chat["id"], before + 1)
    return messages[before].get("caption", messages[before].get("text", ""))


async def test_mood_counts_days_in_the_askers_time_zone(api: FakeBotApi, tmp_path: Path) -> None:
    alice, bob = api.user(ALICE, "Alice"), api.user(BOB, "Bob")
    chat, group = api.private_chat(alice), api.group_chat()
    late, early = near_midnight_in_shanghai()
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        store = store_of(application)
        for chat_id in (ALICE, group["id"]):
            for at, label, score in ((late, "positive", 0.8), (early, "negative", -0.8)):
                stored = await store.add_user_message(
                    chat_id=chat_id, user_id=ALICE, text=label, telegram_message_id=None, created_at=at
                )
                await store.add_sentiment(stored.id, SentimentRecord(label, score, {}, "scripted"))
        assert "Best day:" not in await mood_text(api, chat, alice), "in UTC both fall on one day"
        await store.update_settings(ALICE, time_zone="Asia/Shanghai")
        assert "Best day:" in await mood_text(api, chat, alice), "in Shanghai they are two days"
        # In a group, the days are the asker's.
        assert "Best day:" in await mood_text(api, group, alice)
        assert "Best day:" not in await mood_text(api, group, bob)


async def test_with_mood_analysis_off_messages_are_answered_but_never_analysed(
    api: FakeBotApi, tmp_path: Path
) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    engine = ScriptedEngine()
    config = config_for(api, tmp_path)
    database = tmp_path / "bot.db"
    async with running_bot(config, engine=engine) as application:
        menu = await open_menu(api, chat, alice)
        menu = await press(api, chat, alice, menu, "page", "mood")
        await press(api, chat, alice, menu, "mood", "off")
        api.send_text(chat, alice, "a good day")
        await api.wait_for(lambda fake: "echo: a good day" in fake.sent_texts(chat["id"]))
        message_id = api.send_text(chat, alice, "a bad day")
        await api.wait_for(lambda fake: "echo: a bad day" in fake.sent_texts(chat["id"]))
        api.edit_text(chat, alice, message_id, "a bad, bad day")
        api.send_text(chat, alice, "I want to hurt myself")  # the care floor needs no analysis
        await api.wait_for(lambda fake: config.care.message in fake.sent_texts(chat["id"]))
        assert await application.bot_data[SERVICES_KEY].conversations.backfill() == 0
        note = await mood_text(api, chat, alice)
    assert engine.classified == [], "the analyst was never called"
    assert rows(database, "SELECT COUNT(*) FROM sentiments") == [(0,)]
    assert rows(database, "SELECT COUNT(*) FROM pending_moods") == [(0,)]
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE role = 'assistant'") == [(3,)]
    assert note.startswith(view.ANALYSIS_OFF_NOTE)

    async with running_bot(config, engine=engine) as application:  # the back-fill job runs at start
        await application.bot_data[SERVICES_KEY].store.update_settings(ALICE, analyse_mood=True)
        assert await application.bot_data[SERVICES_KEY].conversations.backfill() == 0, "no retro-classification"
        api.send_text(chat, alice, "a good evening")
        await api.wait_for(lambda fake: "echo: a good evening" in fake.sent_texts(chat["id"]))
        assert not (await mood_text(api, chat, alice)).startswith(view.ANALYSIS_OFF_NOTE)
    assert engine.classified == ["a good evening"]


async def test_short_replies_reach_the_engine(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    engine = ScriptedEngine()
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(chat, alice, "before")
        await final_texts(api, chat["id"], 1)
        menu = await open_menu(api, chat, alice)
        menu = await press(api, chat, alice, menu, "page", "len")
        await press(api, chat, alice, menu, "len", "short")
        api.send_text(chat, alice, "after")
        await api.wait_for(lambda fake: "echo: after" in fake.sent_texts(chat["id"]))
    assert engine.seen_lengths == ["normal", "short"]


async def test_export_shows_a_changed_setting(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(ALICE, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(chat, alice, "hello")
        await final_texts(api, chat["id"], 1)
        menu = await open_menu(api, chat, alice)
        menu = await press(api, chat, alice, menu, "page", "tz")
        await press(api, chat, alice, menu, "tz", "Asia/Taipei")
        api.send_command(chat, alice, "/export")
        [export] = await api.wait_for_call("sendDocument")
    assert json.loads(export.files["document"])["settings"]["time_zone"] == "Asia/Taipei"

