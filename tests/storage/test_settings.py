"""A person's settings and self-reported moods: defaults, changes, schedule claims, export and /forget; mood analysis
switched off."""

from __future__ import annotations

import pytest

from storage import PersonSettings, SentimentRecord, Store


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


# -- "Analyse my mood" off ----------------------------------------------------------------------------------------


async def arrive(store: Store, user_id: int, text: str, tg: int) -> int:
    stored = await store.record_arrival(
        chat_id=user_id, chat_kind="private", chat_title=None, user_id=user_id, first_name=None, username=None,
        text=text, telegram_message_id=tg, reply_owed=False,
    )
    return stored.id


async def backlog(store: Store) -> list[str]:
    return [message.text for message in await store.unclassified_messages()]


async def test_with_analysis_off_no_mood_is_owed_and_turning_it_on_does_not_owe_one_later(store: Store) -> None:
    await arrive(store, 7, "written while on", 1)
    await store.update_settings(7, analyse_mood=False)
    off = await arrive(store, 7, "written while off", 2)
    await arrive(store, 8, "someone else's", 1)
    assert await backlog(store) == ["someone else's"], "the back-fill skips all of hers while it is off"

    await store.update_settings(7, analyse_mood=True)
    assert await backlog(store) == ["written while on", "someone else's"], "only what she wrote while it was on"
    await store.update_user_message_text(chat_id=7, telegram_message_id=2, text="edited while on")
    assert off in [message.id for message in await store.unclassified_messages()], "an edit made while on is owed"


async def test_an_edit_while_off_drops_the_old_mood_and_owes_none(store: Store) -> None:
    message_id = await arrive(store, 7, "a good day", 1)
    await store.add_sentiment(message_id, SentimentRecord("positive", 0.8, {}, "m"))
    await store.update_settings(7, analyse_mood=False)
    await store.update_user_message_text(chat_id=7, telegram_message_id=1, text="a bad day")
    await store.update_settings(7, analyse_mood=True)
    assert await backlog(store) == []
    assert (await store.mood_summary(chat_id=7, user_id=7, since=0)).messages == 0


async def test_a_discarded_message_owes_nothing_and_is_in_no_history(store: Store) -> None:
    kept = await arrive(store, 7, "hello", 1)
    typed = await arrive(store, 7, "Lisbon", 2)
    assert await store.discard_user_message(typed) is True
    assert await store.discard_user_message(typed) is False
    assert await backlog(store) == ["hello"]
    assert [turn.text for turn in await store.history(chat_id=7, user_id=7, before_id=kept + 10)] == ["hello"]
