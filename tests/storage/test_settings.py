"""A person's settings and self-reported moods: defaults, changes, schedule claims, export and /forget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import PersonSettings, Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "data" / "moodbot.db")
    try:
        yield store
    finally:
        await store.close()


async def test_a_person_without_a_row_gets_the_defaults(store: Store) -> None:
    assert await store.person_settings(7) == PersonSettings(user_id=7)


async def test_changes_are_kept_and_typed(store: Store) -> None:
    changed = await store.update_settings(7, language="zh", time_zone="Asia/Shanghai", checkin_enabled=True,
                                          checkin_time="21:30", analyse_mood=False)
    assert changed.language == "zh" and changed.checkin_enabled is True and changed.analyse_mood is False
    assert await store.person_settings(7) == changed
    again = await store.update_settings(7, reply_length="short")
    assert again.language == "zh" and again.reply_length == "short"


@pytest.mark.parametrize(
    "changes",
    [{"nickname": "x"}, {"checkin_time": "25:00"}, {"quiet_start": "8pm"}, {"last_checkin_day": "yesterday"},
     {"user_id": 8}, {"updated_at": 1.0}],
)
async def test_bad_changes_are_refused_and_write_nothing(store: Store, changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        await store.update_settings(7, **changes)
    assert (await store.counts())["person_settings"] == 0


async def test_a_check_in_is_claimed_once_a_day(store: Store) -> None:
    await store.update_settings(7, checkin_enabled=True)
    assert await store.claim_checkin(7, "2026-11-28") is True
    assert await store.claim_checkin(7, "2026-11-28") is False
    assert await store.claim_checkin(7, "2026-11-27") is False  # an older day never goes out late
    assert await store.claim_checkin(7, "2026-11-29") is True
    assert await store.claim_weekly(7, "2026-11-29") is True  # kept apart from the check-in


async def test_scheduled_people_and_stopping_them(store: Store) -> None:
    await store.update_settings(1, checkin_enabled=True)
    await store.update_settings(2, weekly_enabled=True)
    await store.update_settings(3, language="en")
    assert [p.user_id for p in await store.scheduled_people()] == [1, 2]
    await store.stop_schedules(1)
    assert [p.user_id for p in await store.scheduled_people()] == [2]


async def test_self_reports_one_per_day_with_a_note(store: Store) -> None:
    await store.report_mood(7, "2026-11-28", 0.5)
    assert await store.note_day(7, "2026-11-28", "long walk") is True
    replaced = await store.report_mood(7, "2026-11-28", -0.5)
    assert (replaced.score, replaced.note) == (-0.5, "long walk")
    assert await store.note_day(7, "2026-11-27", "no report that day") is False
    await store.report_mood(7, "2026-11-30", 1.0)
    assert [r.day for r in await store.self_reports(7)] == ["2026-11-28", "2026-11-30"]
    assert [r.day for r in await store.self_reports(7, since_day="2026-11-29")] == ["2026-11-30"]
    with pytest.raises(ValueError):
        await store.report_mood(7, "2026-11-28", 2.0)


async def test_export_has_them_in_the_private_chat_only(store: Store) -> None:
    await store.update_settings(7, language="zh")
    await store.report_mood(7, "2026-11-28", 0.5)
    private = await store.export_user(chat_id=7, user_id=7)
    assert private["settings"]["language"] == "zh"
    assert private["self_reports"][0]["score"] == 0.5
    group = await store.export_user(chat_id=-100, user_id=7)
    assert "settings" not in group and "self_reports" not in group


async def test_forget_in_the_private_chat_deletes_them(store: Store) -> None:
    await store.update_settings(7, language="zh")
    await store.report_mood(7, "2026-11-28", 0.5)
    await store.forget(chat_id=-100, user_id=7)  # a group's /forget keeps personal settings
    assert (await store.person_settings(7)).language == "zh"
    await store.forget(chat_id=7, user_id=7)
    assert await store.person_settings(7) == PersonSettings(user_id=7)
    assert await store.self_reports(7) == []
    counts = await store.counts()
    assert counts["person_settings"] == 0 and counts["self_reports"] == 0
