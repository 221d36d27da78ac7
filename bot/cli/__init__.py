"""The ``moodbot`` command: ``run`` (Telegram), ``chat`` (terminal try-out), ``classify TEXT``, ``eval``, ``labels``,
``tune`` (train an analyst adapter), ``doctor``.

Each sub-command lives in a module of its own here; this one parses the command line and turns errors into one
line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from bot.cli import classify, doctor, evaluation, labels, run, terminal, tune
from bot.config import Config, ConfigError, load_config
from bot.i18n import LANGUAGES
from bot.logs import configure_logging, redact
from engine import EngineError, TrainingDataError

logger = logging.getLogger("moodbot")

DEFAULT_CONFIG = Path("config.toml")
ADAPTER_HELP = "classify with this trained analyst adapter (overrides engine.analyst_adapter)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per mode."""
    parser = argparse.ArgumentParser(prog="moodbot", description="An empathetic Telegram companion with a mood log.")
    parser.add_argument(
        "--config", "-c", type=Path, default=None,
        help="TOML config file (default: ./config.toml if it exists, else built-in defaults)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Telegram bot (long polling, or a webhook with telegram.mode)")
    talk = commands.add_parser("chat", help="talk to the bot in this terminal, no Telegram needed")
    talk.add_argument(
        "--lang", choices=LANGUAGES, default=None,
        help="the language of the bot's own words (default: the locale, LANG, else bot.default_language)",
    )
    classify = commands.add_parser("classify", help="print the sentiment label and score of TEXT")
    classify.add_argument("text", nargs="+", help="the message to classify")
    classify.add_argument("--adapter", type=Path, default=None, help=ADAPTER_HELP)
    evaluate = commands.add_parser(
        "eval", help="accuracy, macro-F1, confusion, speed and injection flip rate on a text<TAB>label file"
    )
    evaluate.add_argument("--data", type=Path, required=True, help="TSV file: text<TAB>label (1 pos, 0 neg, 2 neutral)")
    evaluate.add_argument("--limit", type=int, default=0, help="use only the first N rows (0 = all)")
    evaluate.add_argument("--no-injection", action="store_true", help="skip the injected copy")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    evaluate.add_argument("--adapter", type=Path, default=None, help=ADAPTER_HELP)
    labelled = commands.add_parser(
        "labels", help="write the messages people gave a mood themselves as a text<TAB>label file (owner-only)"
    )
    labelled.add_argument("--out", type=Path, required=True, help="the TSV file to write (1 pos, 0 neg, 2 neutral)")
    labelled.add_argument("--user", type=int, default=None, help="only this Telegram user id's messages")
    tune.add_arguments(commands.add_parser(
        "tune", help="train an analyst adapter on this CPU from labelled files (resumable)"
    ))
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
            return doctor.doctor(_config_path(args.config))
        config = load_config(_config_path(args.config))
        if getattr(args, "adapter", None) is not None:
            config = with_adapter(config, args.adapter)
        secrets = config.secrets()
        configure_logging(config.logging.level, secrets=secrets)
        if args.command == "run":
            run.run_bot(config)
        elif args.command == "chat":
            language = terminal.terminal_language(args.lang, os.environ, config.bot.default_language)
            asyncio.run(terminal.chat(config, language=language))
        elif args.command == "classify":
            asyncio.run(classify.classify_text(config, " ".join(args.text)))
        elif args.command == "tune":
            tune.tune_command(config, args)
        elif args.command == "labels":
            asyncio.run(labels.write_labels(config, args.out, args.user))
        elif args.command == "eval":
            asyncio.run(
                evaluation.evaluate_file(config, args.data, args.limit, not args.no_injection, args.json)
            )
    except (ConfigError, EngineError, evaluation.EvalDataError, TrainingDataError, OSError) as exc:
        print(redact(f"moodbot: error: {exc}", secrets), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug's traceback goes through the redacting log handler, never raw onto stderr
        logger.critical("moodbot stopped on an unexpected error", exc_info=True)
        return 1
    return 0


def with_adapter(config: Config, adapter: Path) -> Config:
    """``config`` with ``--adapter`` in place of engine.analyst_adapter, checked as the file's key is."""
    try:
        return replace(config, engine=replace(config.engine, analyst_adapter=str(adapter)))
    except ValueError as exc:  # EngineSettings' own check, whose message starts with the key's name
        raise ConfigError(f"engine.{exc}") from None


def _config_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
