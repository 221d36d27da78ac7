"""The ``moodbot`` command: ``run`` (Telegram), ``chat`` (terminal try-out), ``classify TEXT``, ``eval``, ``doctor``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config
from bot.evaluation import EvalDataError
from bot.logs import configure_logging, redact
from engine import Engine, EngineError, create_engine

logger = logging.getLogger("moodbot")

DEFAULT_CONFIG = Path("config.toml")
TOKEN_REJECTED = "Telegram rejected the token (check telegram.token)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per mode."""
    parser = argparse.ArgumentParser(prog="moodbot", description="An empathetic Telegram companion with a mood log.")
    parser.add_argument(
        "--config", "-c", type=Path, default=None,
        help="TOML config file (default: ./config.toml if it exists, else built-in defaults)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Telegram bot (long polling, or a webhook with telegram.mode)")
    commands.add_parser("chat", help="talk to the bot in this terminal, no Telegram needed")
    classify = commands.add_parser("classify", help="print the sentiment label and score of TEXT")
    classify.add_argument("text", nargs="+", help="the message to classify")
    evaluate = commands.add_parser(
        "eval", help="accuracy, macro-F1, confusion, speed and injection flip rate on a text<TAB>label file"
    )
    evaluate.add_argument("--data", type=Path, required=True, help="TSV file: text<TAB>label (1 pos, 0 neg, 2 neutral)")
    evaluate.add_argument("--limit", type=int, default=0, help="use only the first N rows (0 = all)")
    evaluate.add_argument("--no-injection", action="store_true", help="skip the injected copy")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    commands.add_parser("doctor", help="check config, token, database and model; one line each, exit 1 on a FAIL")
    for sub in commands.choices.values():  # accept --config after the sub-command too
        sub.add_argument("--config", "-c", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; errors become one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    secrets: list[str] = []
    try:
        if args.command == "doctor":  # reports a bad config as its own FAIL line
            from bot.doctor import doctor

            return doctor(_config_path(args.config))
        config = load_config(_config_path(args.config))
        secrets = secrets_of(config)
        configure_logging(config.logging.level, secrets=secrets)
        if args.command == "run":
            run_bot(config)
        elif args.command == "chat":
            from bot.terminal import chat

            asyncio.run(chat(config))
        elif args.command == "classify":
            asyncio.run(classify_text(config, " ".join(args.text)))
        elif args.command == "eval":
            asyncio.run(evaluate_file(config, args.data, args.limit, not args.no_injection, args.json))
    except (ConfigError, EngineError, EvalDataError, OSError) as exc:
        print(redact(f"moodbot: error: {exc}", secrets), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug's traceback goes through the redacting log handler, never raw onto stderr
        logger.critical("moodbot stopped on an unexpected error", exc_info=True)
        return 1
    return 0


def secrets_of(config: Config) -> list[str]:
    """Everything in ``config`` that must never appear in a log line or on the terminal."""
    return config.secrets()


def _config_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def run_bot(config: Config, engine: Engine | None = None) -> None:
    """Run the Telegram bot until Ctrl-C or SIGTERM, by long polling or as a webhook (``telegram.mode``).

    A stop signal stops the taking of updates; updates already taken are finished (a reply being written is
    completed and stored, and a reply is only ever stored whole); then the engine and the database are closed.
    ``engine``: a started engine to use instead of loading ``config.engine`` (the caller closes it).
    Raises ConfigError when Telegram (or the server at ``telegram.base_url``) rejects the token.
    """
    from telegram import Update
    from telegram.error import InvalidToken

    from bot.app import build_application

    application = build_application(config, engine=engine)
    logger.info("starting moodbot with model %s (%s)", config.engine.model, config.engine.resolved_precision)
    try:
        if config.telegram.mode == "webhook":
            from bot.webhook import run_webhook

            run_webhook(application, config.telegram)
        else:
            application.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)
    except InvalidToken:
        # PTB's message quotes the token itself; this line says what to fix instead.
        raise ConfigError(TOKEN_REJECTED) from None


async def classify_text(config: Config, text: str) -> None:
    """Print ``label score`` for one message."""
    engine = create_engine(config.engine)
    await engine.start()
    try:
        sentiment = await engine.classify(text)
    finally:
        await engine.close()
    print(f"{sentiment.label} {sentiment.score:+.3f}")


async def evaluate_file(config: Config, data: Path, limit: int, injection: bool, json_path: Path | None) -> None:
    """``moodbot eval``: classify a labelled file (and its injected copy) and print the report."""
    import json

    from bot.evaluation import evaluate, read_examples, render_report, report_dict

    examples = read_examples(data)
    if limit > 0:
        examples = examples[:limit]
    engine = create_engine(config.engine)
    await engine.start()
    try:
        report = await evaluate(
            engine, examples, data=str(data), care_threshold=config.care.threshold, injection=injection
        )
    finally:
        await engine.close()
    print(render_report(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report_dict(report), indent=2, ensure_ascii=False), encoding="utf-8")
