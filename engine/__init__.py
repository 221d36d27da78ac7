"""moodbot's shared model: loading, the analyst and companion roles, the inference worker and backends.

Knows nothing of Telegram or SQL.
"""

from engine.base import Engine
from engine.errors import EngineBusy, EngineClosed, EngineError, ModelLoadError
from engine.local.engine import LocalEngine
from engine.openai_backend import OpenAIEngine
from engine.settings import BACKENDS, DEFAULT_MODEL, PRECISIONS, EngineSettings
from engine.values import LABELS, ChatTurn, Sentiment


def create_engine(settings: EngineSettings) -> Engine:
    """The engine for ``settings`` (not started yet): the model in this process, or an OpenAI-compatible server."""
    if settings.backend == "openai":
        return OpenAIEngine(settings)
    return LocalEngine(settings)


__all__ = [
    "BACKENDS",
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
    "OpenAIEngine",
    "Sentiment",
    "create_engine",
]
