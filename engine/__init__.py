"""moodbot's shared model, behind one small API: :func:`create_engine`, the :class:`Engine` protocol, the values and
errors it speaks in, :class:`EngineSettings`, :func:`script_of` (which script a message is written in, as the
analyst calibrates by it), :func:`has_crisis_phrase` (whether a message says in so many words that its writer may
hurt themselves: the care floor, without the model), :func:`describe_analyst_adapter`, and
:func:`prepared_weights_state` (whether a start will find its prepared weights cached). Knows nothing of Telegram or
SQL.

The rooms inside: ``roles/`` (what both backends share: prompts, chat format, verdict, care phrases, guard, history,
language), ``local/`` (the in-process backend), ``loading/`` (checkpoint to model), ``kernels/`` (fast paths that know
nothing of roles), ``adapters/`` (trained analyst adapters' files), ``remote/`` (the OpenAI-compatible backend).
Importing this package never imports torch: the backends are imported when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.base import Engine
from engine.errors import EngineBusy, EngineClosed, EngineError, ModelLoadError, ServerUnavailable
from engine.roles.care_phrases import has_crisis_phrase
from engine.roles.language import script_of
from engine.settings import BACKENDS, DEFAULT_MODEL, PRECISIONS, TRAINING_PRECISIONS, EngineSettings
from engine.values import LABELS, REPLY_LENGTHS, ChatTurn, ReplyLength, Sentiment

if TYPE_CHECKING:
    from engine.loading.prepared_files import PreparedWeights
    from engine.local.engine import LocalEngine
    from engine.remote.backend import OpenAIEngine

# Imported on first use: the local backend and the trainer bring torch and transformers.
_LAZY = {
    "LocalEngine": "engine.local.engine",
    "OpenAIEngine": "engine.remote.backend",
    "tune": "engine.tuning.trainer",  # train an analyst adapter (``moodbot tune``)
    "TuneJob": "engine.tuning.trainer",
    "RECIPES": "engine.tuning.recipes",
    "TrainingDataError": "engine.tuning.data",
    "read_labelled": "engine.tuning.data",  # text<TAB>label files, for ``tune`` and ``eval`` alike
}


def create_engine(settings: EngineSettings) -> Engine:
    """The engine for ``settings`` (not started yet): the model in this process, or an OpenAI-compatible server."""
    if settings.backend == "openai":
        from engine.remote.backend import OpenAIEngine

        return OpenAIEngine(settings)
    from engine.local.engine import LocalEngine

    return LocalEngine(settings)


def describe_analyst_adapter(settings: EngineSettings) -> str:
    """One line on ``settings.analyst_adapter`` (what it was trained on, its labels, rank and size), checked against
    the configured model's weights without loading them; an EngineError with a one-line reason when it does not
    fit. For ``moodbot doctor``."""
    from engine.local.adapted_analyst import describe_adapter

    return describe_adapter(settings)


def int8_kernel() -> str:
    """Which kernel computes int8 products on this CPU: "AVX2 (<library>)" (engine/kernels/native.py, built on first
    use) or "oneDNN". For ``moodbot doctor``."""
    from engine.kernels.native import avx2_int8

    kernel = avx2_int8()
    return f"AVX2 ({kernel.path})" if kernel is not None else "oneDNN"


def prepared_weights_state(settings: EngineSettings) -> PreparedWeights:
    """Whether a start with ``settings`` finds its prepared int8 weights cached (reads file headers, loads nothing,
    downloads nothing): ``state`` is "cached", "not yet", "off" or "not used", with ``path``, ``size_bytes`` and
    ``detail``."""
    from engine.loading.prepared_files import prepared_weights_state as state

    return state(settings)


def __getattr__(name: str) -> Any:
    """The backends and the trainer (see ``_LAZY``), imported when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "LABELS",
    "PRECISIONS",
    "REPLY_LENGTHS",
    "TRAINING_PRECISIONS",
    "ChatTurn",
    "Engine",
    "EngineBusy",
    "EngineClosed",
    "EngineError",
    "EngineSettings",
    "LocalEngine",
    "ModelLoadError",
    "OpenAIEngine",
    "ReplyLength",
    "Sentiment",
    "ServerUnavailable",
    "create_engine",
    "describe_analyst_adapter",
    "has_crisis_phrase",
    "int8_kernel",
    "prepared_weights_state",
    "script_of",
]
