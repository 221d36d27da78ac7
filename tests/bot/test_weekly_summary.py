"""The weekly summary: its numbers from the store (the person's local week, the week before, check-ins), its words
from a fixed template, and its delivery with the chart on the person's day and time, once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from bot.flow.checkins import week_numbers
from bot.views.weekly import WeekNumbers, weekly_summary_text
from storage import DayMood, SelfReport, SentimentRecord, Store
from tests.bot.test_checkins import schedule, sender_of
from tests.support.clock import Clock
from tests.support.e2e import config_for, rows, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine

EIGHT_HOURS = timezone(timedelta(hours=8))
BEST = DayMood("2026-06-03", 4, 0.8, 4, 0, 0)
WORST = DayMood("2026-06-05", 2, -0.4, 0, 0, 2)


def reports(*scores: float) -> list[SelfReport]:
    return [SelfReport(f"2026-06-0{n}", score, None, 0.0) for n, score in enumerate(scores, start=1)]


def week(**changes: object) -> WeekNumbers:
    values: dict[str, object] = {
        "first_day": date(2026, 6, 1), "last_day": date(2026, 6, 7), "messages": 12, "average": 0.32,
        "previous_average": 0.12, "best": BEST, "worst": WORST, "days": [BEST, WORST],
        "reports": reports(0.5, 0.5, 0.0, 1.0, 0.0),
    }
    return WeekNumbers(**{**values, **changes})  # type: ignore[arg-type]


def test_the_summary_says_the_average_the_change_the_best_and_worst_day_and_the_check_ins() -> None:
    assert weekly_summary_text(week(), "en") == (
        "🗓 Your week · Mon 1 Jun – Sun 7 Jun\n"
        "This week your mood averaged +0.32 🙂 across 12 messages. That is up 0.20 on the week before. "
        "Your best day was Wed 3 Jun 😄 +0.80, your hardest Fri 5 Jun 🙁 -0.40. "
        "You checked in on 5 of 7 days, 🙂 +0.40 on average."
    )


def test_the_summary_follows_the_numbers() -> None:
    down = weekly_summary_text(week(previous_average=0.5, reports=[]), "en")
    assert "That is down 0.18 on the week before." in down and down.endswith("No check-ins this week.")
    same = weekly_summary_text(week(previous_average=0.3), "en")
    assert "That is about the same as the week before." in same
    first = weekly_summary_text(week(previous_average=None, messages=1, best=None, worst=None), "en")
    assert "across 1 message." in first and "week before" not in first and "best day" not in first
    silent = weekly_summary_text(week(messages=0, average=None, best=None, worst=None), "en")
    assert silent.endswith("You didn't write to me this week. You checked in on 5 of 7 days, 🙂 +0.40 on average.")
    quiet = weekly_summary_text(week(messages=0, average=None, best=None, worst=None, reports=[]), "en")
    assert quiet.splitlines()[1].startswith("A quiet week")
    assert weekly_summary_text(week(), "en") == weekly_summary_text(week(), "en"), "deterministic"


def test_the_summary_in_chinese() -> None:
    text = weekly_summary_text(week(), "zh")
    assert "本周" in text and "+0.32" in text and "12" in text and "5" in text


async def add_message(store: Store, user_id: int, when: datetime, score: float, number: int) -> None:
    label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    message = await store.record_arrival(
        chat_id=user_id, chat_kind="private", chat_title=None, user_id=user_id, first_name="Alice", username=None,
        text=f"message {number}", telegram_message_id=number, reply_owed=False, created_at=when.timestamp(),
    )
    await store.add_sentiment(message.id, SentimentRecord(label, score, {label: 1.0}, "scripted"))


async def seed_week(database: Path) -> None:
    """Alice in Shanghai (UTC+8): two messages the week before, four in the week of 1–7 June 2026, three check-ins."""
    async with await Store.open(database) as store:
        moments = [
            (datetime(2026, 5, 27, 4, tzinfo=UTC), -0.2),  # the week before
            (datetime(2026, 5, 31, 15, 30, tzinfo=UTC), 0.0),  # 23:30 on Sunday 31 May there: still the week before
            (datetime(2026, 5, 31, 16, 30, tzinfo=UTC), 0.8),  # 00:30 on Monday 1 June there: this week
            (datetime(2026, 6, 3, 2, tzinfo=UTC), 0.6),
            (datetime(2026, 6, 3, 3, tzinfo=UTC), 0.2),
            (datetime(2026, 6, 5, 9, tzinfo=UTC), -0.6),
            (datetime(2026, 6, 7, 2, tzinfo=UTC), 0.9),  # 10:00 on Sunday
        ]
        for number, (when, score) in enumerate(moments, start=1):
            await add_message(store, 1, when, score, number)
        for day, score in (("2026-05-31", -1.0), ("2026-06-02", 0.5), ("2026-06-04", 1.0), ("2026-06-07", 0.0)):
            await store.report_mood(1, day, score)


async def test_week_numbers_come_from_the_persons_local_week(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    await seed_week(database)
    async with await Store.open(database) as store:
        numbers = await week_numbers(store, 1, date(2026, 6, 6), EIGHT_HOURS)  # up to Saturday: from Sunday 31 May
    assert (numbers.first_day, numbers.last_day, numbers.messages) == (date(2026, 5, 31), date(2026, 6, 6), 5)
    async with await Store.open(database) as store:
        numbers = await week_numbers(store, 1, date(2026, 6, 7), EIGHT_HOURS)
    assert numbers.messages == 5 and round(numbers.average or 0, 2) == 0.38  # (0.8 + 0.6 + 0.2 - 0.6 + 0.9) / 5
    assert round(numbers.previous_average or 0, 2) == -0.1
    assert numbers.best is not None and numbers.worst is not None
    assert (numbers.best.day, numbers.worst.day) == ("2026-06-07", "2026-06-05")
    assert [r.day for r in numbers.reports] == ["2026-06-02", "2026-06-04", "2026-06-07"]
    assert numbers.checkins == 3 and round(numbers.checkin_average or 0, 2) == 0.5


async def test_the_weekly_summary_goes_out_once_on_its_day_with_the_chart(api: FakeBotApi, tmp_path: Path) -> None:
    config = config_for(api, tmp_path)
    database = config.storage.database
    await seed_week(database)
    await schedule(database, 1, time_zone="Asia/Shanghai", weekly_enabled=True, weekly_day=6, weekly_time="19:00")
    clock = Clock(datetime(2026, 6, 7, 10, 59, tzinfo=UTC))  # Sunday 18:59 in Shanghai
    async with running_bot(config, engine=ScriptedEngine(), clock=clock) as application:
        sender = sender_of(application)
        await sender.tick()
        assert api.sent_messages(1) == []
        clock.set(2026, 6, 7, 11, 0)
        report = await sender.tick()
        clock.set(2026, 6, 7, 13, 0)
        await sender.tick()
    assert report.weekly == 1
    [summary] = api.sent_messages(1)
    [upload] = api.calls_of("sendPhoto")
    assert upload.files["photo"].startswith(b"\x89PNG")
    assert summary["caption"] == (
        "🗓 Your week · Mon 1 Jun – Sun 7 Jun\n"
        "This week your mood averaged +0.38 🙂 across 5 messages. That is up 0.48 on the week before. "
        "Your best day was Sun 7 Jun 😄 +0.90, your hardest Fri 5 Jun 😢 -0.60. "
        "You checked in on 3 of 7 days, 🙂 +0.50 on average."
    )
    assert rows(database, "SELECT last_weekly_day FROM person_settings") == [("2026-06-07",)]
