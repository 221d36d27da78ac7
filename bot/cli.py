"""The ``moodbot`` command: ``run`` (Telegram), ``chat`` (terminal try-out), ``classify TEXT``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config
from bot.logs import configure_logging
from engine import EngineError, create_engine

logger = logging.getLogger("moodbot")

DEFAULT_CONFIG = Path("config.toml")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per mode."""
    parser = argparse.ArgumentParser(prog="moodbot", description="An empathetic Telegram companion with a mood log.")
    parser.add_argument(
        "--config", "-c", type=Path, default=None,
        help="TOML config file (default: ./config.toml if it exists, else built-in defaults)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Telegram bot (polling)")
    commands.add_parser("chat", help="talk to the bot in this terminal, no Telegram needed")
    classify = commands.add_parser("classify", help="print the sentiment label and score of TEXT")
    classify.add_argument("text", nargs="+", help="the message to classify")
    for sub in commands.choices.values():  # accept --config after the sub-command too
        sub.add_argument("--config", "-c", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; errors become one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(_config_path(args.config))
        configure_logging(config.logging.level, secrets=[config.telegram.token])
        if args.command == "run":
            run_bot(config)
        elif args.command == "chat":
            from bot.terminal import chat

            asyncio.run(chat(config))
        elif args.command == "classify":
            asyncio.run(classify_text(config, " ".join(args.text)))
    except (ConfigError, EngineError) as exc:
        print(f"moodbot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _config_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def run_bot(config: Config) -> None:
    """Run the Telegram bot until Ctrl-C or SIGTERM."""
    from telegram import Update

    from bot.app import build_application

    application = build_application(config)
    logger.info("starting moodbot with model %s (%s)", config.engine.model, config.engine.resolved_precision)
    application.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)


async def classify_text(config: Config, text: str) -> None:
    """Print ``label score`` for one message."""
    engine = create_engine(config.engine)
    await engine.start()
    try:
        sentiment = await engine.classify(text)
    finally:
        await engine.close()
    print(f"{sentiment.label} {sentiment.score:+.3f}")
