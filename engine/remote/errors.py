"""The remote backend's failures as one-line EngineErrors, and which of them deserve another try."""

from __future__ import annotations

from typing import Any

import httpx

from engine.errors import EngineError, ServerUnavailable
from engine.remote.wire import one_line, parse_json

MAX_RETRY_AFTER_S = 30.0  # a longer Retry-After is not worth keeping a person waiting for
NO_LOGPROBS = (
    "the server at {url} returned no logprobs; moodbot's classifier needs an OpenAI-compatible server with logprobs "
    "support (vLLM, llama.cpp server ...)"
)
# Failures before the server saw the request, or of a connection that broke: worth another try.
_CANNOT_CONNECT = (httpx.ConnectError, httpx.ConnectTimeout)
_CONNECTION_LOST = (httpx.RemoteProtocolError, httpx.ReadError)


class MalformedAnswer(EngineError):
    """The server answered 200, but not with what an OpenAI-compatible server sends (wrong types, NaN ...)."""


def status_error(base_url: str, response: httpx.Response, path: str, body: bytes) -> EngineError:
    """The error for a non-200 answer (``body``: the start of what it said): ServerUnavailable for 429 and 5xx, a
    plain EngineError otherwise."""
    status = response.status_code
    where = f"the model server at {base_url}"
    if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        return EngineError(f"{where} refused the API key ({status}); check engine.api_key")
    detail = one_line(body.decode("utf-8", errors="replace")) or response.reason_phrase
    message = f"{where} answered {status} to {path}: {detail}"
    if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
        return ServerUnavailable(message, retry_after(response))
    return EngineError(message)


def transport_error(base_url: str, exc: httpx.HTTPError, timeout_s: float) -> EngineError:
    """The error for a failed connection or request: ServerUnavailable when another try makes sense."""
    reason = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, _CANNOT_CONNECT):
        return ServerUnavailable(f"cannot reach the model server at {base_url}: {reason}")
    if isinstance(exc, _CONNECTION_LOST):
        return ServerUnavailable(f"lost the connection to the model server at {base_url}: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return EngineError(f"the model server at {base_url} did not answer within {timeout_s:g} s")
    return EngineError(f"request to the model server at {base_url} failed: {reason}")


def json_answer(base_url: str, body: bytes, path: str) -> dict[str, Any]:
    """The JSON object a 200 answer's ``body`` holds, or an EngineError (truncated, not JSON, not an object)."""
    try:
        answer = parse_json(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise EngineError(
            f"the model server at {base_url} answered {path} with something other than a JSON object: "
            f"{one_line(body[:80].decode('utf-8', errors='replace'), 80)!r}"
        )
    return answer


def retry_after(response: httpx.Response) -> float:
    """The server's Retry-After in seconds (capped), or 0 when absent or a date."""
    try:
        return min(float(response.headers.get("retry-after", "0")), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0
