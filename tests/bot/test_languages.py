"""Each person hears the bot in their language, through the fake Bot API: their stored choice, else their Telegram
app's language, else ``[bot] default_language``; a group's /mood in the language of whoever asked; menus and
descriptions in every language."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import BotConfig, ConfigError, LimitsConfig, config_from_dict
from bot.i18n import translate
from bot.telegram.context import SERVICES_KEY
from bot.views import about, texts
from bot.views import checkins as checkin_view
from bot.views.telegram_text import html_to_plain
from storage import Store
from tests.support.clock import Clock
from tests.support.e2e import MENTION, answered, config_for, last_message_with, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine


def zh(message: str, **values: object) -> str:
    """``message`` as a Chinese reader gets it."""
    return translate("zh", message, **values)


def buttons(message: dict[str, Any]) -> list[str]:
    """The labels of a message's inline buttons."""
    return [button["text"] for row in message["reply_markup"]["inline_keyboard"] for button in row]


async def mood_caption(api: FakeBotApi, count: int) -> str:
    """The caption of the ``count``-th /mood chart the bot sent."""
    calls = await api.wait_for_call("sendPhoto", count=count)
    return calls[count - 1].params["caption"]


async def test_a_chinese_reader_gets_chinese_and_an_english_one_english(api: FakeBotApi, tmp_path: Path) -> None:
    li, alice = api.user(1, "小李", language_code="zh-hans"), api.user(2, "Alice", language_code="en")
    li_chat, alice_chat = api.private_chat(li), api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        for chat, person in ((li_chat, li), (alice_chat, alice)):
            api.send_command(chat, person, "/start")
            api.send_command(chat, person, "/help")
            api.send_text(chat, person, "a good day")
            api.send_command(chat, person, "/mood")
            api.send_command(chat, person, "/privacy")
            api.send_command(chat, person, "/forget")
        li_forget = await last_message_with(api, li_chat, zh(texts.FORGET_CONFIRM_TEXT))
        alice_forget = await last_message_with(api, alice_chat, texts.FORGET_CONFIRM_TEXT)
    li_texts = [m.get("text", m.get("caption")) for m in api.sent_messages(1)]
    li_caption, alice_caption = (next(m for m in api.sent_messages(chat) if "photo" in m) for chat in (1, 2))
    assert li_texts[0] == zh(texts.START_TEXT, name="小李") and li_texts[1] == zh(checkin_view.OFFER)
    assert html_to_plain(zh(texts.HELP_HTML)) in li_texts and "echo: a good day" in li_texts
    assert li_caption["caption"].startswith("你最近 7 天的心情") and "消息：1 条" in li_caption["caption"]
    assert "积极 100%" in li_caption["caption"] and buttons(li_caption) == ["✏️ 修正心情"]
    assert li_texts[-2].startswith("🔒 我会保存什么")
    assert buttons(li_forget) == ["是的，全部删除", "取消"]
    alice_texts = [m.get("text", m.get("caption")) for m in api.sent_messages(2)]
    assert alice_texts[:2] == [texts.START_TEXT.format(name="Alice"), checkin_view.OFFER]
    assert alice_caption["caption"].startswith("Your mood over the last 7 days")
    assert alice_texts[-2].startswith("🔒 What I keep")
    assert buttons(alice_forget) == [texts.FORGET_YES_BUTTON, texts.FORGET_NO_BUTTON]
    charts = {call.params["chat_id"]: call.files["photo"] for call in api.calls_of("sendPhoto")}
    assert charts[1] != charts[2], "the same day's chart, with Chinese and English words"


async def test_a_stored_choice_beats_telegrams_language(api: FakeBotApi, tmp_path: Path) -> None:
    li, alice = api.user(1, "小李", language_code="zh-CN"), api.user(2, "Alice", language_code="en-GB")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        store = application.bot_data[SERVICES_KEY].store
        await store.update_settings(1, language="en")
        await store.update_settings(2, language="zh")
        api.send_command(api.private_chat(li), li, "/reset")
        api.send_command(api.private_chat(alice), alice, "/reset")
        await last_message_with(api, api.private_chat(li), texts.RESET_TEXT)
        await last_message_with(api, api.private_chat(alice), zh(texts.RESET_TEXT))


async def test_the_default_language_is_for_codes_the_bot_does_not_speak(api: FakeBotApi, tmp_path: Path) -> None:
    pierre, nobody = api.user(1, "Pierre", language_code="fr"), api.user(2, "Anon", language_code=None)
    config = replace(config_for(api, tmp_path), bot=BotConfig(default_language="zh"))
    async with running_bot(config, engine=ScriptedEngine(busy=True)):
        api.send_text(api.private_chat(pierre), pierre, "bonjour")
        api.send_sticker(api.private_chat(nobody), nobody)
        await last_message_with(api, api.private_chat(pierre), zh(texts.BUSY_TEXT))
        await last_message_with(api, api.private_chat(nobody), zh(texts.NON_TEXT_REPLIES["sticker"]))


