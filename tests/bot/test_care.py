"""Care when it matters: a message signalling a crisis gets help resources in its language, and the event is logged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.config import DEFAULT_CARE_MESSAGE, DEFAULT_CARE_MESSAGE_ZH, CareConfig, ConfigError, config_from_dict
from bot.views import texts as bot_texts
from engine.roles.care_phrases import FLOOR, has_crisis_phrase, with_phrase_floor
from tests.support.e2e import answered, config_for, final_texts, last_message_with, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine


def care_rows(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT m.text, c.probability FROM care_events c JOIN messages m ON m.id = c.message_id ORDER BY m.id"
        ).fetchall()


async def test_a_crisis_message_gets_the_reply_then_help_and_is_logged(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    config = config_for(api, tmp_path)
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_text(chat, alice, "some days I want to hurt myself")
        texts = await final_texts(api, chat["id"], 2)
        api.send_text(chat, alice, "a good day")
        await final_texts(api, chat["id"], 3)
    assert texts == ["echo: some days I want to hurt myself", DEFAULT_CARE_MESSAGE]
    assert care_rows(config.storage.database) == [("some days I want to hurt myself", 0.9)]
    assert api.sent_texts(chat["id"])[2] == "echo: a good day", "an ordinary message gets no help message"


async def test_the_help_message_follows_the_persons_language(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(chat, alice, "我真的不想活了")
        texts = await final_texts(api, chat["id"], 2)
    assert texts[1] == DEFAULT_CARE_MESSAGE_ZH


async def test_help_is_sent_even_when_the_engine_is_too_busy_to_reply(api: FakeBotApi, tmp_path: Path) -> None:
    class BusyReplies(ScriptedEngine):
        def reply(self, history, message, *, length="normal"):  # type: ignore[no-untyped-def]
            from engine import EngineBusy

            raise EngineBusy()

    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    custom = CareConfig(message="Call 555-0100, any time.")
    config = config_for(api, tmp_path, care=custom)
    async with running_bot(config, engine=BusyReplies()):
        api.send_text(chat, alice, "I want to hurt myself")
        texts = await final_texts(api, chat["id"], 2)
    assert texts[1] == "Call 555-0100, any time."
    assert len(care_rows(config.storage.database)) == 1


async def test_care_can_be_turned_off(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    config = config_for(api, tmp_path, care=CareConfig(enabled=False))
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_text(chat, alice, "I want to hurt myself")
        await final_texts(api, chat["id"], 1)
        api.send_text(chat, alice, "a good day")
        texts = await final_texts(api, chat["id"], 2)
    assert texts == ["echo: I want to hurt myself", "echo: a good day"]
    assert care_rows(config.storage.database) == []
    with sqlite3.connect(config.storage.database) as db:  # the probability is still kept with the mood
        assert db.execute("SELECT MAX(care) FROM sentiments").fetchone() == (0.9,)


async def test_export_shows_the_care_event_and_forget_deletes_it(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    config = config_for(api, tmp_path)
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_text(chat, alice, "I want to hurt myself")
        await final_texts(api, chat["id"], 2)
        api.send_command(chat, alice, "/export")
        [call] = await api.wait_for_call("sendDocument")
        data = json.loads(call.files["document"])
        first = data["messages"][0]
        assert first["sentiment"]["care"] == 0.9 and first["help_offered_at"] is not None
        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, bot_texts.FORGET_CONFIRM_TEXT)
        query_id = api.press_button(chat, alice, confirm["message_id"], "forget:yes:1")
        await last_message_with(api, chat, "deleted everything")
        assert await answered(api, query_id)
    assert care_rows(config.storage.database) == []


@pytest.mark.parametrize(
    ("values", "key"),
    [({"threshold": 0}, "care.threshold"), ({"threshold": 1.5}, "care.threshold"), ({"message": " "}, "care.message"),
     ({"enabled": "yes"}, "care.enabled")],
)
def test_care_config_errors_name_the_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict({"care": values})


@pytest.mark.parametrize(
    "text",
    ["I've been thinking about killing myself", "i want to die", "I don't want to live anymore", "我不想活了",
     "我想自杀", "suicidal thoughts again"],
)
def test_explicit_crisis_phrases_are_floored_high(text: str) -> None:
    assert has_crisis_phrase(text)
    assert with_phrase_floor(text, 0.1) == FLOOR


@pytest.mark.parametrize(
    "text",
    ["This traffic is killing me", "I'm dying to see the new movie!", "I wanted to die of embarrassment, haha",
     "今天加班到很晚，累死了。", "这部电影笑死我了。", "What a killer soundtrack"],
)
def test_figures_of_speech_are_not_crisis_phrases(text: str) -> None:
    assert not has_crisis_phrase(text)
    assert with_phrase_floor(text, 0.3) == 0.3
