"""Who may use the bot and how fast, through the fake Bot API with a scripted engine: ``allowed_chat_ids``,
``admin_user_ids`` and ``/stats``, the per-user rate limit, and the plain-text resend of a formatted message that
Telegram can't parse. The rate limiter's own arithmetic is tested on a fake clock."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from telegram.ext import Application

from bot.config import OPEN_BOT_WARNING, GroupsConfig, LimitsConfig
from bot.telegram import jobs
from bot.telegram.context import SERVICES_KEY
from bot.telegram.ratelimit import PRUNE_EVERY, RateLimiter
from bot.views import privacy as privacy_view
from bot.views import telegram_text
from bot.views import texts as bot_texts
from tests.support.e2e import MENTION, config_for, last_message_with, rows, running_bot
from tests.support.fakebotapi import ApiError, FakeBotApi, parse_html
from tests.support.fakeengine import ScriptedEngine


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- allowlists ----------------------------------------------------------------------------------------------------


async def test_an_allowed_chat_admits_a_stranger_there_and_nowhere_else(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice, eve = api.user(1, "Alice"), api.user(5, "Eve")
    allowed, other = api.group_chat(-1001, "Allowed"), api.group_chat(-1002, "Other")
    config = config_for(api, tmp_path, allowed_user_ids=(1,), allowed_chat_ids=(-1001,))
    async with running_bot(config, engine=engine):
        api.send_text(allowed, eve, f"{MENTION} a good day")
        await last_message_with(api, allowed, "echo: a good day")
        eve_private = api.private_chat(eve)
        api.send_text(eve_private, eve, "a bad day")
        api.send_text(eve_private, eve, "still there?")
        api.send_command(eve_private, eve, "/mood")
        await last_message_with(api, eve_private, bot_texts.refusal_text(5))
        api.send_text(other, eve, f"{MENTION} hello?")
        api.send_text(other, alice, f"{MENTION} a good morning")  # Alice is allowed everywhere
        await last_message_with(api, other, "echo: a good morning")
    assert api.sent_texts(eve_private["id"]) == [bot_texts.refusal_text(5)], "one refusal, however often she writes"
    assert api.sent_texts(other["id"]) == ["echo: a good morning"], "no second refusal in another chat"
    assert sorted(engine.classified) == ["a good day", "a good morning"], "no model work for refused messages"
    assert rows(tmp_path / "bot.db", "SELECT chat_id, text FROM messages WHERE role = 'user' ORDER BY id") == [
        (-1001, "a good day"), (-1002, "a good morning")
    ]


async def test_group_chatter_of_a_refused_user_gets_no_refusal_and_is_not_logged(
    api: FakeBotApi, tmp_path: Path
) -> None:
    alice, eve = api.user(1, "Alice"), api.user(5, "Eve")
    group = api.group_chat()
    config = config_for(api, tmp_path, allowed_user_ids=(1,), groups=GroupsConfig(log_all=True))
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_text(group, eve, "a good day among friends")  # not meant for the bot: silence
        api.send_text(group, eve, f"{MENTION} can I talk to you?")  # meant for it: one refusal
        api.send_text(group, alice, f"{MENTION} a good morning")
        await last_message_with(api, group, "echo: a good morning")
    assert api.sent_texts(group["id"]) == [bot_texts.refusal_text(5), "echo: a good morning"]
    assert rows(tmp_path / "bot.db", "SELECT user_id FROM messages WHERE role = 'user'") == [(1,)]


async def test_a_refusal_that_fails_to_send_still_refuses(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    eve = api.user(5, "Eve")
    chat = api.private_chat(eve)
    config = config_for(api, tmp_path, allowed_user_ids=(1,))
    async with running_bot(config, engine=engine):
        api.fail_next("sendMessage", status=403)  # e.g. she blocked the bot, or the message is gone
        api.send_text(chat, eve, "a bad day")
        api.send_text(chat, eve, "still there?")  # handled after the first (same chat, in order)
        refusal = await last_message_with(api, chat, bot_texts.refusal_text(5))
    assert [c.status for c in api.calls_of("sendMessage")] == [403, 200], "the lost refusal was tried again"
    assert api.sent_texts(chat["id"]) == [refusal["text"]], "no apology, no reply: just the refusal"
    assert refusal["text"].endswith("your user id: 5"), "the owner can copy her id into the allowlist"
    assert engine.classified == [] and engine.seen_histories == [], "no model work for her"
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM messages") == [(0,)]
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM users") == [(0,)]


async def test_an_open_bot_warns_at_start_and_a_closed_one_does_not(
    api: FakeBotApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.telegram.app")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        pass
    assert [r.getMessage() for r in caplog.records if r.name == "bot.telegram.app"] == [OPEN_BOT_WARNING]
    caplog.clear()
    async with running_bot(config_for(api, tmp_path, allowed_chat_ids=(-1001,)), engine=ScriptedEngine()):
        pass
    assert not [r for r in caplog.records if r.name == "bot.telegram.app"]


# -- admins and /stats ------------------------------------------------------------------------------------------


async def test_admin_gets_stats_others_a_polite_refusal(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine(queue_depth=3)
    alice, admin = api.user(1, "Alice"), api.user(9, "Admin")
    config = config_for(api, tmp_path, allowed_user_ids=(1,), admin_user_ids=(9,))
    alice_chat, admin_chat = api.private_chat(alice), api.private_chat(admin)
    async with running_bot(config, engine=engine):
        api.send_text(alice_chat, alice, "a good day")
        await last_message_with(api, alice_chat, "echo: a good day")
        api.send_command(alice_chat, alice, "/stats")
        refusal = await last_message_with(api, alice_chat, bot_texts.ADMIN_ONLY_TEXT)
        api.send_command(admin_chat, admin, "/stats")
        stats = await last_message_with(api, admin_chat, "Moodbot stats")
    assert refusal["text"] == bot_texts.ADMIN_ONLY_TEXT
    text = stats["text"]
    assert "Chats: 1" in text and "Users: 1" in text and "Messages: 2 (with a mood: 1)" in text
    assert "Engine queue: 3" in text
    assert re.search(r"Database: \d+(\.\d)? (KB|MB)", text), text
    assert "<b>" not in text and {"type": "bold", "offset": 0, "length": 16} in stats["entities"]
    assert "stats" not in {c["command"] for c in api.commands()}, "not in the public command menu"


async def test_an_admin_outside_the_allowlist_is_let_in(api: FakeBotApi, tmp_path: Path) -> None:
    admin = api.user(9, "Admin")
    config = config_for(api, tmp_path, allowed_user_ids=(1,), admin_user_ids=(9,))
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_text(api.private_chat(admin), admin, "a good day")
        await last_message_with(api, api.private_chat(admin), "echo: a good day")
    assert bot_texts.refusal_text(9) not in api.sent_texts(9)


# -- rate limit ----------------------------------------------------------------------------------------------------


@pytest.fixture
def no_timed_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    """The back-fill runs only when a test runs it, so "classified at once" and "classified later" can be told
    apart."""
    monkeypatch.setattr(jobs, "BACKFILL_FIRST_RUN_S", 3600.0)
    monkeypatch.setattr(jobs, "BACKFILL_INTERVAL_S", 3600.0)


async def run_backfill(application: Application) -> None:
    """One back-fill round, now."""
    [job] = application.job_queue.get_jobs_by_name("backfill")
    await job.run(application)


async def test_over_the_rate_limit_one_slow_down_no_replies_and_every_message_stored(
    api: FakeBotApi, tmp_path: Path, no_timed_backfill: None
) -> None:
    engine = ScriptedEngine()
    alice, admin = api.user(1, "Alice"), api.user(9, "Admin")
    chat, admin_chat = api.private_chat(alice), api.private_chat(admin)
    database = tmp_path / "bot.db"
    clock = FakeClock()
    config = config_for(api, tmp_path, admin_user_ids=(9,), limits=LimitsConfig(messages_per_minute=2, burst=2))
    async with running_bot(config, engine=engine) as application:
        application.bot_data[SERVICES_KEY].rate_limiter.clock = clock
        for n in range(1, 6):
            api.send_text(chat, alice, f"a good day {n}")
        api.send_command(chat, alice, "/help")  # an update like any other: over the limit too
        await api.wait_for(lambda a: len(a.sent_texts(chat["id"])) >= 3)
        clock.now += 30  # one token back: one more reply, and a fresh notice for the next spell
        api.send_text(chat, alice, "a good day 6")
        api.send_text(chat, alice, "a good day 7")
        await last_message_with(api, chat, "echo: a good day 6")

        for n in range(1, 5):  # admins are never limited
            api.send_text(admin_chat, admin, f"admin {n}")
        await last_message_with(api, admin_chat, "echo: admin 4")
        assert sorted(t for t in engine.classified if t.startswith("a good")) == [
            "a good day 1", "a good day 2", "a good day 6"
        ], "over the limit, messages are only stored: no model work at once"
        await run_backfill(application)
    texts = api.sent_texts(chat["id"])
    slow_down = bot_texts.SLOW_DOWN_TEXT.format(seconds=30)  # one token back every 30 s
    assert sorted(texts) == sorted(["echo: a good day 1", "echo: a good day 2", slow_down, "echo: a good day 6",
                                    slow_down]), "one notice per spell (sent on arrival), nothing for /help"
    assert [m for _, m in engine.seen_histories if m.startswith("a good")] == [
        "a good day 1", "a good day 2", "a good day 6"
    ]
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 1 AND role = 'user'") == [(7,)]
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 1 AND role = 'assistant'") == [(3,)]
    classified = "SELECT COUNT(*) FROM sentiments s JOIN messages m ON m.id = s.message_id WHERE m.user_id = 1"
    assert rows(database, classified) == [(7,)], "the back-fill classifies them: they count in /mood"
    assert rows(database, "SELECT COUNT(*) FROM pending_replies") == [(0,)], "and they are owed no late reply"


async def first_and_second(kind: str, api: FakeBotApi, chat: dict, alice: dict) -> tuple[str, object]:
    """Two updates of ``kind``: the first within the limit (waits for its answer; returns its marker), then the
    second, over it (returns what it was: a message id, or a button press's query id)."""
    if kind in ("text", "edit"):
        message_id = api.send_text(chat, alice, "a good day")
        await last_message_with(api, chat, "echo: a good day")
        if kind == "text":
            return "a bad day", api.send_text(chat, alice, "a bad day")
        return "actually a bad day", api.edit_text(chat, alice, message_id, "actually a bad day")
    if kind == "button":
        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, "can't be undone")
        return "", api.press_button(chat, alice, confirm["message_id"], f"forget:no:{alice['id']}")
    send = {
        "mood": lambda: api.send_command(chat, alice, "/mood"),
        "export": lambda: api.send_command(chat, alice, "/export"),
        "sticker": lambda: api.send_sticker(chat, alice),
    }[kind]
    send()
    await api.wait_for_messages(chat["id"], count=1)
    return "", send()


