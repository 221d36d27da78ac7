"""Helpers for end-to-end tests: run the real moodbot Application against the fake Bot API."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from telegram.ext import Application

from bot.config import CareConfig, Config, GroupsConfig, LimitsConfig, StorageConfig, TelegramConfig
from bot.flow.schedule import utc_now
from bot.telegram.app import build_application
from engine import Engine, EngineSettings
from tests.support.fakebotapi import BOT_USER, TEST_TOKEN, FakeBotApi

MENTION = f"@{BOT_USER['username']}"
T = TypeVar("T")


def rows(database: Path, sql: str, *args: object) -> list[tuple]:
    """The rows ``sql`` returns from the bot's SQLite database (read with the plain sqlite3 module)."""
    with sqlite3.connect(database) as db:
        return db.execute(sql, args).fetchall()


async def eventually(check: Callable[[], T], timeout: float = 10.0) -> T:
    """Wait until ``check()`` is truthy and return it: for state the fake Bot API does not see (the database, the
    log), which nothing announces, so it is looked at again every 50 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := check()):
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)
    return result


async def last_message_with(api: FakeBotApi, chat: dict, needle: str) -> dict[str, Any]:
    """Wait until the bot's latest message in ``chat`` contains ``needle``; return that message."""

    def latest(fake: FakeBotApi) -> dict[str, Any] | None:
        messages = fake.sent_messages(chat["id"])
        last = messages[-1] if messages else {}
        return last if needle in last.get("text", last.get("caption", "")) else None

    return await api.wait_for(latest)


async def answered(api: FakeBotApi, query_id: str) -> dict[str, Any]:
    """Wait until the bot has answered the button press ``query_id``; return the answerCallbackQuery params."""
    return await api.wait_for(lambda fake: fake.callback_answers.get(query_id))


async def final_texts(api: FakeBotApi, chat_id: int, count: int, timeout: float = 5.0) -> list[str]:
    """Wait until the bot has ``count`` finished messages in the chat (no streaming "…" left); return their texts."""

    def finished(fake: FakeBotApi) -> list[str] | None:
        texts = fake.sent_texts(chat_id)
        done = len(texts) >= count and not any(t.endswith(" …") for t in texts)
        return texts if done else None

    return await api.wait_for(finished, timeout)


def e2e_config(api: FakeBotApi, database: Path, model: Path, **telegram: Any) -> Config:
    """A config pointing at the fake Bot API, a temporary database and a local model (greedy, short replies)."""
    return Config(
        telegram=TelegramConfig(token=TEST_TOKEN, base_url=api.base_url, **telegram),
        engine=EngineSettings(model=str(model), precision="fp32", threads=2, temperature=0.0, max_new_tokens=40),
        storage=StorageConfig(path=str(database)),
    )


def config_for(
    api: FakeBotApi,
    tmp_path: Path,
    *,
    groups: GroupsConfig | None = None,
    limits: LimitsConfig | None = None,
    care: CareConfig | None = None,
    **telegram: Any,
) -> Config:
    """A config for bot tests with a scripted engine: the fake Bot API and a temporary database; ``telegram``
    keywords (``allowed_chat_ids=...``), ``groups`` and ``limits`` override the defaults."""
    return Config(
        telegram=TelegramConfig(token=TEST_TOKEN, base_url=api.base_url, **telegram),
        storage=StorageConfig(path=str(tmp_path / "bot.db")),
        groups=groups or GroupsConfig(),
        limits=limits or LimitsConfig(),
        care=care or CareConfig(),
    )


@asynccontextmanager
async def running_bot(
    config: Config, engine: Engine | None = None, *, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[Application]:
    """Start the bot as ``run_polling`` does (initialize, post_init, polling, start) and stop it the same way;
    ``clock`` (a ``tests.support.clock.Clock``) is the time check-ins go by."""
    application = build_application(config, engine=engine, clock=clock or utc_now)
    await application.initialize()
    try:
        await application.post_init(application)
        await application.updater.start_polling(poll_interval=0, timeout=1)
        await application.start()
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()
    finally:
        await application.shutdown()
        await application.post_shutdown(application)
