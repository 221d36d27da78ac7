"""The weekly summary's numbers and its words, by a fixed template: the week's average mood, its best and hardest
day, the change against the week before and the check-ins. Pure and synchronous; the same numbers always give the
same text."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from bot.i18n import _, translator
from bot.views.checkins import face as checkin_face
from bot.views.mood import TREND_FLAT, day_mood_text, mood_emoji, short_date, signed
from storage import DayMood, SelfReport

WEEK_DAYS = 7

HEADER = _("🗓 Your week · {first} – {last}")
UP = _("That is up {change} on the week before.")
DOWN = _("That is down {change} on the week before.")
SAME = _("That is about the same as the week before.")
BEST_AND_WORST = _("Your best day was {best}, your hardest {worst}.")
NO_MESSAGES = _("You didn't write to me this week.")
CHECKINS = _("You checked in on {count} of 7 days, {face} {average} on average.")
NO_CHECKINS = _("No check-ins this week.")
QUIET_WEEK = _("A quiet week – nothing to sum up yet. I'm here whenever you'd like to talk. 🌱")
CHART_TITLE = _("Your week")


@dataclass(frozen=True)
class WeekNumbers:
    """One person's week (seven local days ending on ``last_day``) in numbers."""

    first_day: date
    last_day: date
    messages: int
    average: float | None  # the model's mood of the week's messages, None without any
    previous_average: float | None  # the same for the seven days before
    best: DayMood | None  # None with fewer than two days with messages
    worst: DayMood | None
    days: list[DayMood] = field(default_factory=list)  # the days with messages, for the chart
    reports: list[SelfReport] = field(default_factory=list)  # the week's check-ins

    @property
    def checkins(self) -> int:
        """How many days of the week the person checked in."""
        return len(self.reports)

    @property
    def checkin_average(self) -> float | None:
        """The average of the scores the person gave, None without check-ins."""
        return sum(r.score for r in self.reports) / len(self.reports) if self.reports else None

    @property
    def change(self) -> float | None:
        """How much the average moved since the week before; None when either week has no mood."""
        if self.average is None or self.previous_average is None:
            return None
        return self.average - self.previous_average


def weekly_summary_text(numbers: WeekNumbers, language: str) -> str:
    """The summary: a header with the week's dates, then two or three sentences from ``numbers``."""
    gettext = translator(language).gettext
    header = gettext(HEADER).format(
        first=short_date(numbers.first_day, numbers.last_day, language),
        last=short_date(numbers.last_day, numbers.last_day, language),
    )
    if numbers.average is None and not numbers.reports:
        return f"{header}\n{gettext(QUIET_WEEK)}"
    sentences = [*_mood_sentences(numbers, language), _checkin_sentence(numbers, language)]
    return f"{header}\n" + " ".join(sentences)


def _mood_sentences(numbers: WeekNumbers, language: str) -> list[str]:
    translations = translator(language)
    if numbers.average is None:
        return [translations.gettext(NO_MESSAGES)]
    average = translations.ngettext(
        "This week your mood averaged {average} {face} across {count} message.",
        "This week your mood averaged {average} {face} across {count} messages.",
        numbers.messages,
    ).format(
        average=signed(numbers.average), face=mood_emoji(numbers.average), count=numbers.messages
    )
    sentences = [average]
    change = numbers.change
    if change is not None:
        if change >= TREND_FLAT:
            sentences.append(translations.gettext(UP).format(change=f"{change:.2f}"))
        elif change <= -TREND_FLAT:
            sentences.append(translations.gettext(DOWN).format(change=f"{-change:.2f}"))
        else:
            sentences.append(translations.gettext(SAME))
    if numbers.best is not None and numbers.worst is not None:
        sentences.append(
            translations.gettext(BEST_AND_WORST).format(
                best=day_mood_text(numbers.best, numbers.last_day, language),
                worst=day_mood_text(numbers.worst, numbers.last_day, language),
            )
        )
    return sentences


def _checkin_sentence(numbers: WeekNumbers, language: str) -> str:
    gettext = translator(language).gettext
    average = numbers.checkin_average
    if average is None:
        return gettext(NO_CHECKINS)
    return gettext(CHECKINS).format(count=numbers.checkins, face=checkin_face(average), average=signed(average))


def chart_title(language: str) -> str:
    """The weekly chart's title."""
    return translator(language).gettext(CHART_TITLE)
