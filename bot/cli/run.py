"""``moodbot run``: the Telegram bot, by long polling or as a webhook."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import InvalidToken

from bot.config import Config, ConfigError
from bot.telegram.app import build_application
from bot.telegram.webhook import run_webhook
from engine import Engine

logger = logging.getLogger("moodbot")

TOKEN_REJECTED = "Telegram rejected the token (check telegram.token)"


def run_bot(config: Config, engine: Engine | None = None) -> None:
    """Run the Telegram bot until Ctrl-C or SIGTERM, by long polling or as a webhook (``telegram.mode``).

    A stop signal stops the taking of updates; updates already taken are finished (a reply being written is
    completed and stored, and a reply is only ever stored whole); then the engine and the database are closed.
    ``engine``: a started engine to use instead of loading ``config.engine`` (the caller closes it).
    Raises ConfigError when Telegram (or the server at ``telegram.base_url``) rejects the token.
    """
    application = build_application(config, engine=engine)
    logger.info("starting moodbot with model %s (%s)", config.engine.model, config.engine.resolved_precision)
    try:
        if config.telegram.mode == "webhook":
            run_webhook(application, config.telegram)
        else:
            application.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)
    except InvalidToken:
        # PTB's message quotes the token itself; this line says what to fix instead.
        raise ConfigError(TOKEN_REJECTED) from None
