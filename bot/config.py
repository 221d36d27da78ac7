"""moodbot's configuration: one TOML file (tomllib), every key checked, errors that name the key.

The Telegram token may come from the environment variable ``MOODBOT_TELEGRAM_TOKEN`` instead of the file; it is
kept out of ``repr`` so it never lands in a log line. So may the webhook secret (``MOODBOT_WEBHOOK_SECRET``), kept out
of ``repr`` and error messages alike.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.roles.language import script_of
from engine.settings import BACKENDS, DEFAULT_MODEL, PRECISIONS, EngineSettings

TOKEN_ENV_VAR = "MOODBOT_TELEGRAM_TOKEN"
WEBHOOK_SECRET_ENV_VAR = "MOODBOT_WEBHOOK_SECRET"
TELEGRAM_MODES = ("polling", "webhook")
ENGINE_API_KEY_ENV_VAR = "MOODBOT_ENGINE_API_KEY"  # fills in a missing engine.api_key (kept out of repr too)
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
DEFAULT_DATABASE = "~/.local/share/moodbot/moodbot.db"


OPEN_BOT_WARNING = (
    "telegram.allowed_user_ids and telegram.allowed_chat_ids are both empty: anyone who finds the bot can talk to "
    "it and use this server. To keep it to your people, list their user ids in telegram.allowed_user_ids (the "
    "bot tells everyone else their id when it refuses them)."
)


class ConfigError(Exception):
    """A configuration problem, described in one line that names the key."""


@dataclass(frozen=True)
class TelegramConfig:
    """``[telegram]``: how to reach Telegram and who may talk to the bot."""

    token: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    allowed_user_ids: tuple[int, ...] = ()
    max_message_chars: int = 2000
    allowed_chat_ids: tuple[int, ...] = ()
    admin_user_ids: tuple[int, ...] = ()
    # How updates arrive: "polling" (the bot asks Telegram) or "webhook" (Telegram POSTs to webhook_url, which a
    # TLS reverse proxy forwards to webhook_listen:webhook_port; only requests carrying webhook_secret count).
    mode: str = "polling"
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = field(default="", repr=False)
    # After a crash or restart, messages stored but not answered yet get their reply at start-up when they are at
    # most this old (0 = never answer late); older ones keep their mood and get no reply.
    late_reply_max_age_minutes: int = 60

    @property
    def is_open(self) -> bool:
        """True when both allowlists are empty: anyone who finds the bot may use it (see ``OPEN_BOT_WARNING``)."""
        return not self.allowed_user_ids and not self.allowed_chat_ids

    def allows(self, user_id: int | None, chat_id: int | None = None) -> bool:
        """True when both allowlists are empty (everyone), or they name ``user_id`` (anywhere) or ``chat_id``
        (anyone in it), or ``user_id`` is an admin."""
        if self.is_open:
            return True
        return (user_id is not None and (user_id in self.allowed_user_ids or self.is_admin(user_id))) or (
            chat_id is not None and chat_id in self.allowed_chat_ids
        )

    def is_admin(self, user_id: int | None) -> bool:
        """True when ``user_id`` is in ``admin_user_ids`` (always allowed, no rate limit, ``/stats``)."""
        return user_id is not None and user_id in self.admin_user_ids


@dataclass(frozen=True)
class GroupsConfig:
    """``[groups]``: what the bot does with group messages that are not addressed to it."""

    log_all: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: a token bucket per user for every update (0 messages per minute = off), and how many updates
    one chat may have waiting before further ones are only stored."""

    messages_per_minute: int = 20
    burst: int = 10
    chat_backlog: int = 100


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


DEFAULT_CARE_MESSAGE = (
    "If you are thinking about hurting yourself, please reach out to someone right now: a person you trust, "
    "your local emergency number, or a crisis line (findahelpline.com lists free, confidential ones in every "
    "country). You don't have to go through this alone."
)
DEFAULT_CARE_MESSAGE_ZH = (
    "如果你有伤害自己的念头，请现在就联系身边信任的人，或拨打当地的紧急电话或心理援助热线"
    "（findahelpline.com 列出了各国免费、保密的热线）。你不必独自承受这些。"
)


