"""Daily check-ins through the fake Bot API with a clock the test sets: the right local time in two time zones, not
in quiet hours, never twice a day, once late after a restart the same day (not the next), a blocked bot stops the
schedule, the pace bound holds; taps land in /mood and /export, the next message becomes the day's note; the offer
after /start."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.ext import Application

from bot.config import Config
from bot.telegram.scheduled import CONCURRENT_SENDS, ScheduledSender
from bot.views import checkins as view
from bot.views.charts import render_mood_chart
from storage import DayMood, SelfReport, Store
from tests.support.clock import Clock
from tests.support.e2e import answered, config_for, eventually, final_texts, rows, running_bot
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi
from tests.support.fakeengine import ScriptedEngine

QUESTION = "How are you feeling today?"


def sender_of(application: Application) -> ScheduledSender:
    """The check-in job's sender: tests tick it by hand instead of waiting a minute."""
    [job] = application.job_queue.get_jobs_by_name("check-ins")  # type: ignore[union-attr]
    return job.data  # type: ignore[return-value]


async def schedule(database: Path, user_id: int, **settings: Any) -> None:
    """Set a person's settings in the database before the bot starts (as /settings would)."""
    async with await Store.open(database) as store:
        await store.update_settings(user_id, **settings)


def questions(api: FakeBotApi, chat_id: int) -> list[dict[str, Any]]:
    return [m for m in api.sent_messages(chat_id) if m.get("text") == QUESTION]


