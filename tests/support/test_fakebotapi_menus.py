"""The fake Bot API's command menus per scope and language, and the bot's descriptions, as Telegram keeps them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot, BotCommandScopeAllGroupChats, BotCommandScopeChat
from telegram.error import BadRequest

from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi


@pytest.fixture
async def bot(api: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(TEST_TOKEN, base_url=api.base_url) as started:
        yield started


async def test_menus_are_kept_apart_by_scope_and_language(api: FakeBotApi, bot: Bot) -> None:
    api.private_chat(api.user(7, "Admin"))
    await bot.set_my_commands([("mood", "My mood")])
    await bot.set_my_commands([("mood", "我的心情")], language_code="zh")
    await bot.set_my_commands([("mood", "My mood"), ("stats", "Stats")], scope=BotCommandScopeChat(7))
    await bot.set_my_commands([("help", "Help")], scope=BotCommandScopeAllGroupChats())
    assert api.commands() == [{"command": "mood", "description": "My mood"}]
    assert api.commands(language_code="zh") == [{"command": "mood", "description": "我的心情"}]
    assert [c["command"] for c in api.commands({"type": "chat", "chat_id": 7})] == ["mood", "stats"]
    assert set(api.command_menus()) == {("default", ""), ("default", "zh"), ("chat:7", ""), ("all_group_chats", "")}
    await bot.set_my_commands([], language_code="zh")  # deleting it: Chinese readers see the default again
    assert api.commands(language_code="zh") == []
    with pytest.raises(BadRequest, match=r"(?i)language code"):
        await bot.set_my_commands([("mood", "x")], language_code="chinese")


async def test_a_chat_scope_needs_a_chat_the_bot_can_see() -> None:
    api_strict = FakeBotApi(strict_private_chats=True)
    async with api_strict, Bot(TEST_TOKEN, base_url=api_strict.base_url) as strict:
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await strict.set_my_commands([("stats", "Stats")], scope=BotCommandScopeChat(404))
        assert api_strict.command_menus() == {}


async def test_descriptions_per_language(api: FakeBotApi, bot: Bot) -> None:
    await bot.set_my_description("A friendly ear.")
    await bot.set_my_description("倾听者。", language_code="zh")
    await bot.set_my_short_description("Friendly.", language_code="zh")
    assert api.descriptions == {"": "A friendly ear.", "zh": "倾听者。"}
    assert api.short_descriptions == {"zh": "Friendly."}
    with pytest.raises(BadRequest, match=r"(?i)too long"):
        await bot.set_my_short_description("x" * 121)
    await bot.set_my_description("", language_code="zh")
    assert api.descriptions == {"": "A friendly ear."}
