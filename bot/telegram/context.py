"""A PTB context type that exposes moodbot's services as typed properties instead of string keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from telegram import Update
from telegram.ext import Application, CallbackContext, ExtBot

from bot.config import Config
from bot.flow import Conversations
from bot.flow.checkins import CheckIns
from bot.telegram.awaiting import TypedCity
from bot.telegram.language import update_language
from bot.telegram.ratelimit import RateLimiter
from engine import Engine
from storage import Store, StoredMessage

SERVICES_KEY = "moodbot.services"


@dataclass
class Services:
    """What handlers work with; created in ``post_init``, closed in ``post_shutdown``."""

    config: Config
    engine: Engine
    store: Store
    conversations: Conversations
    checkins: CheckIns
    refused_users: set[int] = field(default_factory=set)
    # Messages stored the moment their update arrived, by update id, until the update's handlers have run.
    arrivals: dict[int, StoredMessage] = field(default_factory=dict)
    # Who was asked to type a city for /settings (the filter of the handler that takes it).
    typed_city: TypedCity = field(default_factory=TypedCity)
    rate_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        """The per-person token buckets for every update, from ``[limits]``."""
        limits = self.config.limits
        self.rate_limiter = RateLimiter(limits.messages_per_minute, limits.burst)


class MoodContext(CallbackContext[ExtBot[None], dict, dict, dict]):
    """CallbackContext with ``services``, ``store``, ``engine`` and ``config`` properties, and the language of the
    person behind the update (``language_of``). PTB makes one per update, shared by the handlers it runs."""

    def __init__(self, application: Application, chat_id: int | None = None, user_id: int | None = None):
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)
        self._languages: dict[int, str] = {}  # by update id: the store is read once per update

    async def language_of(self, update: Update) -> str:
        """The language to speak to whoever sent ``update`` (``bot.telegram.language``)."""
        if update.update_id not in self._languages:
            self._languages[update.update_id] = await update_language(self.store, self.config, update)
        return self._languages[update.update_id]

    @property
    def services(self) -> Services:
        """moodbot's services for this application."""
        return self.bot_data[SERVICES_KEY]

    @property
    def store(self) -> Store:
        """The database."""
        return self.services.store

    @property
    def engine(self) -> Engine:
        """The model."""
        return self.services.engine

    @property
    def config(self) -> Config:
        """The configuration."""
        return self.services.config
