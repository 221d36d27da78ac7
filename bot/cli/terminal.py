"""``moodbot chat``: the same engine, storage and conversation flow, in a terminal instead of Telegram; the bot's
words in ``--lang``, else the terminal's locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``), else the default."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TextIO

from bot.config import Config
from bot.flow import Conversations, Incoming
from bot.i18n import _, choose_language, locale_language, translate
from bot.views import texts
from bot.views.fix_mood import label_word
from engine import Engine, Sentiment, create_engine
from storage import Store

TERMINAL_CHAT_ID = 0  # Telegram never uses chat id 0, so terminal conversations can't collide with real ones
TERMINAL_USER_ID = 0
TERMINAL_HELP = _("Type a message and press Enter. Commands: /mood [7d|30d|90d|all], /reset, /forget, /quit")
LOADING_TEXT = _("Loading {model} …")
MOOD_LINE = _("[mood: {label} {score}]")
PROMPT = "moodbot> "


def terminal_language(chosen: str | None, environ: Mapping[str, str], default: str) -> str:
    """The language of ``moodbot chat``: ``--lang`` (``chosen``), else the locale ``environ`` names (``zh_CN.UTF-8``
    → zh), else ``default``."""
    return choose_language(chosen, locale_language(environ), default)


async def chat(
    config: Config, engine: Engine | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
    language: str | None = None,
) -> None:
    """Read messages from ``stdin`` until EOF or /quit; stream each reply to ``stdout``; the bot's own words in
    ``language`` (None: ``bot.default_language``)."""
    language = language or config.bot.default_language
    own_engine = engine is None
    store = await Store.open(config.storage.database)
    model = engine or create_engine(config.engine)
    try:
        if own_engine:
            print(translate(language, LOADING_TEXT, model=config.engine.model), file=stdout, flush=True)
            await model.start()
        conversations = Conversations(store, model, config)
        print(translate(language, TERMINAL_HELP), file=stdout, flush=True)
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
                print(await command(text, conversations, language), file=stdout, flush=True)
                continue
            message = await conversations.record(
                Incoming(TERMINAL_CHAT_ID, "terminal", "terminal", TERMINAL_USER_ID, "you", None, text, None)
            )
            await conversations.answer(message, TerminalReply(stdout, language), language)
    finally:
        if own_engine:
            await model.close()
        await store.close()


class TerminalReply:
    """A turn's output in the terminal: the mood, then the reply printed as it is written. Implements
    ``bot.flow.ReplyOutput``."""

    def __init__(self, stdout: TextIO, language: str) -> None:
        self.stdout, self.language = stdout, language
        self.streamed: str | None = None  # what was printed of the reply, once it started

    def _print(self, text: str, end: str = "\n") -> None:
        print(text, end=end, file=self.stdout, flush=True)

    async def heard(self, sentiment: Sentiment) -> None:
        """Show the message's mood."""
        label = label_word(sentiment.label, self.language)
        self._print("  " + translate(self.language, MOOD_LINE, label=label, score=f"{sentiment.score:+.2f}"))

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Print the reply as it is written; return it whole."""
        async for chunk in chunks:
            if self.streamed is None:
                self._print(PROMPT, end="")
                self.streamed = ""
            self.streamed += chunk
            self._print(chunk, end="")
        return (self.streamed or "").strip()

    async def finish(self, text: str) -> None:
        """End the streamed reply's line; print ``text`` when it is not what was streamed (no message id here)."""
        if self.streamed is not None:
            self._print("")  # the end of the streamed line
            if text == self.streamed.strip():
                return
        self._print(PROMPT + text)

    async def send(self, text: str) -> None:
        """Print ``text`` as a line of its own."""
        self._print(PROMPT + text)


async def command(text: str, conversations: Conversations, language: str) -> str:
    """The answer to ``/mood [period]``, ``/reset`` or ``/forget`` (everything else: the help line), in
    ``language``."""
    name, *args = text.split()
    scope = {"chat_id": TERMINAL_CHAT_ID, "user_id": TERMINAL_USER_ID}
    if name == "/mood":
        return (await conversations.mood_report(**scope, argument=args[0] if args else None, language=language)).text
    if name == "/reset":
        await conversations.reset(**scope)
        return translate(language, texts.RESET_TEXT)
    if name == "/forget":
        return texts.forget_text(await conversations.forget(**scope), language)
    return translate(language, TERMINAL_HELP)
