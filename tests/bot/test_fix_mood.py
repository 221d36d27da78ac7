""""Fix a mood" through the fake Bot API with the scripted engine: the button under /mood, the list it sends (only
ever privately, only the presser's own messages), a face press changing /mood at once, the export showing the
person's label beside the model's, /forget deleting it, edits keeping it; and the pure helpers (previews, callback
data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.i18n import LANGUAGES, translate
from bot.telegram import fix_mood
from bot.views import fix_mood as fix_view
from bot.views import texts
from bot.views.telegram_text import telegram_length
from storage import LabelledMessage
from tests.support.e2e import MENTION, answered, config_for, eventually, last_message_with, rows, running_bot
from tests.support.fakebotapi import BOT_USER, FakeBotApi
from tests.support.fakeengine import ScriptedEngine

DISTINCTIVE = "pangolin-9d2e"  # Alice's words, to be looked for byte by byte
CORRECTIONS = "SELECT m.text, c.label FROM corrections AS c JOIN messages AS m ON m.id = c.message_id ORDER BY m.id"


async def say(api: FakeBotApi, chat: dict, user: dict, text: str) -> None:
    """Send ``text`` and wait until the bot's echo is complete."""
    api.send_text(chat, user, text)
    expected = f"echo: {text.replace(MENTION, '').strip()}"
    await api.wait_for(lambda fake: expected in fake.sent_texts(chat["id"]))


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


def data_of(message: dict[str, Any], button_text: str) -> str:
    return dict(buttons(message))[button_text]


async def mood_answer(api: FakeBotApi, chat: dict, user: dict) -> dict[str, Any]:
    """Ask /mood; return its answer, which carries the "Fix a mood" button (the chart with its caption)."""
    before = len(api.sent_messages(chat["id"]))
    api.send_command(chat, user, "/mood")

    def new_answer(fake: FakeBotApi) -> dict[str, Any] | None:
        sent = fake.sent_messages(chat["id"])[before:]
        return next((m for m in sent if "mood over" in m.get("caption", "")), None)

    return await api.wait_for(new_answer)


def database_files(database: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in database.parent.iterdir() if path.is_file()}


# -- the whole flow in a private chat -----------------------------------------------------------------------------


async def test_a_fix_changes_mood_at_once_is_exported_and_forget_removes_it(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, chat, alice, "a good day")
        await say(api, chat, alice, "a bad night")
        await say(api, chat, alice, f"my {DISTINCTIVE} went missing")  # the scripted engine: neutral
        answer = await mood_answer(api, chat, alice)
        assert "33% positive · 😐 33% neutral · 😟 33% negative" in answer["caption"]
        assert buttons(answer) == [(texts.FIX_MOOD_BUTTON, "fixlist:1")]

        query = api.press_button(chat, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        listed = await last_message_with(api, chat, "Fix a mood –")
        assert (await answered(api, query)).get("text") is None, "in a private chat the list itself is the answer"
        assert listed["text"].split("\n")[2:] == [
            "1. “a good day” – 🙂 positive (my guess)",
            "2. “a bad night” – 🙁 negative (my guess)",
            f"3. “my {DISTINCTIVE} went missing” – 😐 neutral (my guess)",
        ]
        assert [text for text, _ in buttons(listed)] == [f"{n} {face}" for n in (1, 2, 3) for face in "🙂😐🙁"]

        query = api.press_button(chat, alice, listed["message_id"], button_text="3 🙂")
        edited = await last_message_with(api, chat, "(set by you)")
        assert (await answered(api, query))["text"] == fix_view.saved_text("positive")
        assert edited["message_id"] == listed["message_id"], "the list itself shows the new state"
        assert edited["text"].split("\n")[-1] == f"3. “my {DISTINCTIVE} went missing” – 🙂 positive (set by you)"
        assert buttons(edited) == buttons(listed)
        assert rows(database, CORRECTIONS) == [(f"my {DISTINCTIVE} went missing", "positive")]
        assert rows(database, "SELECT label FROM sentiments ORDER BY message_id DESC LIMIT 1") == [("neutral",)]

        answer = await mood_answer(api, chat, alice)
        assert "67% positive · 😐 0% neutral · 😟 33% negative" in answer["caption"], "/mood counts it at once"
        assert "average score +0.33" in answer["caption"], "(0.8 - 0.8 + 1) / 3: the person's label counts as certain"

        api.send_command(chat, alice, "/export")
        [export] = await api.wait_for_call("sendDocument")
        data = json.loads(export.files["document"])
        fixed = next(m for m in data["messages"] if DISTINCTIVE in m["text"])
        assert fixed["sentiment"]["label"] == "neutral" and fixed["your_label"]["label"] == "positive"
        assert [m["your_label"] for m in data["messages"] if m is not fixed] == [None] * 5
        assert data["about"] == texts.export_about("en") == texts.EXPORT_ABOUT

        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, texts.FORGET_CONFIRM_TEXT)
        api.press_button(chat, alice, confirm["message_id"], "forget:yes:1")
        await last_message_with(api, chat, "deleted everything")
        # Still running: no close-time checkpoint has helped.
        assert rows(database, "SELECT COUNT(*) FROM corrections") == [(0,)]
        files = database_files(database)
        assert set(files) >= {"bot.db", "bot.db-wal", "bot.db-shm"}
        assert [name for name, data in files.items() if DISTINCTIVE.encode() in data] == []


