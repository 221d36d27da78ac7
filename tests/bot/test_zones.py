"""Time zones and the /settings buttons, pure: the Etc/GMT sign convention, typed cities, a person's zone and its
fallback, local midnight across a daylight-saving change, and callback data that is compact and checked."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.flow.mood import period_start
from bot.views import settings as view
from bot.zones import CITY_ZONES, OFFSET_HOURS, find_zones, is_zone, offset_zone, person_zone, utc_offset_text
from storage import PersonSettings

JANUARY = datetime(2026, 1, 15, 12, tzinfo=UTC)
JULY = datetime(2026, 7, 15, 12, tzinfo=UTC)


@pytest.mark.parametrize("hours", OFFSET_HOURS)
def test_a_whole_hour_offset_is_the_etc_zone_with_the_posix_sign(hours: int) -> None:
    name = offset_zone(hours)
    assert is_zone(name)
    assert JANUARY.astimezone(ZoneInfo(name)).utcoffset() == timedelta(hours=hours)
    assert JULY.astimezone(ZoneInfo(name)).utcoffset() == timedelta(hours=hours), "no daylight saving time"


def test_the_sign_convention_spelled_out() -> None:
    assert (offset_zone(8), offset_zone(-5), offset_zone(0)) == ("Etc/GMT-8", "Etc/GMT+5", "Etc/UTC")
    with pytest.raises(ValueError):
        offset_zone(15)


def test_every_city_button_is_a_real_zone() -> None:
    assert all(is_zone(name) for _, name in CITY_ZONES)
    assert len(CITY_ZONES) == 10


@pytest.mark.parametrize(
    ("typed", "first"),
    [("Lisbon", "Europe/Lisbon"), ("  new   york ", "America/New_York"), ("los_angeles", "America/Los_Angeles"),
     ("kolkata", "Asia/Kolkata"), ("Europe/Paris", "Europe/Paris"), ("UTC+8", "Etc/GMT-8"), ("gmt -5", "Etc/GMT+5"),
     ("北京", "Asia/Shanghai"), ("Beijing", "Asia/Shanghai"), ("东京", "Asia/Tokyo")],
)
def test_a_typed_city_is_matched_against_iana_names(typed: str, first: str) -> None:
    assert find_zones(typed)[0] == first


def test_typed_cities_that_match_several_or_none() -> None:
    several = find_zones("san")
    assert 1 < len(several) <= 8 and all(is_zone(name) for name in several)
    assert "America/Santiago" in several
    assert find_zones("Atlantis") == [] and find_zones("") == [] and find_zones("UTC+20") == []
    assert find_zones("../../etc/passwd") == [] and find_zones("x" * 10_000) == []
    assert not any(name.startswith(("Etc/", "US/")) for name in find_zones("pacific"))


def test_a_persons_zone_falls_back_to_the_configured_offset() -> None:
    assert person_zone("Europe/Berlin", 480) == ZoneInfo("Europe/Berlin")
    assert person_zone(None, 480) == timezone(timedelta(hours=8))
    assert person_zone("Nowhere/Atlantis", -300) == timezone(timedelta(hours=-5)), "a name this system lost"


def test_utc_offsets_are_shown_with_daylight_saving_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert (utc_offset_text(berlin, JANUARY), utc_offset_text(berlin, JULY)) == ("UTC+01:00", "UTC+02:00")
    assert utc_offset_text(ZoneInfo("Asia/Kolkata"), JULY) == "UTC+05:30"
    assert utc_offset_text(ZoneInfo("America/St_Johns"), JANUARY) == "UTC−03:30"
    assert utc_offset_text(UTC, JULY) == "UTC±00:00"


def test_a_period_starts_at_local_midnight_across_a_daylight_saving_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 until 01:00 UTC on 2024-03-31, then UTC+2
    assert period_start(date(2024, 3, 31), 1, berlin) == datetime(2024, 3, 30, 23, tzinfo=UTC).timestamp()
    assert period_start(date(2024, 4, 1), 1, berlin) == datetime(2024, 3, 31, 22, tzinfo=UTC).timestamp()
    assert period_start(date(2024, 4, 1), 2, berlin) == datetime(2024, 3, 30, 23, tzinfo=UTC).timestamp()
    shanghai = ZoneInfo("Asia/Shanghai")
    assert period_start(date(2024, 3, 11), 1, shanghai) == datetime(2024, 3, 10, 16, tzinfo=UTC).timestamp()
    assert period_start(date(2024, 3, 11), None, shanghai) == 0.0


# -- callback data ------------------------------------------------------------------------------------------------

BIG_ID = -1_000_000_000_000  # longer than any user id Telegram hands out


@pytest.mark.parametrize("page", view.PAGES)
@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_button_carries_compact_data_that_reads_back(page: str, language: str) -> None:
    settings = PersonSettings(user_id=BIG_ID, time_zone="America/Argentina/ComodRivadavia")
    menu = view.settings_menu(page, settings, language, ZoneInfo("Asia/Tokyo"), JULY)
    for label, data in (button for row in menu.rows for button in row):
        assert len(data.encode()) <= view.CALLBACK_DATA_LIMIT
        press = view.parse_press(data)
        assert press is not None and press.owner == BIG_ID, (label, data)


def test_typed_city_buttons_leave_out_names_too_long_for_telegram() -> None:
    menu = view.city_matches(BIG_ID, "x", ["America/Argentina/ComodRivadavia", "Europe/Lisbon"], "en")
    assert all(len(data.encode()) <= view.CALLBACK_DATA_LIMIT for row in menu.rows for _, data in row)
    assert view.city_matches(42, "x", ["America/Argentina/ComodRivadavia"], "en").rows[0][0][0] == (
        "America/Argentina/ComodRivadavia"
    )


def test_a_long_typed_city_is_shortened_in_the_answer() -> None:
    menu = view.city_matches(42, "Atlantis " * 1000, [], "en")
    assert len(menu.text) < 200 and "Atlantis Atlantis" in menu.text


@pytest.mark.parametrize(
    "data",
    [None, "", "set:", "set:1", "set:1:tz", "set:x:tz:Asia/Tokyo", "set:1:tz:Asia/Nowhere", "set:1:cit:7",
     "set:1:quiet:22-08", "set:1:lang:fr", "set:1:done:now", "fix:1:positive", "set:1:page:home:extra"],
)
def test_garbled_data_is_refused(data: str | None) -> None:
    assert view.parse_press(data) is None


def test_what_each_press_changes() -> None:
    def changes(action: str, value: str = "") -> dict[str, object]:
        press = view.parse_press(view.press_data(7, action, value))
        assert press is not None
        return view.changes_for(press)

    assert changes("lang", "tg") == {"language": None}
    assert changes("tz", "Etc/GMT-8") == {"time_zone": "Etc/GMT-8"}
    assert changes("cit", "07") == {"checkin_time": "07:00", "checkin_enabled": True}
    assert changes("quiet", "23-08") == {"quiet_start": "23:00", "quiet_end": "08:00"}
    assert changes("quiet", "off") == {"quiet_start": None, "quiet_end": None}
    assert changes("wkd", "0") == {"weekly_day": 0, "weekly_enabled": True}
    assert changes("mood", "off") == {"analyse_mood": False}
    assert changes("page", "wk") == {} and changes("done") == {}
