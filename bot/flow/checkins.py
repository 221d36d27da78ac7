"""Check-ins, written once for every front end: the mood a person taps, the note they may add after it, the offer
after /start, and the numbers of their weekly summary. Knows storage, never Telegram; the clock is handed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from bot.flow.mood import period_start
from bot.flow.schedule import local_day
from bot.views.mood import best_and_worst_day
from bot.views.weekly import WEEK_DAYS, WeekNumbers
from bot.zones import person_zone
from storage import PersonSettings, SelfReport, Store

NOTE_WINDOW = timedelta(hours=3)  # a message this long after a tap (and the same local day) is the day's note
OFFERED_CHECKIN_TIME = "20:00"  # the time the offer after /start proposes


@dataclass(frozen=True)
class NoteInvite:
    """A tap's invitation to add a note: to which local day, until when."""

    day: str
    until: datetime


class NoteInvites:
    """Who was invited to add a note, in memory only: a restart forgets the invitations, and the person's next
    message is then an ordinary message (nothing is lost; the note is optional)."""

    def __init__(self, window: timedelta = NOTE_WINDOW) -> None:
        self.window = window
        self._invites: dict[int, NoteInvite] = {}

    def invite(self, user_id: int, day: str, now: datetime) -> None:
        """``user_id``'s next message (within the window) becomes ``day``'s note; expired invitations go."""
        self._invites = {uid: invite for uid, invite in self._invites.items() if invite.until > now}
        self._invites[user_id] = NoteInvite(day, now + self.window)

    def pending(self, user_id: int) -> bool:
        """True when ``user_id`` holds an invitation (maybe expired): cheap, so every message can ask."""
        return user_id in self._invites

    def take(self, user_id: int, today: str, now: datetime) -> str | None:
        """Use up ``user_id``'s invitation: the day to note, or None when it expired or ``today`` is another day."""
        invite = self._invites.pop(user_id, None)
        if invite is None or now >= invite.until or invite.day != today:
            return None
        return invite.day


class CheckIns:
    """Self-reported moods and their notes, the check-in offer, the weekly numbers; ``clock`` gives aware UTC
    datetimes, ``default_offset_minutes`` is the local time of people without a time zone."""

    def __init__(self, store: Store, default_offset_minutes: int, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.default_offset_minutes = default_offset_minutes
        self.clock = clock
        self.invites = NoteInvites()

    def today(self, settings: PersonSettings) -> date:
        """The person's local date now."""
        return local_day(settings, self.clock(), self.default_offset_minutes)

    async def report(self, user_id: int, score: float) -> tuple[SelfReport, PersonSettings]:
        """Store ``score`` for the person's local day now and invite their next message as that day's note."""
        settings = await self.store.person_settings(user_id)
        day = self.today(settings).isoformat()
        report = await self.store.report_mood(user_id, day, score)
        self.invites.invite(user_id, day, self.clock())
        return report, settings

    async def keep_note(self, user_id: int, text: str) -> bool:
        """Keep ``text`` as the day's note when the person was invited to add one (a tap earlier the same day,
        within ``NOTE_WINDOW``); True when it was kept."""
        if not self.invites.pending(user_id):
            return False
        settings = await self.store.person_settings(user_id)
        day = self.invites.take(user_id, self.today(settings).isoformat(), self.clock())
        return day is not None and await self.store.note_day(user_id, day, text)

    async def take_offer(self, user_id: int) -> PersonSettings | None:
        """The person's settings when the check-in offer after /start is to be made now: once per person, and
        never to someone who already has check-ins on. Marks it as made."""
        settings = await self.store.person_settings(user_id)
        if settings.checkin_offered:
            return None
        settings = await self.store.update_settings(user_id, checkin_offered=True)
        return None if settings.checkin_enabled else settings

    async def accept_offer(self, user_id: int) -> PersonSettings:
        """Switch the daily check-in on at the offered time."""
        return await self.store.update_settings(user_id, checkin_enabled=True, checkin_time=OFFERED_CHECKIN_TIME)

    async def week(self, settings: PersonSettings, last_day: str) -> WeekNumbers:
        """The numbers of the person's week ending on their local ``last_day``, from their private chat."""
        zone = person_zone(settings.time_zone, self.default_offset_minutes)
        return await week_numbers(self.store, settings.user_id, date.fromisoformat(last_day), zone)


async def week_numbers(store: Store, user_id: int, last_day: date, zone: tzinfo) -> WeekNumbers:
    """Seven local days in ``zone`` ending on ``last_day``, in the person's private chat: the mood of their
    messages, that of the week before, their best and hardest day, and their check-ins."""
    first_day = last_day - timedelta(days=WEEK_DAYS - 1)
    since = period_start(last_day, WEEK_DAYS, zone)
    until = period_start(last_day + timedelta(days=1), 1, zone)
    before = period_start(last_day - timedelta(days=WEEK_DAYS), WEEK_DAYS, zone)
    scope = {"chat_id": user_id, "user_id": user_id, "zone": zone}
    week = await store.mood_summary(since=since, until=until, **scope)
    previous = await store.mood_summary(since=before, until=since, **scope)
    reports = await store.self_reports(user_id, since_day=first_day.isoformat())
    extremes = best_and_worst_day(week.days)
    return WeekNumbers(
        first_day=first_day, last_day=last_day, messages=week.messages, average=week.average_score,
        previous_average=previous.average_score, best=extremes[0] if extremes else None,
        worst=extremes[1] if extremes else None, days=week.days,
        reports=[r for r in reports if r.day <= last_day.isoformat()],
    )
