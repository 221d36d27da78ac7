"""moodbot's configuration: one TOML file (tomllib), every key checked, errors that name the key.

Each section is a frozen dataclass (``[engine]`` is the engine's own ``EngineSettings``); its fields and their type
hints are the schema, so a key is declared once. Each rule on a value is written once: in ``_RULES``, or, for what
``EngineSettings`` checks itself, there (its ValueError becomes a ConfigError naming the key).

The Telegram token may come from the environment variable ``MOODBOT_TELEGRAM_TOKEN`` instead of the file; it is
kept out of ``repr`` so it never lands in a log line. So may the webhook secret (``MOODBOT_WEBHOOK_SECRET``), kept out
of ``repr`` and error messages alike.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES
from bot.toml_keys import TomlKey, keys_of
from engine import EngineSettings

TOKEN_ENV_VAR = "MOODBOT_TELEGRAM_TOKEN"
WEBHOOK_SECRET_ENV_VAR = "MOODBOT_WEBHOOK_SECRET"
TELEGRAM_MODES = ("polling", "webhook")
ENGINE_API_KEY_ENV_VAR = "MOODBOT_ENGINE_API_KEY"  # fills in a missing engine.api_key (kept out of repr too)
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
DEFAULT_DATABASE = "~/.local/share/moodbot/moodbot.db"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Telegram's rule for setWebhook's secret_token.
_WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WEBHOOK_SECRET_RULE = "must be 1 to 256 characters, each A-Z, a-z, 0-9, _ or - (Telegram's rule)"

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
    """``[mood]``: how ``/mood`` groups days; ``utc_offset_minutes`` is the zone of people without their own."""

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


@dataclass(frozen=True)
class BotConfig:
    """``[bot]``: the language of people who chose none and whose Telegram app names none the bot speaks."""

    default_language: str = DEFAULT_LANGUAGE


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
    bot: BotConfig = field(default_factory=BotConfig)

    def require_token(self) -> str:
        """The Telegram token, or a ConfigError saying where to put it."""
        if not self.telegram.token:
            raise ConfigError(f"telegram.token: missing (set it in the config file or in ${TOKEN_ENV_VAR})")
        return self.telegram.token

    def secrets(self) -> list[str]:
        """Every value kept out of ``repr`` (the token, the webhook secret, the engine's API key): none may appear
        in a log line or on the terminal."""
        sections = [getattr(self, name) for name in _SECTIONS]
        return [getattr(section, f.name) for section in sections for f in fields(section) if not f.repr]


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
            raise _naming_the_key("engine", exc, f" (the key came from ${ENGINE_API_KEY_ENV_VAR})") from None
    env_secret = environ.get(WEBHOOK_SECRET_ENV_VAR, "").strip()
    if env_secret and not config.telegram.webhook_secret:
        if not _is_webhook_secret(env_secret):
            raise ConfigError(f"${WEBHOOK_SECRET_ENV_VAR}: {_WEBHOOK_SECRET_RULE}")
        config = replace(config, telegram=replace(config.telegram, webhook_secret=env_secret))
    _require_webhook_keys(config.telegram)
    return config


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML, refusing unknown sections/keys, wrong types and values out of range."""
    sections: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        sections[section] = _build_section(section, values)
    return Config(**sections)


# -- the schema, read from the dataclasses ------------------------------------------------------------------------
# Each section's keys and their types are the fields of its dataclass (EngineSettings for [engine]), read by
# bot.toml_keys; each rule on a value is written once, in _RULES, or, for [engine], left to EngineSettings' own
# checks where it has them.


_SECTIONS: dict[str, type] = get_type_hints(Config)
_KEYS: dict[str, dict[str, TomlKey]] = {section: keys_of(cls) for section, cls in _SECTIONS.items()}


@dataclass(frozen=True)
class _Rule:
    """A check on one key's value, and why it failed."""

    key: str
    ok: Callable[[Any], bool]
    why: str


def _at_least(key: str, low: int, why: str | None = None) -> _Rule:
    return _Rule(key, lambda value: value >= low, why or f"must be at least {low}")


def _between(key: str, low: float, high: float) -> _Rule:
    return _Rule(key, lambda value: low <= value <= high, f"must be between {low} and {high}")


def _one_of(key: str, choices: tuple[str, ...]) -> _Rule:
    return _Rule(key, lambda value: value in choices, f"must be one of {', '.join(choices)}")


def _not_empty(key: str, why: str = "must not be empty") -> _Rule:
    return _Rule(key, lambda value: bool(value.strip()), why)


def _http_url(key: str, *, optional: bool = False) -> _Rule:
    return _Rule(
        key, lambda url: (optional and not url) or url.startswith(("http://", "https://")),
        "must start with http:// or https://",
    )


def _public_https_url(url: str) -> bool:
    return not url or (url.startswith("https://") and bool(urlsplit(url).hostname))


_RULES: dict[str, list[_Rule]] = {
    "telegram": [
        _at_least("max_message_chars", 1),
        _http_url("base_url", optional=True),  # empty: the default
        _at_least("late_reply_max_age_minutes", 0, "must be 0 (never answer late) or more"),
        _one_of("mode", TELEGRAM_MODES),
        _Rule("webhook_url", _public_https_url, "must be a public https:// URL (Telegram only posts to HTTPS)"),
        _not_empty("webhook_listen"),
        _between("webhook_port", 1, 65535),
        _Rule("webhook_secret", lambda secret: not secret or _is_webhook_secret(secret), _WEBHOOK_SECRET_RULE),
    ],
    # Only what EngineSettings leaves unchecked: precision, threads, backend, neutral_margin and the remote
    # backend's timeout, retries and key transport are its own rules.
    "engine": [
        *(_at_least(key, 1) for key in ("max_new_tokens", "history_tokens", "queue_size", "max_active_replies")),
        _between("temperature", 0, 2),
        _Rule("top_p", lambda p: 0 < p <= 1, "must be in (0, 1]"),
        _not_empty("model"),
        _http_url("base_url"),
    ],
    "storage": [_not_empty("path"), _at_least("retention_days", 0, "must be 0 (keep forever) or more")],
    "mood": [_at_least("default_days", 1), _between("utc_offset_minutes", -720, 840)],
    "logging": [_Rule("level", lambda level: level.upper() in _LOG_LEVELS, f"must be one of {', '.join(_LOG_LEVELS)}")],
    "groups": [],
    "bot": [_one_of("default_language", LANGUAGES)],
    "limits": [
        _at_least("messages_per_minute", 0, "must be 0 (no limit) or more"),
        _at_least("burst", 1),
        _at_least("chat_backlog", 1),
    ],
    "care": [
        _Rule("threshold", lambda threshold: 0 < threshold <= 1, "must be in (0, 1]"),
        _not_empty("message", "must not be empty (set care.enabled = false to add nothing)"),
        _not_empty("message_zh", "must not be empty (set care.enabled = false to add nothing)"),
    ],
}


def _build_section(section: str, values: dict[str, Any]) -> Any:
    """One section's dataclass from its TOML table: known keys, right types, every rule, then the dataclass's own
    checks (EngineSettings') with the key they name."""
    keys = _KEYS[section]
    for key, value in values.items():
        name = f"{section}.{key}"
        if key not in keys:
            raise ConfigError(f"{name}: unknown key (known: {', '.join(keys)})")
        if not keys[key].accepts(value):
            raise ConfigError(f"{name}: expected {keys[key].expected}" + _got(keys[key], value))
    for rule in _RULES[section]:
        if rule.key in values and not rule.ok(values[rule.key]):
            raise ConfigError(f"{section}.{rule.key}: {rule.why}" + _got(keys[rule.key], values[rule.key]))
    kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    if section == "telegram" and "base_url" in kwargs:
        kwargs["base_url"] = kwargs["base_url"] or DEFAULT_BASE_URL
    if section == "logging" and "level" in kwargs:
        kwargs["level"] = kwargs["level"].upper()
    try:
        return _SECTIONS[section](**kwargs)
    except ValueError as exc:  # EngineSettings' own checks
        raise _naming_the_key(section, exc) from None


def _got(key: TomlKey, value: Any) -> str:
    return "" if key.secret else f", got {value!r}"


def _naming_the_key(section: str, exc: ValueError, note: str = "") -> ConfigError:
    """A dataclass's ValueError (``threads must be 0 …``, ``base_url: an API key …``) as a ConfigError that starts
    with the key it is about (``engine.threads: must be 0 …``)."""
    key, _, rest = str(exc).partition(" ")
    key = key.rstrip(":")
    if key in _KEYS[section]:
        return ConfigError(f"{section}.{key}: {rest}{note}")
    return ConfigError(f"{section}: {exc}{note}")


def _is_webhook_secret(secret: str) -> bool:
    return _WEBHOOK_SECRET_RE.fullmatch(secret) is not None


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