@pytest.mark.parametrize("kind", ["text", "edit", "mood", "export", "sticker", "button"])
async def test_over_the_rate_limit_each_kind_of_update_does_no_work(
    api: FakeBotApi, tmp_path: Path, no_timed_backfill: None, kind: str
) -> None:
    """Text messages and edits are only stored (the back-fill classifies them); /mood, /export, non-text messages
    and button presses are not handled; one "slow down" says so."""
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    clock = FakeClock()
    config = config_for(api, tmp_path, limits=LimitsConfig(messages_per_minute=1, burst=1))
    async with running_bot(config, engine=engine) as application:
        application.bot_data[SERVICES_KEY].rate_limiter.clock = clock
        text, second = await first_and_second(kind, api, chat, alice)
        before = api.sent_messages(chat["id"])
        slow_down = bot_texts.SLOW_DOWN_TEXT.format(seconds=60)
        if kind == "button":
            answer = await api.wait_for(lambda a: a.callback_answers.get(second))
            assert answer["text"] == slow_down and answer["show_alert"] is True
        else:
            await last_message_with(api, chat, slow_down)
        clock.now += 60
        api.send_command(chat, alice, "/help")  # handled after anything queued before it in this chat
        await last_message_with(api, chat, "/mood")
        after = api.sent_messages(chat["id"])
        if text:
            assert text not in engine.classified, "over the limit: no model work"
            assert rows(database, "SELECT text FROM messages WHERE role = 'user' ORDER BY id")[-1] == (text,)
            assert rows(database, "SELECT COUNT(*) FROM sentiments s JOIN messages m ON m.id = s.message_id "
                                  "WHERE m.text = ?", text) == [(0,)]
            await run_backfill(application)
            assert engine.classified[-1] == text
            assert rows(database, "SELECT s.label FROM sentiments s JOIN messages m ON m.id = s.message_id "
                                  "WHERE m.text = ?", text) == [("negative",)]
    added = [m.get("text") for m in after[len(before):]]
    if kind == "button":
        assert len(added) == 1 and "/mood" in added[0], "only /help's answer"
        assert after[-2]["text"] == bot_texts.FORGET_CONFIRM_TEXT, "the /forget question was not answered"
    else:
        assert len(added) == 2 and added[0] == slow_down and "/mood" in added[1], "a slow down, /help: no more"
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE role = 'assistant'") == [
        (1 if kind in ("text", "edit") else 0,)
    ]