async def test_check_ins_arrive_at_each_persons_local_time_and_never_twice(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    await schedule(config.storage.database, 1, time_zone="Asia/Shanghai", checkin_enabled=True, checkin_time="20:00")
    await schedule(config.storage.database, 2, time_zone="America/New_York", checkin_enabled=True,
                   checkin_time="20:00")
    clock = Clock(datetime(2026, 6, 1, 11, 59, tzinfo=UTC))  # 19:59 in Shanghai, 07:59 in New York
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        sender = sender_of(application)
        await sender.tick()
        assert api.sent_messages() == []
        clock.set(2026, 6, 1, 12, 0)  # 20:00 in Shanghai
        await sender.tick()
        [asked] = questions(api, 1)
        faces = [b["text"] for b in asked["reply_markup"]["inline_keyboard"][0]]
        assert faces == ["😞", "🙁", "😐", "🙂", "😄"] and questions(api, 2) == []
        clock.set(2026, 6, 1, 15, 0)
        await sender.tick()
        clock.set(2026, 6, 2, 0, 0)  # 20:00 on 1 June in New York, 08:00 on 2 June in Shanghai
        await sender.tick()
        assert len(questions(api, 1)) == 1 and len(questions(api, 2)) == 1
        clock.set(2026, 6, 2, 3, 59)
        await sender.tick()
    assert len(questions(api, 1)) == 1 and len(questions(api, 2)) == 1, "never twice a day"
    assert rows(config.storage.database, "SELECT user_id, last_checkin_day FROM person_settings ORDER BY user_id") == [
        (1, "2026-06-01"), (2, "2026-06-01")
    ]


async def test_quiet_hours_hold_a_check_in_back(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    await schedule(config.storage.database, 3, checkin_enabled=True, checkin_time="20:00", quiet_start="19:30",
                   quiet_end="21:00")
    clock = Clock(datetime(2026, 6, 1, 20, 0, tzinfo=UTC))
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        sender = sender_of(application)
        await sender.tick()
        clock.set(2026, 6, 1, 20, 59)
        await sender.tick()
        assert questions(api, 3) == []
        clock.set(2026, 6, 1, 21, 0)
        await sender.tick()
        assert len(questions(api, 3)) == 1


async def test_one_missed_while_down_goes_out_once_late_the_same_day_only(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    database = config.storage.database
    await schedule(database, 1, time_zone="Asia/Shanghai", checkin_enabled=True, checkin_time="20:00")
    await schedule(database, 2, time_zone="Asia/Shanghai", checkin_enabled=True, checkin_time="20:00")
    clock = Clock(datetime(2026, 6, 1, 12, 30, tzinfo=UTC))  # 20:30 in Shanghai: the bot was down at 20:00
    await schedule(database, 2, last_checkin_day="2026-05-31")  # Bob's was missed yesterday, his day is over
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        # Nobody ticks by hand: the job's first run, right after start-up, reads the schedule from the database.
        await api.wait_for(lambda a: questions(a, 1) and questions(a, 2))
    clock.set(2026, 6, 1, 14, 0)  # 22:00: a second restart the same day
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        await eventually(lambda: sender_of(application).ticks >= 1)
    assert len(questions(api, 1)) == 1 and len(questions(api, 2)) == 1
    # Down from 19:00 on 2 June to 10:00 on 3 June: 2 June's check-in is not sent on 3 June.
    clock.set(2026, 6, 3, 2, 0)
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        await eventually(lambda: sender_of(application).ticks >= 1)
        assert len(questions(api, 1)) == 1
        clock.set(2026, 6, 3, 12, 0)  # 20:00 on 3 June
        await sender_of(application).tick()
    assert len(questions(api, 1)) == 2
    assert rows(database, "SELECT last_checkin_day FROM person_settings WHERE user_id = 1") == [("2026-06-03",)]


async def test_a_person_who_blocked_the_bot_is_taken_off_the_schedule(
    api: FakeBotApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(api, tmp_path)
    for user_id in (1, 2, 3):
        await schedule(config.storage.database, user_id, checkin_enabled=True, checkin_time="08:00",
                       weekly_enabled=True, weekly_day=0, weekly_time="09:00")
    api.blocked_by.add(2)
    clock = Clock(datetime(2026, 6, 1, 8, 0, tzinfo=UTC))  # a Monday
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        sender = sender_of(application)
        api.fail_next("sendMessage", status=502, times=1)  # someone's check-in fails another way
        with caplog.at_level(logging.INFO):
            report = await sender.tick()
        assert (report.checkins, report.stopped, report.failed) == (1, 1, 1)
        clock.set(2026, 6, 1, 9, 30)
        report = await sender.tick()
        assert (report.weekly, report.stopped, report.failed) == (2, 0, 0), "the blocked person gets no summary"
    to_blocked = [c for c in api.calls if c.params.get("chat_id") == 2 and c.method != "getUpdates"]
    assert len(to_blocked) == 1, "one refusal, then nothing more is sent to them"
    assert rows(config.storage.database, "SELECT checkin_enabled, weekly_enabled FROM person_settings "
                "WHERE user_id = 2") == [(0, 0)]
    checkins = [c for c in api.calls_of("sendMessage") if c.params["text"] == QUESTION]
    assert [c.params["chat_id"] for c in checkins].count(1) == 1, "the failed one is not retried (it may have arrived)"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "bot.telegram.scheduled")
    assert "check-in for user 1 failed (NetworkError: Bad Gateway)" in logged and "user 2 blocked the bot" in logged
    assert TEST_TOKEN.split(":")[1] not in logged


async def test_hundreds_due_at_once_are_sent_a_few_at_a_time(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    async with await Store.open(config.storage.database) as store:
        for user_id in range(100, 140):
            await store.update_settings(user_id, checkin_enabled=True, checkin_time="07:00")
    api.latency["sendMessage"] = 0.05  # each send takes a moment, so sends that may overlap do
    clock = Clock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        report = await sender_of(application).tick()
    assert report.checkins == 40 and len(api.calls_of("sendMessage")) == 40
    assert 2 <= api.max_in_flight["sendMessage"] <= CONCURRENT_SENDS


async def tapped_checkin(api: FakeBotApi, config: Config, clock: Clock, user: dict[str, Any]) -> dict[str, Any]:
    """Send ``user`` their check-in now and wait for it."""
    await schedule(config.storage.database, user["id"], checkin_enabled=True, checkin_time="00:00")
    return (await api.wait_for(lambda a: questions(a, user["id"])))[0]


async def test_a_tap_lands_in_mood_and_export_and_the_next_message_is_the_days_note(
    api: FakeBotApi, tmp_path: Path
) -> None:
    config = config_for(api, tmp_path)
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    clock = Clock(datetime.now(UTC))  # /mood's days follow the real clock: the tap is today
    today = clock.now.date().isoformat()
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        asked = await tapped_checkin(api, config, clock, alice)
        await sender_of(application).tick()
        query = api.press_button(chat, alice, asked["message_id"], f"checkin:{alice['id']}:3")
        await answered(api, query)
        edited = await api.wait_for(lambda a: (m := a.sent_messages(1)[0]).get("text", "").startswith("Noted") and m)
        assert "🙂" in edited["text"] and len(edited["reply_markup"]["inline_keyboard"][0]) == 5
        api.send_text(chat, alice, "a good long walk by the river")
        api.send_text(chat, alice, "and a good dinner")
        assert (await final_texts(api, 1, 3))[1:] == ["echo: a good long walk by the river", "echo: and a good dinner"]
        api.send_command(chat, alice, "/mood")
        [photo] = await api.wait_for(lambda a: [m for m in a.sent_messages(1) if "photo" in m] or None)
        api.send_command(chat, alice, "/export")
        [export] = await api.wait_for_call("sendDocument")
    assert rows(config.storage.database, "SELECT day, score, note FROM self_reports") == [
        (today, 0.5, "a good long walk by the river")
    ], "the first message after the tap is the note, the second is not"
    assert "Messages: 2" in photo["caption"] and "You said: 🙂 on 1 of 7 days, average +0.50" in photo["caption"]
    document = json.loads(export.files["document"])
    assert [(r["day"], r["score"], r["note"]) for r in document["self_reports"]] == [
        (today, 0.5, "a good long walk by the river")
    ]


async def test_a_tap_changes_the_days_answer_and_a_restart_forgets_the_note_invitation(
    api: FakeBotApi, tmp_path: Path
) -> None:
    config = config_for(api, tmp_path)
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    clock = Clock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    async with running_bot(config, engine=ScriptedEngine(), clock=clock):
        asked = await tapped_checkin(api, config, clock, alice)
        for face in (0, 0, 4):  # the same face twice edits nothing ("not modified" is not an error)
            await answered(api, api.press_button(chat, alice, asked["message_id"], f"checkin:1:{face}"))
    assert rows(config.storage.database, "SELECT day, score FROM self_reports") == [("2026-06-01", 1.0)]
    assert "😄" in api.sent_messages(1)[0]["text"]
    async with running_bot(config, engine=ScriptedEngine(), clock=clock):
        api.send_text(chat, alice, "a walk")
        await final_texts(api, 1, 2)
    assert rows(config.storage.database, "SELECT note FROM self_reports") == [(None,)]


async def test_a_note_comes_within_hours_and_on_the_same_day(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    clock = Clock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    async with running_bot(config, engine=ScriptedEngine(), clock=clock):
        asked = await tapped_checkin(api, config, clock, alice)
        await answered(api, api.press_button(chat, alice, asked["message_id"], "checkin:1:2"))
        clock.set(2026, 6, 1, 12, 30)  # three and a half hours later
        api.send_text(chat, alice, "too late for a note")
        await final_texts(api, 1, 2)
    assert rows(config.storage.database, "SELECT note FROM self_reports") == [(None,)]


async def test_only_the_person_asked_can_tap_and_unreadable_buttons_are_answered_kindly(
    api: FakeBotApi, tmp_path: Path
) -> None:
    config = config_for(api, tmp_path)
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    alice_chat, bob_chat = api.private_chat(alice), api.private_chat(bob)
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:  # buttons as an older or tampered message has them
        others = await bot.send_message(2, QUESTION, reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("😄", callback_data="checkin:1:4")]]
        ))
        garbled = await bot.send_message(1, QUESTION, reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("😄", callback_data="checkin:1:9"),
              InlineKeyboardButton("?", callback_data="offer:1:maybe")]]
        ))
    async with running_bot(config, engine=ScriptedEngine()):
        not_yours = await answered(api, api.press_button(bob_chat, bob, others.message_id, "checkin:1:4"))
        unreadable = await answered(api, api.press_button(alice_chat, alice, garbled.message_id, "checkin:1:9"))
        unknown = await answered(api, api.press_button(alice_chat, alice, garbled.message_id, "offer:1:maybe"))
    assert not_yours["text"] == view.NOT_YOURS and not_yours["show_alert"] is True
    assert unreadable["text"] == view.UNREADABLE == unknown["text"]
    assert rows(config.storage.database, "SELECT COUNT(*) FROM self_reports") == [(0,)]


