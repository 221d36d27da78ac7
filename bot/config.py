"""moodbot's configuration: one TOML file (tomllib), every key checked, errors that name the key.

The Telegram token may come from the environment variable ``MOODBOT_TELEGRAM_TOKEN`` instead of the file; it is
kept out of ``repr`` so it never lands in a log line.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.settings import DEFAULT_MODEL, PRECISIONS, EngineSettings

TOKEN_ENV_VAR = "MOODBOT_TELEGRAM_TOKEN"
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
DEFAULT_DATABASE = "~/.local/share/moodbot/moodbot.db"


class ConfigError(Exception):
    """A configuration problem, described in one line that names the key."""


@dataclass(frozen=True)
class TelegramConfig:
    """``[telegram]``: how to reach Telegram and who may talk to the bot."""

    token: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    allowed_user_ids: tuple[int, ...] = ()
    max_message_chars: int = 2000

    def allows(self, user_id: int | None) -> bool:
        """True when the allowlist is empty (everyone) or names ``user_id``."""
        return not self.allowed_user_ids or (user_id is not None and user_id in self.allowed_user_ids)


@dataclass(frozen=True)
class StorageConfig:
    """``[storage]``: where the SQLite database lives and how long messages are kept (0 days = forever)."""

    path: str = DEFAULT_DATABASE
    retention_days: int = 0

    @property
    def database(self) -> Path:
        """The database path with ``~`` expanded."""
        return Path(self.path).expanduser()


@dataclass(frozen=True)
class MoodConfig:
    """``[mood]``: how ``/mood`` groups days."""

    default_days: int = 7
    utc_offset_minutes: int = 0


@dataclass(frozen=True)
class LoggingConfig:
    """``[logging]``: how much moodbot says about itself."""

    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    engine: EngineSettings = field(default_factory=EngineSettings)
    storage: StorageConfig = field(default_factory=StorageConfig)
    mood: MoodConfig = field(default_factory=MoodConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def require_token(self) -> str:
        """The Telegram token, or a ConfigError saying where to put it."""
        if not self.telegram.token:
            raise ConfigError(f"telegram.token: missing (set it in the config file or in ${TOKEN_ENV_VAR})")
        return self.telegram.token


# Expected type of every key, per section; anything else in the file is an error (catches typos).
_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "telegram": {"token": str, "base_url": str, "allowed_user_ids": list, "max_message_chars": int},
    "engine": {
        "model": str, "precision": str, "threads": int, "max_new_tokens": int, "history_tokens": int,
        "temperature": (int, float), "top_p": (int, float), "repetition_penalty": (int, float),
        "queue_size": int, "max_active_replies": int, "prompt_cache_mb": int, "seed": int,
    },
    "storage": {"path": str, "retention_days": int},
    "mood": {"default_days": int, "utc_offset_minutes": int},
    "logging": {"level": str},
}
_SECTION_TYPES = {
    "telegram": TelegramConfig, "engine": EngineSettings, "storage": StorageConfig,
    "mood": MoodConfig, "logging": LoggingConfig,
}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def load_config(path: str | Path | None, environ: dict[str, str] | None = None) -> Config:
    """Read and check the config file (``None`` = defaults only); the env token fills in a missing one."""
    environ = dict(os.environ) if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        file = Path(path).expanduser()
        try:
            with file.open("rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file} (copy config.example.toml)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    config = config_from_dict(raw)
    env_token = environ.get(TOKEN_ENV_VAR, "").strip()
    if env_token and not config.telegram.token:
        config = replace(config, telegram=replace(config.telegram, token=env_token))
    return config


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML, refusing unknown sections/keys and wrong types."""
    sections: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in _SCHEMA:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(_SCHEMA)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        sections[section] = _build_section(section, values)
    return Config(**sections)


def _build_section(section: str, values: dict[str, Any]) -> Any:
    schema = _SCHEMA[section]
    for key, value in values.items():
        name = f"{section}.{key}"
        if key not in schema:
            raise ConfigError(f"{name}: unknown key (known: {', '.join(schema)})")
        expected = schema[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            wanted = expected.__name__ if isinstance(expected, type) else "number"
            raise ConfigError(f"{name}: expected {_article(wanted)}, got {value!r}")
    _check_values(section, values)
    kwargs = dict(values)
    if section == "telegram" and "allowed_user_ids" in kwargs:
        kwargs["allowed_user_ids"] = tuple(kwargs["allowed_user_ids"])
    if section == "telegram" and "base_url" in kwargs:
        kwargs["base_url"] = kwargs["base_url"] or DEFAULT_BASE_URL
    if section == "logging" and "level" in kwargs:
        kwargs["level"] = kwargs["level"].upper()
    try:
        return _SECTION_TYPES[section](**kwargs)
    except ValueError as exc:  # EngineSettings' own checks
        raise ConfigError(f"{section}: {exc}") from None


def _check_values(section: str, values: dict[str, Any]) -> None:
    def fail(key: str, why: str) -> None:
        raise ConfigError(f"{section}.{key}: {why}, got {values[key]!r}")

    positive = {
        "max_message_chars", "max_new_tokens", "history_tokens", "queue_size", "max_active_replies", "default_days",
    }
    for key in positive & values.keys():
        if values[key] < 1:
            fail(key, "must be at least 1")
    if section == "telegram":
        ids = values.get("allowed_user_ids", [])
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            fail("allowed_user_ids", "must be a list of numeric Telegram user ids")
        base_url = values.get("base_url", "")
        if base_url and not base_url.startswith(("http://", "https://")):
            fail("base_url", "must start with http:// or https://")
    if section == "engine":
        if values.get("precision", "auto") not in PRECISIONS:
            fail("precision", f"must be one of {', '.join(PRECISIONS)}")
        if values.get("threads", 0) < 0:
            fail("threads", "must be 0 (all cores) or more")
        if not 0 <= values.get("temperature", 0) <= 2:
            fail("temperature", "must be between 0 and 2")
        if not 0 < values.get("top_p", 1) <= 1:
            fail("top_p", "must be in (0, 1]")
        if not values.get("model", DEFAULT_MODEL).strip():
            fail("model", "must not be empty")
    if section == "storage":
        if not values.get("path", DEFAULT_DATABASE).strip():
            fail("path", "must not be empty")
        if values.get("retention_days", 0) < 0:
            fail("retention_days", "must be 0 (keep forever) or more")
    if section == "mood" and not -720 <= values.get("utc_offset_minutes", 0) <= 840:
        fail("utc_offset_minutes", "must be between -720 and 840")
    if section == "logging" and values.get("level", "INFO").upper() not in _LOG_LEVELS:
        fail("level", f"must be one of {', '.join(_LOG_LEVELS)}")


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"

