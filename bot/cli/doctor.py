"""``moodbot doctor``: check the config, the token, the database, the analyst adapter and the model, one line each
(and say whether the model's prepared weights are cached, so the start will be quick).

Meant for a self-hoster before ``systemctl enable --now``: every check runs the way ``moodbot run`` would (same
config, same Bot API URL, same database path, same model loading, the analyst adapter when one is configured),
prints ``ok  NAME: …`` or ``FAIL NAME: …`` (or ``warn NAME: …`` for a setting that works but deserves a second
look), and the exit code is 0 only when none failed. The token and other secrets never appear in the output.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiosqlite
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot.config import OPEN_BOT_WARNING, Config, ConfigError, load_config
from bot.logs import configure_logging, redact
from engine import EngineError, create_engine, describe_analyst_adapter, int8_kernel, prepared_weights_state
from storage import Store

PROBE_TABLE = "moodbot_doctor_probe"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: its name, whether it passed (``warn``: passed, but worth a second look), and one
    line of detail."""

    name: str
    ok: bool
    detail: str
    warn: bool = False

    def line(self) -> str:
        """``ok  name: detail``, ``warn name: detail`` or ``FAIL name: detail``."""
        status = "FAIL" if not self.ok else "warn" if self.warn else "ok "
        return f"{status} {self.name}: {self.detail}"


def doctor(config_path: Path | None, out: TextIO | None = None, environ: dict[str, str] | None = None) -> int:
    """Run every check, print one line each to ``out`` (stdout); 0 when all passed, else 1."""
    out = out or sys.stdout
    try:
        config = load_config(config_path, environ=environ)
    except ConfigError as exc:
        print(Check("config", False, str(exc)).line(), file=out, flush=True)
        return 1
    secrets = config.secrets()
    configure_logging("WARNING", secrets=secrets)  # the checks' own lines are the output; only problems are logged
    where = str(config_path) if config_path is not None else "built-in defaults (no config file)"
    checks = [Check("config", True, f"{where} ({config.telegram.mode} mode)"), check_allowlists(config)]
    for check in checks:
        print(check.line(), file=out, flush=True)

    def report(result: Check) -> None:
        checks.append(result)
        print(redact(result.line(), secrets), file=out, flush=True)

    async def run_checks() -> None:
        for check in (check_token, check_database, check_prepared_weights):
            report(await check(config))
        kernel = await check_int8_kernel(config)
        if kernel is not None:
            report(kernel)
        adapter = await check_adapter(config)
        if adapter is not None:
            report(adapter)
        report(await check_model(config, with_adapter=adapter is None or adapter.ok))

    asyncio.run(run_checks())
    return 0 if all(check.ok for check in checks) else 1


def check_allowlists(config: Config) -> Check:
    """Who may use the bot: a warning (not a failure) when both allowlists are empty and anyone may."""
    telegram = config.telegram
    if telegram.is_open:
        return Check("access", True, OPEN_BOT_WARNING, warn=True)
    return Check(
        "access", True,
        f"{len(telegram.allowed_user_ids)} allowed users, {len(telegram.allowed_chat_ids)} allowed chats, "
        f"{len(telegram.admin_user_ids)} admins",
    )


async def check_token(config: Config) -> Check:
    """getMe through the configured Bot API URL: does Telegram (or a self-hosted server) accept the token?"""
    try:
        token = config.require_token()
    except ConfigError as exc:
        return Check("token", False, str(exc))
    server = urlsplit(config.telegram.base_url).netloc or config.telegram.base_url
    bot = Bot(token, base_url=config.telegram.base_url)
    try:
        await bot.initialize()  # calls getMe
        me = bot.bot
    except InvalidToken as exc:
        # PTB re-raises with the token in the message; the server's own words are in the cause.
        said = exc.__cause__.message if isinstance(exc.__cause__, TelegramError) else "the token was rejected"
        return Check("token", False, f"getMe said {said} ({server})")
    except TelegramError as exc:
        return Check("token", False, f"getMe failed at {server}: {exc.message}")
    finally:
        await bot.shutdown()
    return Check("token", True, f"@{me.username} (id {me.id}) via {server}")


async def check_database(config: Config) -> Check:
    """Open (creating and migrating it if new) the database at ``storage.path``, then write and roll back."""
    path = config.storage.database
    try:
        store = await Store.open(path)
        try:
            counts = await store.counts()
        finally:
            await store.close()
        await _probe_write(path)
    except (OSError, sqlite3.Error) as exc:
        return Check("database", False, f"{path}: {exc}")
    return Check("database", True, f"{path} (writable, {counts['messages']} messages)")


async def _probe_write(path: Path) -> None:
    """A write SQLite really attempts (a read-only file fails here), then rolled back: nothing is left behind."""
    async with aiosqlite.connect(str(path), isolation_level=None) as db:
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute(f"CREATE TABLE {PROBE_TABLE} (x INTEGER)")
            await db.execute(f"INSERT INTO {PROBE_TABLE} VALUES (1)")
        finally:
            await db.execute("ROLLBACK")


async def check_prepared_weights(config: Config) -> Check:
    """Whether the model's prepared int8 weights are cached (before the model check, which prepares them if not)."""
    state = await asyncio.to_thread(prepared_weights_state, config.engine)  # reads ~2 MB of the checkpoint
    if state.state == "cached":
        return Check("prepared weights", True, f"cached: {state.path} ({state.size_bytes / 2**20:.0f} MB)")
    if state.state == "not yet":
        where = f" in {state.path.parent}" if state.path is not None else ""
        return Check("prepared weights", True, f"not yet: the first start prepares them{where}")
    return Check("prepared weights", True, f"{state.state}: {state.detail}")


async def check_int8_kernel(config: Config) -> Check | None:
    """Which kernel the int8 layers will use (the AVX2 one is built here on first use); None unless the model runs
    locally in int8."""
    if config.engine.backend != "local" or config.engine.resolved_precision != "int8":
        return None
    return Check("int8 kernel", True, await asyncio.to_thread(int8_kernel))


async def check_adapter(config: Config) -> Check | None:
    """The trained analyst adapter, when one is configured: readable, and made for the configured model's weights
    and this moodbot's analyst prompt (read without loading the model). None when there is none."""
    if not config.engine.analyst_adapter:
        return None
    try:
        detail = await asyncio.to_thread(describe_analyst_adapter, config.engine)
    except EngineError as exc:
        return Check("adapter", False, str(exc))
    return Check("adapter", True, detail)


async def check_model(config: Config, *, with_adapter: bool = True) -> Check:
    """Start the engine (load the model, or whatever a remote backend checks at start), then close it. A configured
    analyst adapter is applied too, unless ``with_adapter`` is False (its own line failed: this line is then about
    the model alone)."""
    settings = config.engine if with_adapter else replace(config.engine, analyst_adapter="")
    engine = create_engine(settings)
    try:
        await engine.start()
        name = engine.model_name
    except EngineError as exc:
        return Check("model", False, str(exc))
    except Exception as exc:  # a doctor reports every failure as its line rather than a traceback
        return Check("model", False, f"{type(exc).__name__}: {exc}")
    finally:
        await engine.close()
    adapted = " with the analyst adapter" if settings.analyst_adapter else ""
    return Check("model", True, f"{name} loaded{adapted} and closed")