@dataclass(frozen=True)
class CareConfig:
    """``[care]``: what the bot adds to its reply when a message signals self-harm or a crisis."""

    enabled: bool = True
    threshold: float = 0.9  # the analyst's crisis probability at or above which the help message is added
    message: str = DEFAULT_CARE_MESSAGE
    message_zh: str = DEFAULT_CARE_MESSAGE_ZH

    def message_for(self, text: str) -> str:
        """The help message in the language ``text`` is written in."""
        return self.message_zh if script_of(text) == "zh" else self.message


@dataclass(frozen=True)
class LoggingConfig:
    """``[logging]``: how much moodbot says about itself."""

    level: str = "INFO"
    include_text: bool = False  # put message texts in the per-message log lines (for debugging only)


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    engine: EngineSettings = field(default_factory=EngineSettings)
    storage: StorageConfig = field(default_factory=StorageConfig)
    mood: MoodConfig = field(default_factory=MoodConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    groups: GroupsConfig = field(default_factory=GroupsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    care: CareConfig = field(default_factory=CareConfig)

    def require_token(self) -> str:
        """The Telegram token, or a ConfigError saying where to put it."""
        if not self.telegram.token:
            raise ConfigError(f"telegram.token: missing (set it in the config file or in ${TOKEN_ENV_VAR})")
        return self.telegram.token


# Expected type of every key, per section; anything else in the file is an error (catches typos).
_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "telegram": {
        "token": str, "base_url": str, "allowed_user_ids": list, "max_message_chars": int,
        "allowed_chat_ids": list, "admin_user_ids": list,
        "mode": str, "webhook_url": str, "webhook_listen": str, "webhook_port": int, "webhook_secret": str,
        "late_reply_max_age_minutes": int,
    },
    "engine": {
        "model": str, "precision": str, "threads": int, "max_new_tokens": int, "history_tokens": int,
        "temperature": (int, float), "top_p": (int, float), "repetition_penalty": (int, float),
        "queue_size": int, "max_active_replies": int, "prompt_cache_mb": int, "seed": int,
        "calibrate": bool, "neutral_margin": (int, float), "care_question": bool,
        "backend": str, "base_url": str, "api_key": str, "request_timeout_s": (int, float), "max_retries": int,
    },
    "storage": {"path": str, "retention_days": int},
    "mood": {"default_days": int, "utc_offset_minutes": int},
    "logging": {"level": str, "include_text": bool},
    "care": {"enabled": bool, "threshold": (int, float), "message": str, "message_zh": str},
    "groups": {"log_all": bool},
    "limits": {"messages_per_minute": int, "burst": int, "chat_backlog": int},
}
_SECTION_TYPES = {
    "telegram": TelegramConfig, "engine": EngineSettings, "storage": StorageConfig,
    "mood": MoodConfig, "logging": LoggingConfig, "groups": GroupsConfig, "limits": LimitsConfig,
    "care": CareConfig,
}
_ID_LISTS = ("allowed_user_ids", "allowed_chat_ids", "admin_user_ids")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Telegram's rule for setWebhook's secret_token.
_WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WEBHOOK_SECRET_RULE = "must be 1 to 256 characters, each A-Z, a-z, 0-9, _ or - (Telegram's rule)"


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
    env_api_key = environ.get(ENGINE_API_KEY_ENV_VAR, "").strip()
    if env_api_key and not config.engine.api_key:
        try:
            config = replace(config, engine=replace(config.engine, api_key=env_api_key))
        except ValueError as exc:  # EngineSettings' own checks: the key must not travel over plain http
            raise ConfigError(f"engine: {exc} (the key came from ${ENGINE_API_KEY_ENV_VAR})") from None
    env_secret = environ.get(WEBHOOK_SECRET_ENV_VAR, "").strip()
    if env_secret and not config.telegram.webhook_secret:
        if not _WEBHOOK_SECRET_RE.fullmatch(env_secret):
            raise ConfigError(f"${WEBHOOK_SECRET_ENV_VAR}: {_WEBHOOK_SECRET_RULE}")
        config = replace(config, telegram=replace(config.telegram, webhook_secret=env_secret))
    _require_webhook_keys(config.telegram)
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
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            wanted = expected.__name__ if isinstance(expected, type) else "number"
            raise ConfigError(f"{name}: expected {_article(wanted)}, got {value!r}")
    _check_values(section, values)
    kwargs = dict(values)
    if section == "telegram":
        for key in _ID_LISTS:
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
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

    if section == "care":
        if not 0 < values.get("threshold", 0.9) <= 1:
            fail("threshold", "must be in (0, 1]")
        for key in ("message", "message_zh"):
            if key in values and not values[key].strip():
                fail(key, "must not be empty (set care.enabled = false to add nothing)")
    if section == "engine" and not 0 <= values.get("neutral_margin", 0.2) < 1:
        fail("neutral_margin", "must be in [0, 1)")

    positive = {
        "max_message_chars", "max_new_tokens", "history_tokens", "queue_size", "max_active_replies", "default_days",
        "chat_backlog",
    }
    for key in positive & values.keys():
        if values[key] < 1:
            fail(key, "must be at least 1")
    if section == "telegram":
        for key in _ID_LISTS:
            ids = values.get(key, [])
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                kind = "chat" if key == "allowed_chat_ids" else "user"
                fail(key, f"must be a list of numeric Telegram {kind} ids")
        base_url = values.get("base_url", "")
        if base_url and not base_url.startswith(("http://", "https://")):
            fail("base_url", "must start with http:// or https://")
        if values.get("late_reply_max_age_minutes", 0) < 0:
            fail("late_reply_max_age_minutes", "must be 0 (never answer late) or more")
        _check_webhook_values(values, fail)
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
        if values.get("backend", "local") not in BACKENDS:
            fail("backend", f"must be one of {', '.join(BACKENDS)}")
        if "base_url" in values and not values["base_url"].startswith(("http://", "https://")):
            fail("base_url", "must start with http:// or https://")
        if values.get("request_timeout_s", 1) <= 0:
            fail("request_timeout_s", "must be more than 0")
        if values.get("max_retries", 0) < 0:
            fail("max_retries", "must be 0 or more")
    if section == "storage":
        if not values.get("path", DEFAULT_DATABASE).strip():
            fail("path", "must not be empty")
        if values.get("retention_days", 0) < 0:
            fail("retention_days", "must be 0 (keep forever) or more")
    if section == "mood" and not -720 <= values.get("utc_offset_minutes", 0) <= 840:
        fail("utc_offset_minutes", "must be between -720 and 840")
    if section == "limits":
        if values.get("messages_per_minute", 0) < 0:
            fail("messages_per_minute", "must be 0 (no limit) or more")
        if values.get("burst", 1) < 1:
            fail("burst", "must be at least 1")
    if section == "logging" and values.get("level", "INFO").upper() not in _LOG_LEVELS:
        fail("level", f"must be one of {', '.join(_LOG_LEVELS)}")


def _check_webhook_values(values: dict[str, Any], fail: Callable[[str, str], None]) -> None:
    """``[telegram]``'s mode and webhook keys, each on its own (the secret is never echoed back)."""
    if values.get("mode", "polling") not in TELEGRAM_MODES:
        fail("mode", f"must be one of {', '.join(TELEGRAM_MODES)}")
    url = values.get("webhook_url", "")
    if url and (not url.startswith("https://") or not urlsplit(url).hostname):
        fail("webhook_url", "must be a public https:// URL (Telegram only posts to HTTPS)")
    if not values.get("webhook_listen", "127.0.0.1").strip():
        fail("webhook_listen", "must not be empty")
    if not 1 <= values.get("webhook_port", 8443) <= 65535:
        fail("webhook_port", "must be between 1 and 65535")
    secret = values.get("webhook_secret", "")
    if secret and not _WEBHOOK_SECRET_RE.fullmatch(secret):
        raise ConfigError(f"telegram.webhook_secret: {_WEBHOOK_SECRET_RULE}")


def _require_webhook_keys(telegram: TelegramConfig) -> None:
    """In webhook mode the public URL and the secret are required (the secret may come from the environment)."""
    if telegram.mode != "webhook":
        return
    if not telegram.webhook_url:
        raise ConfigError('telegram.webhook_url: required when telegram.mode = "webhook" (the public https URL)')
    if not telegram.webhook_secret:
        raise ConfigError(
            f'telegram.webhook_secret: required when telegram.mode = "webhook" '
            f"(set it in the config file or in ${WEBHOOK_SECRET_ENV_VAR})"
        )


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"

