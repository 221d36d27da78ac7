"""All wiring in one place: build the Application, register every handler and job, open and close resources."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from telegram import Update
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

from bot.config import OPEN_BOT_WARNING, Config
from bot.flow import Conversations
from bot.flow.checkins import CheckIns
from bot.flow.schedule import utc_now
from bot.telegram import checkins, commands, fix_mood, jobs, messages, scheduled, settings
from bot.telegram.access import check_access
from bot.telegram.awaiting import TypedCity
from bot.telegram.context import SERVICES_KEY, MoodContext, Services
from bot.telegram.intake import EDITED_TEXT, NEW_TEXT, ArrivalQueue, Intake
from bot.telegram.menus import publish_menus
from bot.telegram.ordering import PerChatUpdateProcessor
from bot.views import settings as settings_view
from engine import Engine, create_engine
from storage import Store

logger = logging.getLogger(__name__)

def file_url_for(base_url: str) -> str:
    """The Bot API file URL that goes with ``base_url`` (``…/bot`` → ``…/file/bot``)."""
    root = base_url.removesuffix("/").removesuffix("bot").removesuffix("/")
    return f"{root}/file/bot"


def build_application(
    config: Config, engine: Engine | None = None, *, clock: Callable[[], datetime] = utc_now
) -> Application:
    """The bot, ready for ``run_polling``; pass a started ``engine`` to share one (the app then won't close it).
    ``clock`` (aware UTC datetimes) is what check-ins and weekly summaries go by."""
    owns_engine = engine is None
    shared_engine = engine

    update_queue = ArrivalQueue()
    processor = PerChatUpdateProcessor(max_backlog=config.limits.chat_backlog)
    typed_city = TypedCity()  # the /settings handlers ask; the handler taking the typed city filters by it

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
            config, model, store, Conversations(store, model, config),
            CheckIns(store, config.mood.utc_offset_minutes, clock), typed_city=typed_city,
        )
        application.bot_data[SERVICES_KEY] = services
        await publish_menus(application.bot, config)  # in every language; /stats for admins only
        # Before any new update: every update is checked against the rate limit and stored the moment it arrives,
        # before it is confirmed to Telegram; what a crash or restart left unanswered is queued first in its chat.
        intake = Intake(services, application.bot)
        update_queue.arrive, processor.admission = intake.arrive, intake
        late = await jobs.queue_late_replies(application.bot, services, processor)
        job_queue = application.job_queue
        if job_queue is not None:
            if late:  # jobs run to the end before the application stops: the late replies are finished, not cut
                job_queue.run_once(jobs.finish_late_replies, when=0, data=late, name="late-replies")
            job_queue.run_once(jobs.backfill, when=jobs.BACKFILL_FIRST_RUN_S, name="backfill-at-start")
            job_queue.run_repeating(
                jobs.backfill, interval=jobs.BACKFILL_INTERVAL_S, first=jobs.BACKFILL_INTERVAL_S, name="backfill"
            )
            # Check-ins and weekly summaries: the schedule is read from the database on every tick, the first one
            # right after start-up, so whatever a stop made late goes out now (the same day only).
            sender = scheduled.ScheduledSender(
                application.bot, services.checkins, default_language=config.bot.default_language
            )
            job_queue.run_repeating(
                jobs.send_scheduled, interval=scheduled.TICK_INTERVAL_S, first=scheduled.FIRST_TICK_S, data=sender,
                name="check-ins",
            )
            if config.storage.retention_days > 0:
                job_queue.run_repeating(
                    jobs.purge_expired, interval=jobs.SECONDS_PER_DAY, first=jobs.RETENTION_FIRST_RUN_S,
                    name="retention",
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
    # Every handler, in the order PTB tries them. Access control first: people outside the allowlists get one
    # refusal and no work at all.
    application.add_handler(TypeHandler(Update, check_access), group=-1)
    # Commands ("/start settings", what the button of a group's /settings sends, opens the settings).
    application.add_handler(CommandHandler("start", settings.open_settings, filters=settings.START_SETTINGS))
    application.add_handler(CommandHandler("start", commands.start))
    application.add_handler(CommandHandler("help", commands.help_command))
    application.add_handler(CommandHandler("mood", commands.mood))
    application.add_handler(CommandHandler("reset", commands.reset))
    application.add_handler(CommandHandler("forget", commands.forget))
    # Privacy: download your data, read what is kept; /forget's Yes/Cancel buttons.
    application.add_handler(CommandHandler("export", commands.export))
    application.add_handler(CommandHandler("privacy", commands.privacy))
    application.add_handler(CallbackQueryHandler(commands.forget_answer, pattern=f"^{commands.FORGET_PREFIX}"))
    # /mood's "Fix a mood" button, and the face buttons of the list it sends privately.
    application.add_handler(CallbackQueryHandler(fix_mood.fix_list, pattern=f"^{fix_mood.FIX_LIST_PREFIX}"))
    application.add_handler(CallbackQueryHandler(fix_mood.fix_label, pattern=f"^{fix_mood.FIX_PREFIX}"))
    # /settings: the menu and its buttons; a city typed after "Other city…" is taken before the conversation's
    # handler could answer it as a message.
    application.add_handler(CommandHandler("settings", settings.open_settings))
    application.add_handler(CallbackQueryHandler(settings.settings_press, pattern=f"^{settings_view.PREFIX}"))
    application.add_handler(MessageHandler(NEW_TEXT & typed_city, settings.typed_city))
    # The daily check-in's faces, and the check-in offer after /start.
    application.add_handler(CallbackQueryHandler(checkins.checkin_tap, pattern=f"^{checkins.CHECKIN_PREFIX}"))
    application.add_handler(CallbackQueryHandler(checkins.offer_answer, pattern=f"^{checkins.OFFER_PREFIX}"))
    # Admins only (not in the command menu): counts, engine queue, database size.
    application.add_handler(CommandHandler("stats", commands.stats))
    # Conversation: new text messages get a reply; edits update the log quietly.
    application.add_handler(MessageHandler(NEW_TEXT, messages.text_message))
    application.add_handler(MessageHandler(EDITED_TEXT, messages.edited_text))
    # Everything else a person can send in a private chat gets a friendly note.
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL,
            messages.non_text,
        )
    )
    application.add_error_handler(messages.error_handler)
    return application
