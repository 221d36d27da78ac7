"""All wiring in one place: build the Application, register every handler, open and close resources."""

from __future__ import annotations

import asyncio
import logging
import time

from telegram import BotCommand, Update
from telegram.constants import ChatType
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import handlers
from bot.config import OPEN_BOT_WARNING, Config
from bot.context import SERVICES_KEY, MoodContext, Services
from bot.conversation import Conversations
from bot.intake import EDITED_TEXT, NEW_TEXT, ArrivalQueue, Intake
from bot.ordering import PerChatUpdateProcessor
from engine import Engine, create_engine
from storage import OwedReply, Store

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
RETENTION_FIRST_RUN_S = 60.0  # the first retention purge, this long after start-up (then once a day)
BACKFILL_FIRST_RUN_S = 0.0  # the first back-fill round, this long after start-up
BACKFILL_INTERVAL_S = 30.0  # then a round this often
BACKFILL_ROUND_S = 20.0  # a round stops after about this long (the next one goes on)

COMMANDS = [
    BotCommand("mood", "How my mood moved (7d, 30d, 90d, all)"),
    BotCommand("reset", "Start the conversation fresh"),
    BotCommand("forget", "Delete everything stored about me here"),
    BotCommand("export", "Download everything stored about me here"),
    BotCommand("privacy", "What is kept, where, and for how long"),
    BotCommand("help", "What this bot does"),
    BotCommand("start", "Say hello"),
]


def file_url_for(base_url: str) -> str:
    """The Bot API file URL that goes with ``base_url`` (``…/bot`` → ``…/file/bot``)."""
    root = base_url.removesuffix("/").removesuffix("bot").removesuffix("/")
    return f"{root}/file/bot"


def build_application(config: Config, engine: Engine | None = None) -> Application:
    """The bot, ready for ``run_polling``; pass a started ``engine`` to share one (the app then won't close it)."""
    owns_engine = engine is None
    shared_engine = engine

    update_queue = ArrivalQueue()
    processor = PerChatUpdateProcessor(max_backlog=config.limits.chat_backlog)

    async def post_init(application: Application) -> None:
        store = await Store.open(config.storage.database)
        try:
            model = shared_engine or create_engine(config.engine)
            if owns_engine:
                await model.start()
        except BaseException:
            await store.close()
            raise
        services = Services(
            config, model, store, Conversations(store, model, config.telegram.max_message_chars, config.care)
        )
        application.bot_data[SERVICES_KEY] = services
        await application.bot.set_my_commands(COMMANDS)
        # Before any new update: every update is checked against the rate limit and stored the moment it arrives,
        # before it is confirmed to Telegram; what a crash or restart left unanswered is queued first in its chat.
        intake = Intake(services, application.bot)
        update_queue.arrive, processor.admission = intake.arrive, intake
        late = await queue_late_replies(application, services, processor)
        if application.job_queue is not None:
            if late:  # jobs run to the end before the application stops: the late replies are finished, not cut
                application.job_queue.run_once(finish_late_replies, when=0, data=late, name="late-replies")
            application.job_queue.run_once(backfill, when=BACKFILL_FIRST_RUN_S, name="backfill-at-start")
            application.job_queue.run_repeating(
                backfill, interval=BACKFILL_INTERVAL_S, first=BACKFILL_INTERVAL_S, name="backfill"
            )
            if config.storage.retention_days > 0:
                application.job_queue.run_repeating(
                    purge_expired, interval=SECONDS_PER_DAY, first=RETENTION_FIRST_RUN_S, name="retention"
                )
        logger.info("moodbot is up as @%s, database %s", application.bot.username, config.storage.database)
        if config.telegram.is_open:
            logger.warning(OPEN_BOT_WARNING)

    async def post_shutdown(application: Application) -> None:
        update_queue.arrive, processor.admission = None, None
        services: Services | None = application.bot_data.pop(SERVICES_KEY, None)
        if services is None:
            return
        if owns_engine:
            await services.engine.close()
        await services.store.close()

    application = (
        ApplicationBuilder()
        .token(config.require_token())
        .base_url(config.telegram.base_url)
        .base_file_url(file_url_for(config.telegram.base_url))
        .context_types(ContextTypes(context=MoodContext))
        .update_queue(update_queue)
        .concurrent_updates(processor)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    register_handlers(application)
    return application


def register_handlers(application: Application) -> None:
    """Every handler, in the order PTB tries them."""
    # Access control first: people outside the allowlists get one refusal and no work at all.
    application.add_handler(TypeHandler(Update, handlers.check_access), group=-1)
    # Commands.
    application.add_handler(CommandHandler("start", handlers.start))
    application.add_handler(CommandHandler("help", handlers.help_command))
    application.add_handler(CommandHandler("mood", handlers.mood))
    application.add_handler(CommandHandler("reset", handlers.reset))
    application.add_handler(CommandHandler("forget", handlers.forget))
    # Privacy: download your data, read what is kept; /forget's Yes/Cancel buttons.
    application.add_handler(CommandHandler("export", handlers.export))
    application.add_handler(CommandHandler("privacy", handlers.privacy))
    application.add_handler(CallbackQueryHandler(handlers.forget_answer, pattern=f"^{handlers.FORGET_PREFIX}"))
    # Admins only (not in the command menu): counts, engine queue, database size.
    application.add_handler(CommandHandler("stats", handlers.stats))
    # Conversation: new text messages get a reply; edits update the log quietly.
    application.add_handler(MessageHandler(NEW_TEXT, handlers.text_message))
    application.add_handler(MessageHandler(EDITED_TEXT, handlers.edited_text))
    # Everything else a person can send in a private chat gets a friendly note.
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL,
            handlers.non_text,
        )
    )
    application.add_error_handler(handlers.error_handler)


async def queue_late_replies(
    application: Application, services: Services, processor: PerChatUpdateProcessor
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
            handlers.answer_message(
                application.bot, services, owed_reply.message, late_reply_target(owed_reply),
                draft_message_id=owed_reply.draft_message_id,
            ),
        )
        for owed_reply in late
    ]


def late_reply_target(owed: OwedReply) -> handlers.ReplyTarget:
    """Where a late reply goes: the message's chat and forum topic, quoting the message in groups."""
    message = owed.message
    quote = message.telegram_message_id if owed.chat_kind != ChatType.PRIVATE else None
    return handlers.ReplyTarget(message.chat_id, quote, owed.thread_id)


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