def test_rate_limiter_refills_and_warns_once_per_spell() -> None:
    clock = FakeClock()
    limiter = RateLimiter(messages_per_minute=6, burst=3, clock=clock)  # one token per 10 s
    assert [limiter.check(1).allowed for _ in range(3)] == [True, True, True]
    first, second = limiter.check(1), limiter.check(1)
    assert not first.allowed and first.notify and first.wait_seconds == 10
    assert not second.allowed and not second.notify
    assert limiter.check(2).allowed, "buckets are per user"
    clock.now += 4
    assert limiter.check(1).wait_seconds == 6
    clock.now += 6
    assert limiter.check(1).allowed
    refused = limiter.check(1)
    assert not refused.allowed and refused.notify, "a new spell gets a new notice"
    clock.now += 3600
    assert [limiter.check(1).allowed for _ in range(4)] == [True, True, True, False], "never more than the burst"


def test_rate_limiter_off_and_pruned() -> None:
    off = RateLimiter(messages_per_minute=0, burst=1)
    assert not off.enabled and all(off.check(1).allowed for _ in range(100)) and len(off) == 0
    clock = FakeClock()
    limiter = RateLimiter(messages_per_minute=60, burst=1, clock=clock)
    for key in range(PRUNE_EVERY - 1):
        limiter.check(key)
    clock.now += 2  # every bucket has refilled: it is the same as having none
    limiter.check(-1)
    assert len(limiter) == 1


