"""/mood as a chart plus a short summary: pure text helpers, the PNG itself, and the whole flow through the fake
Bot API with the scripted engine."""

from __future__ import annotations

import struct
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.telegram import commands
from bot.views.charts import HEIGHT_PX, WIDTH_PX, render_mood_chart, rolling_mean
from bot.views.mood import best_and_worst_day, member_lines, mood_summary_text, mood_trend, signed, trend_text
from bot.views.telegram_text import photo_caption, telegram_length
from storage import DayMood, SentimentRecord, Store, UserMood
from storage.mood import summarize
from tests.support.e2e import config_for, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine

TODAY = date(2026, 11, 22)  # a Sunday
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def day(offset: int, messages: int, score: float) -> DayMood:
    """A day ``offset`` days before TODAY; labels follow the score's sign."""
    label = {1: (messages, 0, 0), 0: (0, messages, 0), -1: (0, 0, messages)}[(score > 0) - (score < 0)]
    return DayMood((TODAY - timedelta(days=offset)).isoformat(), messages, score, *label)


def member(user_id: int, name: str, messages: int, score: float) -> UserMood:
    return UserMood(user_id, name, summarize([day(0, messages, score)] if messages else []))


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which always comes first after the signature."""
    assert png[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", png[16:24])


# -- pure text ---------------------------------------------------------------------------------------------------


def test_trend_up_down_and_steady() -> None:
    current = summarize([day(0, 2, 0.5)])
    assert mood_trend(current, summarize([day(8, 1, 0.29)])) == pytest.approx(0.21)
    assert trend_text(0.21, 7) == "↗ +0.21 vs the 7 days before"
    assert trend_text(-0.3, 30) == "↘ -0.30 vs the 30 days before"
    assert trend_text(0.02, 1) == "→ +0.02 vs the day before"
    assert trend_text(-0.001, 7) == "→ +0.00 vs the 7 days before"  # never "-0.00"
    assert signed(-0.004) == "+0.00" and signed(-0.3) == "-0.30"


def test_trend_line_in_the_summary() -> None:
    current = summarize([day(1, 2, 0.6), day(0, 1, 0.3)])  # average +0.50
    up = mood_summary_text(current, 7, TODAY, previous=summarize([day(9, 3, 0.29)]))
    assert "↗ +0.21 vs the 7 days before" in up.splitlines()
    down = mood_summary_text(current, 30, TODAY, previous=summarize([day(40, 1, 0.9)]))
    assert "↘ -0.40 vs the 30 days before" in down.splitlines()


def test_no_trend_without_previous_data_or_for_all_time() -> None:
    current = summarize([day(1, 2, 0.6), day(0, 1, 0.3)])
    for text in (
        mood_summary_text(current, 7, TODAY),
        mood_summary_text(current, 7, TODAY, previous=summarize([])),
        mood_summary_text(current, None, TODAY, previous=summarize([day(40, 1, 0.9)])),
    ):
        assert " vs the " not in text
    assert mood_trend(current, summarize([])) is None and mood_trend(current, None) is None


def test_best_and_worst_day() -> None:
    days = [day(2, 2, 0.8), day(1, 1, 0.1), day(0, 3, -0.6)]
    best, worst = best_and_worst_day(days)
    assert (best.day, worst.day) == ("2026-11-20", "2026-11-22")
    text = mood_summary_text(summarize(days), 7, TODAY)
    assert "Best day: Fri 20 Nov 😄 +0.80 · worst: Sun 22 Nov 😢 -0.60" in text.splitlines()
    # One day is not both "best" and "worst": the line is left out.
    assert best_and_worst_day([day(0, 1, 0.5)]) is None
    assert "Best day" not in mood_summary_text(summarize([day(0, 1, 0.5)]), 7, TODAY)


def test_best_and_worst_ties_prefer_the_busier_day_and_show_the_year_when_not_this_year() -> None:
    days = [day(3, 1, 0.5), day(2, 4, 0.5), day(1, 2, -0.5), day(0, 1, -0.5)]
    best, worst = best_and_worst_day(days)
    assert (best.day, worst.day) == ("2026-11-20", "2026-11-21")
    old = [DayMood("2025-12-20", 1, 0.9, 1, 0, 0), DayMood("2026-01-03", 1, -0.9, 0, 0, 1)]
    assert "Best day: Sat 20 Dec 2025 😄 +0.90 · worst: Sat 3 Jan 😢 -0.90" in mood_summary_text(
        summarize(old), None, TODAY
    )


def test_summary_keeps_counts_shares_and_day_strip() -> None:
    text = mood_summary_text(summarize([day(2, 2, 0.6), day(0, 2, -0.6)]), 7, TODAY)
    lines = text.splitlines()
    assert lines[0] == "Your mood over the last 7 days 😐"
    assert "Messages: 4 · average score +0.00" in lines[1]
    assert "50% positive" in text and "50% negative" in text
    assert lines[-1] == "Day by day: ····😄·😢"


def test_group_breakdown_names_most_active_first() -> None:
    members = [
        member(2, "Bob", 3, -0.3),
        member(1, "Alice", 12, 0.62),
        member(3, "Carol", 0, 0.0),  # wrote, but nothing classified yet: no mood to show
    ]
    assert member_lines(members) == ["Alice 😄 +0.62 (12 msgs)", "Bob 🙁 -0.30 (3 msgs)"]
    text = mood_summary_text(summarize([day(0, 15, 0.44)]), 7, TODAY, group=True, members=members)
    lines = text.splitlines()
    assert lines[0].startswith("This chat's mood over the last 7 days")
    assert lines[-3:] == ["Who spoke (most active first):", "Alice 😄 +0.62 (12 msgs)", "Bob 🙁 -0.30 (3 msgs)"]


def test_group_breakdown_lists_at_most_ten() -> None:
    members = [member(i, f"Member {i}", 20 - i, 0.1) for i in range(13)]
    lines = member_lines(members)
    assert len(lines) == 11 and lines[0].startswith("Member 0 ") and lines[9].startswith("Member 9 ")
    assert lines[-1] == "…and 3 more"
    assert member_lines([member(1, "Solo", 1, 0.0)]) == ["Solo 😐 +0.00 (1 msg)"]


def test_caption_fits_or_moves_the_summary_to_its_own_message() -> None:
    short = "Your mood over the last 7 days 🙂\nMessages: 3"
    assert photo_caption(short) == (short, None)
    long = "This chat's mood over the last 7 days 🙂\n" + "\n".join(f"Member {i} 😄 +0.62 (12 msgs)" for i in range(40))
    caption, rest = photo_caption(long)
    assert caption == "This chat's mood over the last 7 days 🙂" and rest == long
    # Telegram counts UTF-16 code units: 600 emoji are 1200 units, over the 1024 limit though len() is 600.
    emoji = "😄" * 600
    assert len(emoji) == 600 and telegram_length(emoji) == 1200
    caption, rest = photo_caption(emoji)
    assert rest == emoji and telegram_length(caption) <= 1024 and caption.endswith("…")


# -- the chart ---------------------------------------------------------------------------------------------------


def test_rolling_mean_is_centred_and_shorter_at_the_ends() -> None:
    assert rolling_mean([0.0, 3.0, 6.0, 3.0]) == [1.5, 3.0, 4.0, 4.5]
    assert rolling_mean([1.0]) == [1.0]
    assert rolling_mean([]) == []


def test_chart_of_one_day_is_a_png_of_the_expected_size() -> None:
    png = render_mood_chart([day(0, 3, 0.4)], TODAY, TODAY, title="Your mood · today")
    assert png.startswith(b"\x89PNG")
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX) == (1000, 560)


def test_chart_of_ninety_days() -> None:
    days = [day(offset, 1 + offset % 9, ((offset * 37) % 200 - 100) / 100) for offset in range(90) if offset % 4]
    png = render_mood_chart(days, TODAY - timedelta(days=89), TODAY, title="This chat's mood · the last 90 days")
    assert png_size(png) == (1000, 560)


def test_no_chart_without_data() -> None:
    with pytest.raises(ValueError):
        render_mood_chart([], TODAY, TODAY, title="empty")


# -- through the fake Bot API ------------------------------------------------------------------------------------


async def store_past_messages(
    database: Path, chat_id: int, user_id: int, scores_by_days_ago: dict[int, float], **names: str | None
) -> None:
    """Write classified messages ``days_ago`` days back (noon UTC) straight into the database."""
    noon_today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    async with await Store.open(database) as store:
        if names:
            await store.upsert_user(user_id, names.get("first_name"), names.get("username"))
        for days_ago, score in scores_by_days_ago.items():
            created_at = (noon_today - timedelta(days=days_ago)).timestamp()
            if days_ago == 0:
                created_at = min(created_at, time.time() - 1)  # earlier today, not in the future
            stored = await store.add_user_message(
                chat_id=chat_id, user_id=user_id, text="past", telegram_message_id=None, created_at=created_at
            )
            label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
            await store.add_sentiment(stored.id, SentimentRecord(label, score, {label: 1.0}, "test"))


async def mood_photo(api: FakeBotApi, count: int) -> tuple[bytes, str]:
    """The ``count``-th chart the bot sent: its uploaded bytes and its caption."""
    calls = await api.wait_for_call("sendPhoto", count=count)
    call = calls[count - 1]
    assert call.status == 200, call
    return call.files["photo"], call.params["caption"]


async def test_mood_in_a_private_chat_is_a_chart_with_the_summary(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        for text in ("a good day", "a bad day", "a good morning"):
            api.send_text(chat, alice, text)
        api.send_command(chat, alice, "/mood")
        png, caption = await mood_photo(api, 1)
        api.send_command(chat, alice, "/mood 30d")
        png_30, caption_30 = await mood_photo(api, 2)
    assert png_size(png) == png_size(png_30) == (1000, 560)
    assert caption.startswith("Your mood over the last 7 days")
    assert "Messages: 3" in caption and "+0.27" in caption and "67% positive" in caption
    assert " vs the " not in caption, "no trend without an earlier period"
    assert caption_30.startswith("Your mood over the last 30 days") and "Messages: 3" in caption_30
    assert [m.get("caption") for m in api.sent_messages(1) if "photo" in m] == [caption, caption_30]


async def test_mood_with_nothing_yet_is_text_only(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_command(api.private_chat(alice), alice, "/mood")
        [answer] = await api.wait_for_messages(1, count=1)
    assert answer["text"].startswith("Nothing yet for the last 7 days")
    assert api.calls_of("sendPhoto") == []


async def test_mood_trend_and_best_day_from_earlier_messages(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    # The 7 days before this week were gloomy; this week was better, its best day 2 days ago.
    await store_past_messages(tmp_path / "bot.db", 1, 1, {10: -0.5, 8: -0.3, 2: 0.9, 1: 0.1})
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_command(api.private_chat(alice), alice, "/mood")
        _, caption = await mood_photo(api, 1)
    best = datetime.now(UTC).date() - timedelta(days=2)
    assert "Messages: 2 · average score +0.50" in caption
    assert "↗ +0.90 vs the 7 days before" in caption
    assert f"Best day: {best:%a} {best.day} {best:%b} 😄 +0.90" in caption


async def test_mood_in_a_group_names_the_members(api: FakeBotApi, tmp_path: Path) -> None:
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat(-100500, "Friends")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(group, alice, "@moodbot_test_bot a good day")
        api.send_text(group, alice, "@moodbot_test_bot another good day")
        api.send_text(group, bob, "@moodbot_test_bot a bad day")
        api.send_command(group, bob, "/mood")
        _, caption = await mood_photo(api, 1)
    assert caption.startswith("This chat's mood over the last 7 days")
    assert "Messages: 3" in caption
    lines = caption.splitlines()
    assert lines[-2:] == ["Alice 😄 +0.80 (2 msgs)", "Bob 😢 -0.80 (1 msg)"]


async def test_a_long_group_summary_goes_under_the_chart(api: FakeBotApi, tmp_path: Path) -> None:
    group = api.group_chat(-100600, "Big family")
    for user_id in range(1, 13):
        name = f"Cousin {user_id} " + "with a very long display name " * 2
        await store_past_messages(tmp_path / "bot.db", group["id"], user_id, {0: 0.4, 1: -0.2}, first_name=name)
    alice = api.user(1, "Cousin 1")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_command(group, alice, "/mood")
        _, caption = await mood_photo(api, 1)
        messages = await api.wait_for_messages(group["id"], count=2)
    assert caption == "This chat's mood over the last 7 days 😐"
    text = messages[1]["text"]
    assert "Messages: 24" in text and text.count("(2 msgs)") == 10 and text.endswith("…and 2 more")


async def test_a_chart_failure_still_answers_with_the_text(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(commands, "render_mood_chart", broken)
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(chat, alice, "a good day")
        api.send_command(chat, alice, "/mood")
        messages = await api.wait_for_messages(1, count=2)
    assert messages[1]["text"].startswith("Your mood over the last 7 days") and "Messages: 1" in messages[1]["text"]
    assert api.calls_of("sendPhoto") == []
    assert "could not draw the /mood chart" in caplog.text


async def test_a_refused_chart_still_answers_with_the_text(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(chat, alice, "a good day")
        await api.wait_for_messages(1, count=1)
        api.fail_next("sendPhoto", status=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
        api.send_command(chat, alice, "/mood")
        messages = await api.wait_for_messages(1, count=2)
    assert [c.status for c in api.calls_of("sendPhoto")] == [400]
    assert messages[1]["text"].startswith("Your mood over the last 7 days") and "Messages: 1" in messages[1]["text"]
