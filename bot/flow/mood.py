"""The ``/mood`` report, assembled once for every front end: the period asked for, the summary of the person (or of
the whole group) with the period before for the trend and, in a group, each member's; then its text and what its
chart draws."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from bot.config import Config
from bot.views import checkins as checkin_view
from bot.views import mood as mood_view
from storage import DayMood, MoodSummary, SelfReport, Store, UserMood


@dataclass(frozen=True)
class MoodChart:
    """What the ``/mood`` chart draws: the days with data, the days the period spans, its title, and the moods the
    person reported themselves (check-ins) in it."""

    days: list[DayMood]
    first_day: date
    last_day: date
    title: str
    self_reports: list[SelfReport] = field(default_factory=list)


@dataclass(frozen=True)
class MoodReport:
    """A ``/mood`` answer: its text and, when the period has messages, its chart."""

    text: str
    chart: MoodChart | None = None


async def mood_report(
    store: Store, config: Config, *, chat_id: int, user_id: int | None, argument: str | None,
    today: date | None = None, language: str = "en",
) -> MoodReport:
    """The mood in ``chat_id`` over the period ``argument`` names (``7d``, ``30d``, ``all`` …; None: the default) of
    ``user_id``, or of everyone in the chat with a line per member (``user_id`` None: a group). In the person's
    private chat, what they said in their check-ins is shown beside it."""
    try:
        days = mood_view.parse_period(argument, config.mood.default_days)
    except ValueError as exc:
        return MoodReport(str(exc))
    offset = config.mood.utc_offset_minutes
    today = today or local_today(offset)
    in_group = user_id is None
    who = "This chat's" if in_group else "Your"
    summary, previous, members = await load_mood(store, chat_id, user_id, days, today, offset, with_members=in_group)
    note = None
    if in_group:
        note = mood_view.GROUP_MOOD_ALL_NOTE if config.groups.log_all else mood_view.GROUP_MOOD_ADDRESSED_NOTE
    text = mood_view.mood_summary_text(summary, days, today, who=who, previous=previous, members=members, note=note)
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
    title = mood_view.chart_title(who, days)
    return MoodReport(text, MoodChart(summary.days, first_day, last_day, title, reports))


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
    store: Store, chat_id: int, user_id: int | None, days: int | None, today: date, utc_offset_minutes: int, *,
    with_members: bool,
) -> tuple[MoodSummary, MoodSummary | None, list[UserMood] | None]:
    """The period's mood (``user_id`` None: the whole chat), the previous period's of the same length (None for all
    time or an empty period) and, ``with_members``, each member's."""
    since = period_start(today, days, utc_offset_minutes)
    scope = {"chat_id": chat_id, "user_id": user_id, "utc_offset_minutes": utc_offset_minutes}
    summary = await store.mood_summary(since=since, **scope)
    if summary.messages == 0:
        return summary, None, None
    previous = None
    if days is not None:
        previous_start = period_start(today - timedelta(days=days), days, utc_offset_minutes)
        previous = await store.mood_summary(since=previous_start, until=since, **scope)
    members = None
    if with_members:
        members = await store.mood_by_user(chat_id=chat_id, since=since, utc_offset_minutes=utc_offset_minutes)
    return summary, previous, members


def local_today(utc_offset_minutes: int) -> date:
    """Today's date where the self-hoster lives."""
    return (datetime.now(UTC) + timedelta(minutes=utc_offset_minutes)).date()


def period_start(today: date, days: int | None, utc_offset_minutes: int) -> float:
    """Unix time of local midnight ``days - 1`` days before ``today`` (0 for all time)."""
    if days is None:
        return 0.0
    first = today - timedelta(days=days - 1)
    local_midnight = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return (local_midnight - timedelta(minutes=utc_offset_minutes)).timestamp()