async def test_start_offers_a_daily_check_in_once(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    alice_chat, bob_chat = api.private_chat(alice), api.private_chat(bob)
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_command(alice_chat, alice, "/start")
        greeting, offer = await api.wait_for_messages(1, count=2)
        assert greeting["text"].startswith("Hi Alice!") and offer["text"] == view.OFFER
        labels = [row[0]["text"] for row in offer["reply_markup"]["inline_keyboard"]]
        assert labels == ["Yes, at 20:00", "I'll choose in /settings", "No, thanks"]
        await answered(api, api.press_button(alice_chat, alice, offer["message_id"], button_text="Yes, at 20:00"))
        await api.wait_for(lambda a: a.sent_messages(1)[1]["text"].startswith("Done!"))
        api.send_command(alice_chat, alice, "/start")
        await api.wait_for_messages(1, count=3)
        api.send_command(bob_chat, bob, "/start")
        _, offer = await api.wait_for_messages(2, count=2)
        await answered(api, api.press_button(bob_chat, bob, offer["message_id"], button_text="No, thanks"))
        await api.wait_for(lambda a: a.sent_messages(2)[1]["text"] == view.OFFER_DECLINED)
        api.send_command(alice_chat, alice, "/help")
        await api.wait_for_messages(1, count=4)
    assert [m["text"] for m in api.sent_messages(1)][1:3] == [
        "Done! I'll check in every day at 20:00 (UTC). You can change the time, your time zone or quiet hours in "
        "/settings.",
        api.sent_messages(1)[0]["text"],  # the second /start: the greeting alone
    ]
    assert "reply_markup" not in api.sent_messages(1)[1], "the answered offer keeps no buttons"
    assert rows(config.storage.database, "SELECT user_id, checkin_enabled, checkin_time, checkin_offered "
                "FROM person_settings ORDER BY user_id") == [(1, 1, "20:00", 1), (2, 0, "20:00", 1)]


async def test_no_offer_in_a_group_or_to_someone_with_check_ins_on(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    await schedule(config.storage.database, 1, checkin_enabled=True, checkin_time="21:00")
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat()
    async with running_bot(config, engine=ScriptedEngine(), clock=Clock(datetime(2026, 6, 1, 9, tzinfo=UTC))):
        api.send_command(api.private_chat(alice), alice, "/start")
        api.send_command(group, bob, "/start@moodbot_test_bot")
        await api.wait_for_messages(1)
        await api.wait_for_messages(group["id"])
        api.send_command(api.private_chat(alice), alice, "/help")
        await api.wait_for_messages(1, count=2)
    assert len(api.sent_messages(group["id"])) == 1 and "Hi" in api.sent_texts(1)[0]
    assert rows(config.storage.database, "SELECT user_id, checkin_offered FROM person_settings") == [(1, 1)]


def test_the_mood_line_says_what_the_person_said() -> None:
    said = [SelfReport("2026-06-01", 0.5, None, 0.0), SelfReport("2026-06-03", 1.0, "a walk", 0.0),
            SelfReport("2026-06-04", 0.0, None, 0.0), SelfReport("2026-06-06", 0.0, None, 0.0),
            SelfReport("2026-05-20", -1.0, None, 0.0)]  # before the period
    first, last = date(2026, 6, 1), date(2026, 6, 7)
    assert view.self_report_line(said, first, last, "en") == "You said: 🙂 on 4 of 7 days, average +0.38"
    assert view.self_report_line(said[:1], last, last, "en") is None
    assert view.self_report_line(said[:1], first, first, "en") == "You said: 🙂 on 1 of 1 day, average +0.50"
    assert view.self_report_line(said, first, last, "zh") == "你自己说的：7 天中有 4 天打卡，🙂 平均 +0.38"
    assert [view.face(s) for s in (-1, -0.6, 0.1, 0.3, 0.9)] == ["😞", "🙁", "😐", "🙂", "😄"]


def test_the_chart_draws_check_ins_with_or_without_messages() -> None:
    said = [SelfReport("2026-06-02", -0.5, None, 0.0), SelfReport("2026-06-04", 1.0, None, 0.0)]
    first, last = date(2026, 6, 1), date(2026, 6, 7)
    alone = render_mood_chart([], first, last, title="Your mood", self_reports=said)
    both = render_mood_chart([DayMood("2026-06-03", 2, 0.4, 2, 0, 0)], first, last, title="Your mood",
                             self_reports=said)
    without = render_mood_chart([DayMood("2026-06-03", 2, 0.4, 2, 0, 0)], first, last, title="Your mood")
    assert alone.startswith(b"\x89PNG") and both.startswith(b"\x89PNG") and both != without
    with pytest.raises(ValueError):
        render_mood_chart([], first, last, title="Your mood")


async def test_check_ins_alone_show_in_mood_but_never_in_a_groups(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    today = datetime.now(UTC).date().isoformat()
    async with await Store.open(config.storage.database) as store:
        await store.report_mood(1, today, -0.5)
    alice = api.user(1, "Alice")
    group = api.group_chat()
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_text(group, alice, "@moodbot_test_bot a good day")
        await final_texts(api, group["id"], 1)
        api.send_command(group, alice, "/mood@moodbot_test_bot")
        [group_mood] = await api.wait_for(lambda a: [m for m in a.sent_messages(group["id"]) if "photo" in m] or None)
        api.send_command(api.private_chat(alice), alice, "/mood")
        [mood] = await api.wait_for(lambda a: [m for m in a.sent_messages(1) if "photo" in m] or None)
    assert "You said" not in group_mood["caption"]
    assert mood["caption"].startswith("Nothing yet for the last 7 days")
    assert mood["caption"].endswith("You said: 🙁 on 1 of 7 days, average -0.50")
