"""Webhook mode: Telegram POSTs each update to ``telegram.webhook_url``; a TLS reverse proxy in front (Caddy, nginx)
forwards it to PTB's small HTTP server on ``webhook_listen:webhook_port``.

The server answers 403 to every request whose ``X-Telegram-Bot-Api-Secret-Token`` header is missing or is not
``telegram.webhook_secret`` (PTB's ``telegram/ext/_utils/webhookhandler.py``), so only Telegram can feed the bot.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application

from bot.config import TelegramConfig

logger = logging.getLogger(__name__)


def url_path(webhook_url: str) -> str:
    """The local path to serve: the public URL's path (``https://host/moodbot/hook`` → ``moodbot/hook``)."""
    return urlsplit(webhook_url).path.strip("/")


def run_webhook(application: Application, telegram: TelegramConfig) -> None:
    """Register the webhook with Telegram (with the secret) and serve updates until SIGINT or SIGTERM."""
    path = url_path(telegram.webhook_url)
    logger.info(
        "webhook mode: serving http://%s:%d/%s for %s", telegram.webhook_listen, telegram.webhook_port, path,
        telegram.webhook_url,
    )
    application.run_webhook(
        listen=telegram.webhook_listen,
        port=telegram.webhook_port,
        url_path=path,
        webhook_url=telegram.webhook_url,
        secret_token=telegram.webhook_secret,
        allowed_updates=Update.ALL_TYPES,
        drop_pending_updates=False,
    )
