"""moodbot's shared model: loading, the analyst and companion roles, the inference worker and backends.

Knows nothing of Telegram or SQL.
"""

from engine.base import Engine
from engine.errors import EngineBusy, EngineClosed, EngineError, ModelLoadError
from engine.local import LocalEngine
from engine.settings import DEFAULT_MODEL, PRECISIONS, EngineSettings
from engine.values import LABELS, ChatTurn, Sentiment


def create_engine(settings: EngineSettings) -> Engine:
    """The engine for ``settings`` (not started yet)."""
    return LocalEngine(settings)


__all__ = [
    "DEFAULT_MODEL",
    "LABELS",
    "PRECISIONS",
    "ChatTurn",
    "Engine",
    "EngineBusy",
    "EngineClosed",
    "EngineError",
    "EngineSettings",
    "LocalEngine",
    "ModelLoadError",
    "Sentiment",
    "create_engine",
]