# -- formatted sends ----------------------------------------------------------------------------------------------


async def test_a_formatted_message_telegram_cannot_parse_is_resent_as_plain_text(
    api: FakeBotApi, tmp_path: Path
) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_command(chat, alice, "/help")
        formatted = await last_message_with(api, chat, "/mood")
        api.fail_parse_mode_once = True
        api.send_command(chat, alice, "/help")
        await api.wait_for_messages(chat["id"], count=2)
    first, plain = api.sent_messages(chat["id"])
    assert formatted["entities"] and first["text"] == formatted["text"]
    assert plain["text"] == telegram_text.html_to_plain(bot_texts.HELP_HTML) == first["text"], "same words, no markup"
    assert "entities" not in plain
    calls = api.calls_of("sendMessage")[-2:]
    assert [c.status for c in calls] == [400, 200]
    assert calls[0].params["parse_mode"] == "HTML" and "parse_mode" not in calls[1].params


def test_html_to_plain_and_human_bytes() -> None:
    assert telegram_text.html_to_plain("<b>a &lt;b&gt; &amp; c</b>") == "a <b> & c"
    assert privacy_view.human_bytes(512) == "512 B" and privacy_view.human_bytes(1536) == "1.5 KB"
    assert privacy_view.human_bytes(3 * 1024**3) == "3.0 GB"


def test_the_fake_bot_api_parses_html_like_telegram() -> None:
    text, entities = parse_html("<b>📊 Hi</b> &lt;you&gt; &amp; <a href='https://x.y'>me</a>")
    assert text == "📊 Hi <you> & me"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "text_link", "url": "https://x.y", "offset": 14, "length": 2},
    ]
    for bad in ("<b>unclosed", "a < b", "<blink>no</blink>", "</b>"):
        with pytest.raises(ApiError, match="can't parse entities"):
            parse_html(bad)