async def test_a_press_on_a_forgotten_message_answers_politely(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, chat, alice, "a good day")
        answer = await mood_answer(api, chat, alice)
        api.press_button(chat, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        listed = await last_message_with(api, chat, "Fix a mood –")
        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, texts.FORGET_CONFIRM_TEXT)
        api.press_button(chat, alice, confirm["message_id"], "forget:yes:1")
        await last_message_with(api, chat, "deleted everything")

        query = api.press_button(chat, alice, listed["message_id"], button_text="1 🙁")
        reply = await answered(api, query)
        query = api.press_button(chat, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        nothing = await answered(api, query)
    assert reply["text"] == texts.FIX_GONE_TEXT and reply.get("show_alert") is True
    assert nothing["text"] == texts.FIX_NOTHING_TEXT
    assert not [c for c in api.calls_of("editMessageText") if c.params["message_id"] == listed["message_id"]]
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM corrections") == [(0,)]


async def test_an_edit_re_classifies_but_keeps_the_persons_label(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        telegram_id = api.send_text(chat, alice, "a good day")
        await api.wait_for(lambda fake: "echo: a good day" in fake.sent_texts(1))
        answer = await mood_answer(api, chat, alice)
        api.press_button(chat, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        listed = await last_message_with(api, chat, "Fix a mood –")
        api.press_button(chat, alice, listed["message_id"], button_text="1 🙁")
        await last_message_with(api, chat, "(set by you)")

        api.edit_text(chat, alice, telegram_id, "a good day after all")
        await eventually(lambda: rows(database, "SELECT s.label FROM messages AS m JOIN sentiments AS s "
                                            "ON s.message_id = m.id WHERE m.text = 'a good day after all'"))
        answer = await mood_answer(api, chat, alice)
    assert rows(database, CORRECTIONS) == [("a good day after all", "negative")]
    assert "100% negative" in answer["caption"], "the person's label still counts after the edit"


# -- privacy: groups and other people -----------------------------------------------------------------------------


async def test_a_group_mood_sends_the_fix_list_privately_with_only_the_pressers_messages(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.strict_private_chats = True  # as on Telegram: the bot may write only to people who opened a chat with it
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat(title="Friends")
    private = api.private_chat(alice)  # Alice has started the bot before
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        await say(api, group, bob, f"{MENTION} Bob's secret")
        answer = await mood_answer(api, group, alice)
        assert buttons(answer) == [(texts.FIX_MOOD_BUTTON, "fixlist:1")]
        sent_before = len(api.sent_messages(group["id"]))

        query = api.press_button(group, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        listed = await last_message_with(api, private, "Fix a mood –")
        assert (await answered(api, query))["text"] == texts.FIX_SENT_PRIVATELY_TEXT
        assert listed["text"].split("\n")[0] == texts.FIX_LIST_GROUP_HEADER.format(chat="“Friends”")
        assert listed["text"].split("\n")[2:] == ["1. “a good day” – 🙂 positive (my guess)"]

        query = api.press_button(private, alice, listed["message_id"], button_text="1 😐")
        await last_message_with(api, private, "😐 neutral (set by you)")
        answer = await mood_answer(api, group, alice)
    assert "Alice 😐 +0.00 (1 msg)" in answer["caption"], "the group's /mood counts her label too"
    assert "Bob's secret" not in "".join(api.sent_texts(private["id"]))
    group_texts = api.sent_texts(group["id"])[sent_before:]
    assert len(group_texts) == 1 and group_texts[0] == answer["caption"], "the group got nothing but the new /mood"
    assert not [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == group["id"]
                and "Fix a mood –" in c.params["text"]]


async def test_a_group_fix_list_for_someone_who_never_started_the_bot_stays_out_of_the_group(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.strict_private_chats = True
    alice = api.user(1, "Alice")
    group = api.group_chat()
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        answer = await mood_answer(api, group, alice)
        sent_before = len(api.sent_messages(group["id"]))
        query = api.press_button(group, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        alert = await answered(api, query)
    assert alert["text"] == texts.fix_open_private_chat_text(BOT_USER["username"]) and alert["show_alert"] is True
    [refused] = [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == 1]
    assert refused.status == 403, "Telegram refused the private chat"
    assert len(api.sent_messages(group["id"])) == sent_before, "no list and no notice in the group"


async def test_someone_elses_press_does_nothing_but_a_polite_answer(api: FakeBotApi, tmp_path: Path) -> None:
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat()
    alices_chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        await say(api, group, bob, f"{MENTION} a bad day")
        answer = await mood_answer(api, group, alice)
        sends_before = len(api.calls_of("sendMessage"))

        bobs_press = api.press_button(group, bob, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        bobs_answer = await answered(api, bobs_press)
        assert bobs_answer["text"] == texts.FIX_LIST_NOT_YOURS_TEXT and bobs_answer["show_alert"] is True
        assert len(api.calls_of("sendMessage")) == sends_before, "no list for Bob, to nobody"

        api.press_button(group, alice, answer["message_id"], button_text=texts.FIX_MOOD_BUTTON)
        listed = await last_message_with(api, alices_chat, "Fix a mood –")
        # A press carrying the id of Alice's message, by Bob (a forged button, or a client that lies).
        forged = api.press_button(alices_chat, bob, listed["message_id"], button_text="1 🙁")
        forged_answer = await answered(api, forged)
    assert forged_answer["text"] == texts.FIX_NOT_YOURS_TEXT and forged_answer["show_alert"] is True
    assert rows(database, "SELECT COUNT(*) FROM corrections") == [(0,)]
    assert not [c for c in api.calls_of("editMessageText") if c.params["chat_id"] == 1], "the list stays as it was"


# -- the pure parts -----------------------------------------------------------------------------------------------


def labelled(text: str, model: str | None = "neutral", person: str | None = None) -> LabelledMessage:
    return LabelledMessage(1, 1, "private", None, text, 0.0, model, person)


def test_previews_are_one_line_and_cut_by_utf16_length_without_splitting_a_character() -> None:
    assert fix_view.preview("a\tgood\n\nday  ") == "a good day"
    long_emoji = fix_view.preview("😄" * 100)
    assert telegram_length(long_emoji) <= fix_view.PREVIEW_LIMIT and long_emoji.endswith("…")
    assert long_emoji[:-1] == "😄" * ((fix_view.PREVIEW_LIMIT - 1) // 2), "whole emoji only"
    text = fix_view.fix_list_text([labelled("x" * 500, person="negative"), labelled("hi", model=None)])
    assert text.split("\n")[2:] == [f"1. “{'x' * 47}…” – 🙁 negative (set by you)", "2. “hi” – not rated yet"]


def test_callback_data_is_opaque_short_and_parsed_strictly() -> None:
    biggest = 2**63 - 1
    for data in (fix_mood.fix_data(biggest, "negative"), fix_mood.fix_list_data(-biggest)):
        assert len(data.encode()) <= 64
    assert fix_mood.parse_fix_data(fix_mood.fix_data(17, "neutral")) == (17, "neutral")
    assert fix_mood.parse_fix_list_data(fix_mood.fix_list_data(42)) == 42
    for bad in ("fix:17:great", "fix:x:neutral", "fix:17", "fixlist:1", None, "fix:17:neutral:1"):
        assert fix_mood.parse_fix_data(bad) is None
    for bad in ("fixlist:", "fixlist:x", "fix:1:positive", None):
        assert fix_mood.parse_fix_list_data(bad) is None


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("username", ["moodbot_test_bot", "a" * 32, None])
def test_every_answer_to_a_press_fits_telegrams_200_characters(username: str | None, language: str) -> None:
    answers = [
        *(
            translate(language, text) for text in (
                texts.FIX_NOT_YOURS_TEXT, texts.FIX_LIST_NOT_YOURS_TEXT, texts.FIX_GONE_TEXT, texts.FIX_NOTHING_TEXT,
                texts.FIX_SENT_PRIVATELY_TEXT, texts.FORGET_NOT_YOURS_TEXT,
            )
        ),
        texts.refusal_text(2**63 - 1, language),
        texts.fix_open_private_chat_text(username, language),
        *(fix_view.saved_text(label, language) for label in fix_view.FACES),
    ]
    assert max(len(answer) for answer in answers) <= 200
