"""The words of the daily check-in: the question and its five faces, the answer to a tap, the offer after /start,
and the line /mood adds about what the person said themselves. Pure and synchronous."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta, timezone

from bot.i18n import _, translate, translator
from bot.views.mood import signed
from storage import SelfReport

# The five faces of a check-in, left to right, and the score each one stores (the model's scale, -1 … +1).
FACES = ("😞", "🙁", "😐", "🙂", "😄")
SCORES = (-1.0, -0.5, 0.0, 0.5, 1.0)

QUESTION = _("How are you feeling today?")
SAVED = _(
    "Noted: {face} for today. Thank you!\n\n"
    "If you like, tell me a little about your day: your next message is kept as today's note (and I'll answer it "
    "as usual). Tap another face to change your answer."
)
NOT_YOURS = _("This check-in was meant for someone else. 🙂")
UNREADABLE = _(
    "Sorry, I couldn't read that button – it may be from an older version of me. Your check-ins are in /settings."
)

OFFER = _(
    "Would you like a gentle daily check-in? Once a day I'd ask “How are you feeling today?”, you answer with one "
    "tap, and /mood shows what you said beside what I picked up from your messages."
)
OFFER_YES = _("Yes, at {time}")
OFFER_SETTINGS = _("I'll choose in /settings")
OFFER_NO = _("No, thanks")
OFFER_ACCEPTED = _(
    "Done! I'll check in every day at {time} ({zone}). You can change the time, your time zone or quiet hours in "
    "/settings."
)
OFFER_TO_SETTINGS = _("Sure – open /settings whenever you like to choose a time for your check-in.")
OFFER_DECLINED = _("No problem. If you change your mind, check-ins are in /settings.")


def face(score: float) -> str:
    """The check-in face for one of ``SCORES`` (the nearest one for any other score)."""
    nearest = min(range(len(SCORES)), key=lambda index: abs(SCORES[index] - score))
    return FACES[nearest]


def saved_text(score: float, language: str) -> str:
    """The check-in message after a tap: what was noted, and the invitation to add a note."""
    return translate(language, SAVED, face=face(score))


def offer_accepted_text(checkin_time: str, zone: str, language: str) -> str:
    """The offer after "yes": when the check-ins come, in which time zone."""
    return translate(language, OFFER_ACCEPTED, time=checkin_time, zone=zone)


def zone_label(time_zone: str | None, default_offset_minutes: int) -> str:
    """The person's time zone as they'd read it: its IANA name, or the default offset as ``UTC+08:00``."""
    if time_zone:
        return time_zone
    return timezone(timedelta(minutes=default_offset_minutes)).tzname(None)


def reports_within(reports: Sequence[SelfReport], first_day: date, last_day: date) -> list[SelfReport]:
    """The reports of the days from ``first_day`` to ``last_day``."""
    first, last = first_day.isoformat(), last_day.isoformat()
    return [report for report in reports if first <= report.day <= last]


def self_report_line(reports: Sequence[SelfReport], first_day: date, last_day: date, language: str) -> str | None:
    """``You said: 🙂 on 4 of 7 days, average +0.40`` for the period's check-ins; None without any."""
    within = reports_within(reports, first_day, last_day)
    if not within:
        return None
    days = (last_day - first_day).days + 1
    average = sum(report.score for report in within) / len(within)
    return translator(language).ngettext(
        "You said: {face} on {count} of {days} day, average {average}",
        "You said: {face} on {count} of {days} days, average {average}",
        days,
    ).format(face=face(average), count=len(within), days=days, average=signed(average))