async def test_refusals_and_slow_downs_are_in_the_senders_language(api: FakeBotApi, tmp_path: Path) -> None:
    stranger, member = api.user(5, "陌生人", language_code="zh-hant"), api.user(1, "小李", language_code="zh")
    limits = LimitsConfig(messages_per_minute=1, burst=1)
    async with running_bot(config_for(api, tmp_path, allowed_user_ids=(1,), limits=limits), engine=ScriptedEngine()):
        api.send_text(api.private_chat(stranger), stranger, "你好")
        await last_message_with(api, api.private_chat(stranger), texts.refusal_text(5, "zh"))
        chat = api.private_chat(member)
        api.send_text(chat, member, "a good day")
        api.send_text(chat, member, "a good evening")
        slow = await last_message_with(api, chat, "请稍微慢一点")
    assert slow["text"] in {zh(texts.SLOW_DOWN_TEXT, seconds=seconds) for seconds in range(1, 61)}
    assert "用户 ID" in texts.refusal_text(5, "zh")


async def test_in_a_group_each_person_hears_their_own_language(api: FakeBotApi, tmp_path: Path) -> None:
    li, bob = api.user(1, "小李", language_code="zh"), api.user(2, "Bob", language_code="en")
    group = api.group_chat(-100700, "朋友们")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(group, li, f"{MENTION} a good day")
        api.send_text(group, bob, f"{MENTION} a bad day")
        api.send_command(group, bob, "/mood")
        bob_caption = await mood_caption(api, 1)
        api.send_command(group, li, "/mood")
        li_caption = await mood_caption(api, 2)
        li_mood = api.sent_messages(group["id"])[-1]
        # Bob presses the button under 小李's /mood: the alert is his, in English.
        query = api.press_button(group, bob, li_mood["message_id"], button_text="✏️ 修正心情")
        alert = await answered(api, query)
    assert bob_caption.startswith("This chat's mood over the last 7 days") and "Bob 😢" in bob_caption
    assert li_caption.startswith("本群最近 7 天的心情") and "谁说了话（最活跃的在前）：" in li_caption
    assert "小李 😄 +0.80 (1 条)" in li_caption
    assert alert["text"] == texts.FIX_LIST_NOT_YOURS_TEXT


async def test_menus_and_descriptions_are_set_in_every_language(api: FakeBotApi, tmp_path: Path) -> None:
    async with running_bot(config_for(api, tmp_path, admin_user_ids=(7,)), engine=ScriptedEngine()):
        pass
    english = [c["command"] for c in api.commands()]
    assert english == ["mood", "reset", "forget", "export", "settings", "privacy", "help", "start"]
    chinese = {c["command"]: c["description"] for c in api.commands(language_code="zh")}
    assert list(chinese) == english and chinese["mood"] == "我的心情变化（7d、30d、90d、all）"
    admin = {"type": "chat", "chat_id": 7}
    assert [c["command"] for c in api.commands(admin)] == [*english, "stats"]
    assert api.commands(admin, "zh")[-1]["description"] == zh(about.ADMIN_COMMANDS[0][1])
    assert api.descriptions == {"": about.DESCRIPTION, "zh": zh(about.DESCRIPTION)}
    assert api.short_descriptions == {"": about.SHORT_DESCRIPTION, "zh": zh(about.SHORT_DESCRIPTION)}
    assert zh(about.DESCRIPTION) != about.DESCRIPTION


async def test_a_menu_telegram_refuses_does_not_stop_the_bot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An admin who never opened a chat with the bot: Telegram has no chat to scope their menu to.
    async with FakeBotApi(strict_private_chats=True) as api:
        config = config_for(api, tmp_path, admin_user_ids=(404,))
        alice = api.user(1, "Alice")
        async with running_bot(config, engine=ScriptedEngine()):
            api.send_command(api.private_chat(alice), alice, "/help")
            await api.wait_for_messages(1, count=1)
        assert api.commands({"type": "chat", "chat_id": 404}) == [] and api.commands() != []
    assert "could not set the bot's admin 404's command menu" in caplog.text


async def test_scheduled_check_ins_speak_the_chosen_language_else_the_default(api: FakeBotApi, tmp_path: Path) -> None:
    config = replace(config_for(api, tmp_path), bot=BotConfig(default_language="zh"))
    async with await Store.open(config.storage.database) as store:
        for user_id, language in ((1, "en"), (2, None)):  # no update to read Telegram's code from: the default
            await store.update_settings(user_id, language=language, checkin_enabled=True, checkin_time="20:00")
    clock = Clock(datetime(2026, 6, 1, 20, 0, tzinfo=UTC))
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        [job] = application.job_queue.get_jobs_by_name("check-ins")  # type: ignore[union-attr]
        await job.data.tick()
    assert api.sent_texts(1) == [checkin_view.QUESTION] and api.sent_texts(2) == [zh(checkin_view.QUESTION)]


def test_the_default_language_is_checked() -> None:
    assert config_from_dict({"bot": {"default_language": "zh"}}).bot.default_language == "zh"
    with pytest.raises(ConfigError, match=r"bot\.default_language: must be one of en, zh"):
        config_from_dict({"bot": {"default_language": "fr"}})
