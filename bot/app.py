"""All wiring in one place: build the Application, register every handler, open and close resources."""

from __future__ import annotations

import logging
import time

from telegram import BotCommand, Update
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
from bot.ordering import PerChatUpdateProcessor
from engine import Engine, create_engine
from storage import Store

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
RETENTION_FIRST_RUN_S = 60.0  # the first retention purge, this long after start-up (then once a day)

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

    async def post_init(application: Application) -> None:
        store = await Store.open(config.storage.database)
        try:
            model = shared_engine or create_engine(config.engine)
            if owns_engine:
                await model.start()
        except BaseException:
            await store.close()
            raise
        application.bot_data[SERVICES_KEY] = Services(
            config, model, store, Conversations(store, model, config.telegram.max_message_chars, config.care)
        )
        await application.bot.set_my_commands(COMMANDS)
        if application.job_queue is not None:
            application.job_queue.run_once(_backfill, when=0, name="backfill")
            if config.storage.retention_days > 0:
                application.job_queue.run_repeating(
                    purge_expired, interval=SECONDS_PER_DAY, first=RETENTION_FIRST_RUN_S, name="retention"
                )
        logger.info("moodbot is up as @%s, database %s", application.bot.username, config.storage.database)
        if config.telegram.is_open:
            logger.warning(OPEN_BOT_WARNING)

    async def post_shutdown(application: Application) -> None:
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
        .concurrent_updates(PerChatUpdateProcessor())
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
    application.add_handler(
        MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND, handlers.text_message)
    )
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT, handlers.edited_text))
    # Everything else a person can send in a private chat gets a friendly note.
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL,
            handlers.non_text,
        )
    )
    application.add_error_handler(handlers.error_handler)


async def _backfill(context: MoodContext) -> None:
    """Classifies messages stored while the engine was busy or down, so the mood log has no holes."""
    done = await context.services.conversations.backfill()
    if done:
        logger.info("back-filled the sentiment of %d stored messages", done)


async def purge_expired(context: MoodContext) -> None:
    """Deletes messages older than ``storage.retention_days`` (with their replies and moods); runs daily."""
    days = context.config.storage.retention_days
    if days <= 0:
        return
    deleted = await context.services.conversations.purge_older_than(time.time() - days * SECONDS_PER_DAY)
    logger.info("retention: deleted %d messages older than %d days", deleted, days)
