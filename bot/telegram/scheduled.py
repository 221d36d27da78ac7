"""What goes out on the clock: the daily check-ins and the weekly summaries, sent from a JobQueue job every minute.

Each tick reads everyone with a schedule from the database (so a restart rebuilds the schedule from there: the first
tick runs right after start-up), asks the planner (``bot.flow.schedule``) what is due, and for each person claims
the day in the store (``claim_checkin`` / ``claim_weekly``, atomic: never twice a day, whatever races) right before
sending.

Pacing. Telegram allows a bot about 30 messages a second overall, and the app's ``AIORateLimiter`` holds every
request to that in one shared queue. Hundreds of check-ins due in the same minute, sent at once, would fill that
queue, and the replies to people writing right then would wait behind them. So scheduled messages go through a
``Pacer`` of their own: at most ``SENDS_PER_SECOND`` (20) starts a second and ``CONCURRENT_SENDS`` at once, leaving
about a third of the bot's rate to replies, which never wait for more than the few scheduled requests in flight.

Failures. A person who blocked the bot (``Forbidden``) has their schedules switched off. Any other error is logged
(the exception's class and Telegram's words, never a URL, which would hold the token) and that message is not
retried: a request that timed out may well have reached the person, and asking twice is worse than missing a day,
so the claim is never released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from telegram import Bot
from telegram.error import Forbidden, TelegramError

from bot.flow.checkins import CheckIns
from bot.flow.schedule import Due, plan
from bot.i18n import DEFAULT_LANGUAGE, choose_language, translate
from bot.telegram.checkins import checkin_buttons
from bot.views import checkins as checkin_view
from bot.views import weekly as weekly_view
from bot.views.charts import render_mood_chart
from bot.views.telegram_text import photo_caption
from storage import PersonSettings

logger = logging.getLogger(__name__)

TICK_INTERVAL_S = 60.0  # how often the job looks for what is due
FIRST_TICK_S = 1.0  # the first look, this long after start-up: what a stop made late goes out now
SENDS_PER_SECOND = 20.0  # of Telegram's ~30 a second for the whole bot; the rest is for replies
CONCURRENT_SENDS = 4


class Pacer:
    """At most ``per_second`` starts a second and ``concurrency`` holders at once; the clock and the sleep are
    injectable so it is tested without waiting."""

    def __init__(
        self, per_second: float = SENDS_PER_SECOND, concurrency: int = CONCURRENT_SENDS,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self._slots = asyncio.Semaphore(concurrency)
        self._turn = asyncio.Lock()  # starts are spaced one at a time, in arrival order
        self._next_start = float("-inf")

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the slots, started no sooner than ``1 / per_second`` after the previous start."""
        async with self._slots:
            async with self._turn:
                wait = self._next_start - self.clock()
                if wait > 0:
                    await self.sleep(wait)
                self._next_start = max(self._next_start, self.clock()) + self.interval
            yield


@dataclass
class TickReport:
    """What one tick did."""

    checkins: int = 0
    weekly: int = 0
    stopped: int = 0  # people who blocked the bot: their schedules are off now
    failed: int = 0


class ScheduledSender:
    """Sends what the planner says is due, paced; ``tick`` is what the job runs (and tests call)."""

    def __init__(
        self, bot: Bot, checkins: CheckIns, pacer: Pacer | None = None, default_language: str = DEFAULT_LANGUAGE
    ) -> None:
        self.bot = bot
        self.default_language = default_language
        self.checkins = checkins
        self.store = checkins.store
        self.pacer = pacer or Pacer()
        self.ticks = 0  # finished ticks
        self._running = asyncio.Lock()  # one tick at a time, so the pace holds across them

    async def tick(self) -> TickReport:
        """Send every check-in and weekly summary due now; never raises for one person's failure."""
        async with self._running:
            now = self.checkins.clock()
            people = {p.user_id: p for p in await self.store.scheduled_people()}
            due = plan(people.values(), now, self.checkins.default_offset_minutes)
            report = TickReport()
            results = await asyncio.gather(*(self._serve(people[d.user_id], d, report) for d in due),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    report.failed += 1
                    logger.error("a scheduled message failed", exc_info=result)
            self.ticks += 1
        if due:
            logger.info("scheduled: %d check-ins, %d weekly summaries sent; %d stopped (blocked), %d failed",
                        report.checkins, report.weekly, report.stopped, report.failed)
        return report

    async def _serve(self, settings: PersonSettings, due: Due, report: TickReport) -> None:
        # No update: Telegram's language code is not at hand, so their choice, else the default.
        language = choose_language(settings.language, None, self.default_language)
        user_id = settings.user_id
        if due.checkin_day is not None:
            question = translate(language, checkin_view.QUESTION)
            outcome = await self._deliver(
                settings, "check-in", lambda: self.store.claim_checkin(user_id, due.checkin_day or ""),
                lambda: self.bot.send_message(user_id, question, reply_markup=checkin_buttons(user_id)),
            )
            report.checkins += outcome == "sent"
            if outcome == "stopped":
                report.stopped += 1
                return
            report.failed += outcome == "failed"
        if due.weekly_day is not None:
            send = await self._weekly(settings, due.weekly_day, language)
            outcome = await self._deliver(
                settings, "weekly summary", lambda: self.store.claim_weekly(user_id, due.weekly_day or ""), send
            )
            report.weekly += outcome == "sent"
            report.stopped += outcome == "stopped"
            report.failed += outcome == "failed"

    async def _weekly(
        self, settings: PersonSettings, day: str, language: str
    ) -> Callable[[], Awaitable[object]]:
        """How to send ``settings``' weekly summary for the week ending on ``day``: numbers, text and chart made
        now, before a pace slot is taken (the chart takes a moment to draw)."""
        numbers = await self.checkins.week(settings, day)
        text = weekly_view.weekly_summary_text(numbers, language)
        user_id = settings.user_id
        if not numbers.days and not numbers.reports:
            return lambda: self.bot.send_message(user_id, text)
        png = await asyncio.to_thread(
            render_mood_chart, numbers.days, numbers.first_day, numbers.last_day,
            title=weekly_view.chart_title, self_reports=numbers.reports, language=language,
        )
        caption, rest = photo_caption(text)

        async def send() -> None:
            await self.bot.send_photo(user_id, photo=png, caption=caption)
            if rest is not None:
                await self.bot.send_message(user_id, rest)

        return send

    async def _deliver(
        self, settings: PersonSettings, kind: str, claim: Callable[[], Awaitable[bool]],
        send: Callable[[], Awaitable[object]],
    ) -> str:
        """Claim and send in one pace slot: ``sent``, ``claimed`` elsewhere, ``stopped`` (blocked) or ``failed``."""
        async with self.pacer.slot():
            if not await claim():
                return "claimed"
            try:
                await send()
            except Forbidden as exc:
                logger.info("user %s blocked the bot (%s): check-ins and weekly summary switched off",
                            settings.user_id, exc.message)
                await self.store.stop_schedules(settings.user_id)
                return "stopped"
            except TelegramError as exc:
                logger.warning("the %s for user %s failed (%s: %s); not retried today, it may have arrived",
                               kind, settings.user_id, type(exc).__name__, exc.message)
                return "failed"
        return "sent"
