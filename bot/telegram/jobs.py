"""Work the bot does on its own, beside the updates: late replies at start-up, the back-fill of missing moods, the
retention purge, and the check-ins and weekly summaries. ``build_application`` schedules them."""

from __future__ import annotations

import asyncio
import logging
import time

from telegram import Bot
from telegram.constants import ChatType

from bot.telegram.context import MoodContext, Services
from bot.telegram.language import person_language
from bot.telegram.ordering import PerChatUpdateProcessor
from bot.telegram.replies import ReplyTarget, answer_message
from bot.telegram.scheduled import ScheduledSender
from storage import OwedReply

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
RETENTION_FIRST_RUN_S = 60.0  # the first retention purge, this long after start-up (then once a day)
BACKFILL_FIRST_RUN_S = 0.0  # the first back-fill round, this long after start-up
BACKFILL_INTERVAL_S = 30.0  # then a round this often
BACKFILL_ROUND_S = 20.0  # a round stops after about this long (the next one goes on)


async def queue_late_replies(
    bot: Bot, services: Services, processor: PerChatUpdateProcessor
) -> list[asyncio.Future[None]]:
    """Queue a reply to every message that was still waiting for one when moodbot last stopped (queued, or with
    its reply cut short), each in its chat; those older than ``telegram.late_reply_max_age_minutes`` get none and
    keep their mood. Returns when each queued reply is done."""
    owed = await services.store.owed_replies()
    max_age_s = services.config.telegram.late_reply_max_age_minutes * 60
    cutoff = time.time() - max_age_s
    late = [o for o in owed if max_age_s > 0 and o.message.created_at >= cutoff]
    expired = [o.message.id for o in owed if max_age_s <= 0 or o.message.created_at < cutoff]
    await services.store.settle_replies(expired)
    if expired:
        logger.info("%d messages waited too long for their reply: no late reply, their mood is kept", len(expired))
    if late:
        logger.info("answering %d messages left unanswered by the last stop", len(late))
    return [
        processor.submit(
            owed_reply.message.chat_id,
            answer_message(
                bot, services.conversations, owed_reply.message, late_reply_target(owed_reply),
                draft_message_id=owed_reply.draft_message_id,
                language=await person_language(services.store, services.config, owed_reply.message.user_id),
            ),
        )
        for owed_reply in late
    ]


def late_reply_target(owed: OwedReply) -> ReplyTarget:
    """Where a late reply goes: the message's chat and forum topic, quoting the message in groups."""
    message = owed.message
    private = owed.chat_kind == ChatType.PRIVATE
    return ReplyTarget(message.chat_id, None if private else message.telegram_message_id, owed.thread_id, private)


async def finish_late_replies(context: MoodContext) -> None:
    """Waits for the late replies queued at start-up, so that stopping finishes them rather than cutting them."""
    late: list[asyncio.Future[None]] = context.job.data if context.job is not None else []
    results = await asyncio.gather(*late, return_exceptions=True)
    failed = sum(isinstance(result, BaseException) for result in results)
    if failed:
        logger.warning("%d of %d late replies failed", failed, len(results))


async def backfill(context: MoodContext) -> None:
    """Classifies messages stored without a mood (engine busy or down, over the rate limit, past a chat's backlog,
    a crash), oldest first, for up to ``BACKFILL_ROUND_S``; runs every ``BACKFILL_INTERVAL_S``, never raises."""
    services = context.services
    try:
        in_flight = {message.id for message in services.arrivals.values()}  # their handlers classify them
        done = await services.conversations.backfill(
            skip=in_flight, deadline=time.monotonic() + BACKFILL_ROUND_S
        )
    except Exception:
        logger.exception("back-fill round failed; the next one tries again")
        return
    if done:
        logger.info("back-filled the sentiment of %d stored messages", done)


async def purge_expired(context: MoodContext) -> None:
    """Deletes messages older than ``storage.retention_days`` (with their replies and moods); runs daily."""
    days = context.config.storage.retention_days
    if days <= 0:
        return
    deleted = await context.services.conversations.purge_older_than(time.time() - days * SECONDS_PER_DAY)
    logger.info("retention: deleted %d messages older than %d days", deleted, days)


async def send_scheduled(context: MoodContext) -> None:
    """Sends the check-ins and weekly summaries due now (``job.data`` is the ``ScheduledSender``); runs every
    minute, never raises."""
    sender: ScheduledSender = context.job.data  # type: ignore[union-attr,assignment]
    try:
        await sender.tick()
    except Exception:
        logger.exception("the check-in round failed; the next one tries again")
