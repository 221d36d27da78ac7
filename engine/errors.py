"""Errors meant for people: each carries a one-line message that can be shown without a traceback."""

from __future__ import annotations


class EngineError(Exception):
    """Base class for engine errors whose message is fit for a user or a self-hoster."""


class ModelLoadError(EngineError):
    """The model could not be found or loaded (bad path, unknown hub id, no network, broken file)."""


class EngineBusy(EngineError):
    """The inference queue is full; the caller should answer politely and try again later."""

    def __init__(self, message: str = "the model is busy, try again in a moment") -> None:
        super().__init__(message)


class EngineClosed(EngineError):
    """The engine was closed (or never started) when work was submitted."""

    def __init__(self, message: str = "the engine is not running") -> None:
        super().__init__(message)


class ServerUnavailable(EngineError):
    """The model server could not be reached or answered 429/5xx (remote backend); another try may succeed."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
