"""``moodbot chat``: the same engine, storage and conversation flow, in a terminal instead of Telegram."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from bot import render
from bot.config import Config
from bot.conversation import Conversations, Incoming
from bot.handlers import local_today, period_start
from engine import Engine, EngineBusy, create_engine
from storage import Store

TERMINAL_CHAT_ID = 0  # Telegram never uses chat id 0, so terminal conversations can't collide with real ones
TERMINAL_USER_ID = 0
TERMINAL_HELP = "Type a message and press Enter. Commands: /mood [7d|30d|90d|all], /reset, /forget, /quit"


async def chat(config: Config, engine: Engine | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
    """Read messages from ``stdin`` until EOF or /quit; stream each reply to ``stdout``."""
    own_engine = engine is None
    store = await Store.open(config.storage.database)
    model = engine or create_engine(config.engine)
    try:
        if own_engine:
            print(f"Loading {config.engine.model} …", file=stdout, flush=True)
            await model.start()
        conversations = Conversations(store, model, config.telegram.max_message_chars, config.care)
        print(TERMINAL_HELP, file=stdout, flush=True)
        while True:
            print("you> ", end="", file=stdout, flush=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if text.split()[0] in ("/quit", "/exit"):
                    break
                print(await _command(text, config, conversations), file=stdout, flush=True)
                continue
            await _turn(conversations, text, stdout)
    finally:
        if own_engine:
            await model.close()
        await store.close()


async def _turn(conversations: Conversations, text: str, stdout: TextIO) -> None:
    message = await conversations.record(
        Incoming(TERMINAL_CHAT_ID, "terminal", "terminal", TERMINAL_USER_ID, "you", None, text, None)
    )
    sentiment = await conversations.classify(message)
    if sentiment is not None:
        print(f"  [mood: {sentiment.label} {sentiment.score:+.2f}]", file=stdout, flush=True)
    print("moodbot> ", end="", file=stdout, flush=True)
    reply = ""
    try:
        async for chunk in conversations.reply(message):
            reply += chunk
            print(chunk, end="", file=stdout, flush=True)
    except EngineBusy:
        print(render.BUSY_TEXT, file=stdout, flush=True)
        return
    print(file=stdout, flush=True)
    await conversations.save_reply(message, reply.strip() or "…", None)
    care_text = conversations.care_message(message, sentiment)
    if care_text is not None and sentiment is not None:
        print(f"moodbot> {care_text}", file=stdout, flush=True)
        await conversations.record_care(message, sentiment)


async def _command(text: str, config: Config, conversations: Conversations) -> str:
    command, *args = text.split()
    store = conversations.store
    if command == "/mood":
        try:
            days = render.parse_period(args[0] if args else None, config.mood.default_days)
        except ValueError as exc:
            return str(exc)
        offset = config.mood.utc_offset_minutes
        today = local_today(offset)
        summary = await store.mood_summary(
            chat_id=TERMINAL_CHAT_ID, user_id=TERMINAL_USER_ID, since=period_start(today, days, offset),
            utc_offset_minutes=offset,
        )
        return render.mood_summary_text(summary, days, today)
    if command == "/reset":
        await store.reset_context(chat_id=TERMINAL_CHAT_ID, user_id=TERMINAL_USER_ID)
        return render.RESET_TEXT
    if command == "/forget":
        count = await conversations.forget(chat_id=TERMINAL_CHAT_ID, user_id=TERMINAL_USER_ID)
        return render.FORGET_TEXT.format(count=count)
    return TERMINAL_HELP
