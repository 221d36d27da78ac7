"""The ``/mood`` report, assembled once for every front end: the period asked for, the summary of the person (or of
the whole group) with the period before for the trend and, in a group, each member's; then its text and what its
chart draws, in the reader's language."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from bot.config import Config
from bot.i18n import DEFAULT_LANGUAGE, translate
from bot.views import checkins as checkin_view
from bot.views import mood as mood_view
from bot.views import settings as settings_view
from bot.zones import person_zone
from storage import DayMood, MoodSummary, SelfReport, Store, UserMood


@dataclass(frozen=True)
class MoodChart:
    """What the ``/mood`` chart draws: the days with data, the days the period spans, whose mood (``group``: the
    chat's) over how many days (``period``, None: all time), the language of its words, and the moods the person
    reported themselves (check-ins) in it."""

    days: list[DayMood]
    first_day: date
    last_day: date
    period: int | None
    group: bool = False
    language: str = DEFAULT_LANGUAGE
    self_reports: list[SelfReport] = field(default_factory=list)

    def title(self, language: str) -> str:
        """The chart's title in ``language``, e.g. ``Your mood · the last 7 days``."""
        return mood_view.chart_title(self.group, self.period, language)


@dataclass(frozen=True)
class MoodReport:
    """A ``/mood`` answer: its text and, when the period has messages, its chart."""

    text: str
    chart: MoodChart | None = None


async def mood_report(
    store: Store, config: Config, *, chat_id: int, user_id: int | None, asker_id: int, argument: str | None,
    today: date | None = None, language: str = DEFAULT_LANGUAGE,
) -> MoodReport:
    """The mood in ``chat_id`` over the period ``argument`` names (``7d``, ``30d``, ``all`` …; None: the default) of
    ``user_id``, or of everyone in the chat with a line per member (``user_id`` None: a group), in ``language`` (the
    asker's). Days are counted in the time zone of ``asker_id`` (the person who asked: their own, else the
    configured default), and the answer says so when they turned their mood analysis off. In the person's private
    chat, what they said in their check-ins is shown beside it."""
    try:
        days = mood_view.parse_period(argument, config.mood.default_days)
    except ValueError as exc:
        return MoodReport(translate(language, str(exc)))
    asker = await store.person_settings(asker_id)
    zone = person_zone(asker.time_zone, config.mood.utc_offset_minutes)
    today = today or datetime.now(zone).date()
    in_group = user_id is None
    summary, previous, members = await load_mood(store, chat_id, user_id, days, today, zone, with_members=in_group)
    note = None
    if in_group:
        note = mood_view.GROUP_MOOD_ALL_NOTE if config.groups.log_all else mood_view.GROUP_MOOD_ADDRESSED_NOTE
    text = mood_view.mood_summary_text(
        summary, days, today, group=in_group, previous=previous, members=members, note=note, language=language
    )
    if not asker.analyse_mood:
        text = f"{translate(language, settings_view.ANALYSIS_OFF_NOTE)}\n\n{text}"
    first_day, last_day = mood_view.period_days(summary, days, today)
    reports = await self_reports(store, chat_id, user_id, days, today)
    if days is None and reports:
        first_day = min(first_day, date.fromisoformat(reports[0].day))
    reports = checkin_view.reports_within(reports, first_day, last_day)
    said = checkin_view.self_report_line(reports, first_day, last_day, language)
    if said is not None:
        text = f"{text}\n{said}"
    if summary.messages == 0 and not reports:
        return MoodReport(text)  # "nothing yet", never an empty chart
    return MoodReport(text, MoodChart(summary.days, first_day, last_day, days, in_group, language, reports))


async def self_reports(
    store: Store, chat_id: int, user_id: int | None, days: int | None, today: date
) -> list[SelfReport]:
    """The person's check-ins of the period (from its first day on), only in their private chat (in a group their
    own answers stay out of the chat's report)."""
    if user_id is None or chat_id != user_id:
        return []
    since = None if days is None else (today - timedelta(days=days - 1)).isoformat()
    return await store.self_reports(user_id, since_day=since)


async def load_mood(
    store: Store, chat_id: int, user_id: int | None, days: int | None, today: date, zone: tzinfo, *,
    with_members: bool,
) -> tuple[MoodSummary, MoodSummary | None, list[UserMood] | None]:
    """The period's mood (``user_id`` None: the whole chat) by day in ``zone``, the previous period's of the same
    length (None for all time or an empty period) and, ``with_members``, each member's."""
    since = period_start(today, days, zone)
    scope = {"chat_id": chat_id, "user_id": user_id, "zone": zone}
    summary = await store.mood_summary(since=since, **scope)
    if summary.messages == 0:
        return summary, None, None
    previous = None
    if days is not None:
        previous_start = period_start(today - timedelta(days=days), days, zone)
        previous = await store.mood_summary(since=previous_start, until=since, **scope)
    members = None
    if with_members:
        members = await store.mood_by_user(chat_id=chat_id, since=since, zone=zone)
    return summary, previous, members


def period_start(today: date, days: int | None, zone: tzinfo) -> float:
    """Unix time of midnight in ``zone`` ``days - 1`` days before ``today`` (0 for all time). Midnight is taken
    with that day's own offset, so a period that spans a daylight-saving change still starts at local midnight."""
    if days is None:
        return 0.0
    first = today - timedelta(days=days - 1)
    return datetime.combine(first, time(0), tzinfo=zone).timestamp()
