"""The remote backend: an OpenAI-compatible server (vLLM, the llama.cpp server, Ollama) runs the model.

HTTP goes through ``httpx.AsyncClient``: python-telegram-bot already depends on httpx, so this backend adds no
dependency, and a streamed reply's server-sent events are plain ``data: {...}`` lines that
:func:`engine.remote.wire.sse_deltas` reads off ``aiter_lines``. The analyst's two questions are two small
greedy requests with ``top_logprobs`` (:mod:`engine.remote.analyst` explains how the answers are read from them),
calibrated at start-up like the local analyst; replies stream and pass through the same guard as the local
engine's.

Every answer is read as raw bytes within the bounds of :mod:`engine.remote.wire` (a byte limit, one time budget
per request, ``Accept-Encoding: identity`` so nothing is inflated), and every failure, malformed answers included,
is an :class:`~engine.errors.EngineError`, so the bot's busy and back-fill handling applies.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from engine.errors import EngineBusy, EngineClosed, EngineError, ModelLoadError
from engine.remote.analyst import (
    AnswerScores,
    calibration_bias,
    care_body,
    care_scores,
    label_scores,
    lean,
    remote_sentiment,
    sentiment_body,
    top_logprobs_at,
)
from engine.remote.errors import (
    NO_LOGPROBS,
    MalformedAnswer,
    ServerUnavailable,
    json_answer,
    status_error,
    transport_error,
)
from engine.remote.wire import (
    MAX_ANSWER_BYTES,
    MAX_ERROR_BYTES,
    Deadline,
    GuardedText,
    capped,
    read_all,
    reply_body,
    reply_char_limit,
    sse_deltas,
    stream_byte_limit,
    text_lines,
    too_large,
)
from engine.roles.prompts import CONTENT_FREE
from engine.settings import EngineSettings
from engine.values import ChatTurn, ReplyLength, Sentiment

logger = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"
MODELS_PATH = "/models"
PROBE_TEXT = "What a lovely day!"


class OpenAIEngine:
    """Classifies and replies through an OpenAI-compatible chat-completions server."""

    def __init__(
        self, settings: EngineSettings, *, backoff_s: float = 0.5, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.backoff_s = backoff_s  # first retry delay; doubles with each further try
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._outstanding = 0
        self._unlabelled = 0
        self._closed = False
        self.bias: dict[str, float] = {}  # per script, measured at start when settings.calibrate

    @property
    def model_name(self) -> str:
        """The model name sent to the server."""
        return self.settings.model

    @property
    def queue_depth(self) -> int:
        """Requests in flight (classifications and replies)."""
        return self._outstanding

    async def start(self) -> None:
        """Check the server answers and returns logprobs; ModelLoadError with a one-line reason otherwise."""
        if self._client is not None:
            return
        if self._closed:
            raise EngineClosed()
        headers = {"Accept-Encoding": "identity"}  # the byte limits bound what is stored, so nothing may inflate
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.settings.request_timeout_s),
            transport=self._transport,
        )
        try:
            await self._check_server()
        except EngineError as exc:
            await self.close()
            raise ModelLoadError(str(exc)) from None
        except BaseException:
            await self.close()
            raise

    @property
    def unlabelled(self) -> int:
        """Classifications so far whose top logprobs held no label token at all (their verdict is a guess)."""
        return self._unlabelled

    async def classify(self, text: str) -> Sentiment:
        """Sentiment (and care) of one message in its own isolated prompts, read from the servers' top logprobs."""
        labels, care = await self.answers(text)
        return remote_sentiment(text, labels, care, bias=self.bias, neutral_margin=self.settings.neutral_margin)

    async def answers(self, text: str) -> tuple[AnswerScores, AnswerScores]:
        """The label and care scores behind :meth:`classify` (two requests, sent together)."""
        self._check_capacity()
        self._outstanding += 1
        try:
            labels, care = await asyncio.gather(self._labels(text), self._care(text), return_exceptions=True)
        finally:
            self._outstanding -= 1
        for outcome in (labels, care):  # both finished: no request is left running behind a failure
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(labels, AnswerScores) and isinstance(care, AnswerScores)
        if not labels.seen:
            self._unlabelled += 1
            logger.debug("no label word among the server's top tokens; the verdict is a guess")
        return labels, care

    async def reply(
        self, history: Sequence[ChatTurn], message: str, *, length: ReplyLength = "normal"
    ) -> AsyncIterator[str]:
        """Stream the companion's reply (``length``: "normal" or "short"); retried only until its first text was
        shown, EngineBusy before it."""
        client = self._check_capacity()
        self._outstanding += 1
        max_tokens = self.settings.reply_token_limit(length)
        try:
            body = reply_body(self.settings, history, message, length)
            for attempt in itertools.count():
                guard = GuardedText(reply_char_limit(max_tokens))
                try:
                    deadline = self._deadline()
                    response = await self._open(client, "POST", CHAT_PATH, body, deadline)
                    try:
                        chunks = self._chunks(response, stream_byte_limit(max_tokens), deadline)
                        async for delta in sse_deltas(text_lines(chunks)):
                            if text := guard.feed(delta):
                                yield text
                        if text := guard.finish():
                            yield text
                    finally:
                        await response.aclose()
                    return
                except httpx.HTTPError as exc:
                    error = transport_error(self.base_url, exc, self.settings.request_timeout_s)
                except ServerUnavailable as exc:
                    error = exc
                if guard.shown or not isinstance(error, ServerUnavailable) or attempt >= self.settings.max_retries:
                    raise error
                await self._pause(attempt, error)
        finally:
            self._outstanding -= 1

    async def forget_conversations(self) -> None:
        """Nothing to drop: this side keeps no conversation state (what the server caches is the server's)."""

    async def close(self) -> None:
        """Close the HTTP connections (requests still in flight fail); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def __del__(self) -> None:
        if self._client is not None and not self._closed:
            warnings.warn("OpenAIEngine was never closed", ResourceWarning, stacklevel=1)

    # -- steps ------------------------------------------------------------------------------------------------

    async def _check_server(self) -> None:
        listing = await self._call("GET", MODELS_PATH)
        data = listing.get("data")
        entries = data if isinstance(data, list) else []  # only for a warning: a malformed list is no reason to stop
        models = [m["id"] for m in entries if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if models and self.settings.model not in models:
            logger.warning("model %s is not among the server's models (%s)", self.settings.model, ", ".join(models))
        await self._labels(PROBE_TEXT)  # refuses a server without logprobs
        if self.settings.calibrate:
            self.bias = {script: await self._content_free_bias(texts) for script, texts in CONTENT_FREE.items()}
        logger.info("model server at %s answers with logprobs (model %s)", self.base_url, self.settings.model)

    async def _content_free_bias(self, texts: Sequence[str]) -> float:
        return calibration_bias([lean(await self._labels(text)) for text in texts])

    async def _labels(self, text: str) -> AnswerScores:
        answer = await self._call("POST", CHAT_PATH, sentiment_body(self.settings.model, text))
        return label_scores(self._top_logprobs(answer, after_opening=True))

    async def _care(self, text: str) -> AnswerScores:
        if not self.settings.care_question:
            return AnswerScores(logprobs={}, seen=())  # no model answer: only crisis phrases count
        answer = await self._call("POST", CHAT_PATH, care_body(self.settings.model, text))
        return care_scores(self._top_logprobs(answer, after_opening=False))

    def _top_logprobs(self, answer: dict[str, Any], *, after_opening: bool) -> list[dict[str, Any]]:
        try:
            top = top_logprobs_at(answer, after_opening=after_opening)
        except MalformedAnswer as exc:
            raise MalformedAnswer(f"the model server at {self.base_url} sent a malformed answer: {exc}") from None
        if top is None:
            raise EngineError(NO_LOGPROBS.format(url=self.base_url))
        return top

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One JSON request, retried with backoff on connection errors, 429 and 5xx."""
        client = self._running_client()
        for attempt in itertools.count():
            try:
                deadline = self._deadline()
                response = await self._open(client, method, path, body, deadline)
                try:
                    answer = await read_all(self._chunks(response, MAX_ANSWER_BYTES, deadline))
                finally:
                    await response.aclose()
                return json_answer(self.base_url, answer, path)
            except httpx.HTTPError as exc:
                error = transport_error(self.base_url, exc, self.settings.request_timeout_s)
            except ServerUnavailable as exc:
                error = exc
            if not isinstance(error, ServerUnavailable) or attempt >= self.settings.max_retries:
                raise error
            await self._pause(attempt, error)
        raise AssertionError("unreachable")

    async def _open(
        self, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None, deadline: Deadline
    ) -> httpx.Response:
        """Send one request; the 200 answer with its body still unread (the caller closes it), or an EngineError."""
        request = client.build_request(method, path, json=body)
        response = await deadline.wait(client.send(request, stream=True))
        try:
            if response.status_code != httpx.codes.OK:
                start = await read_all(self._chunks(response, MAX_ERROR_BYTES, deadline, cut=True))
                raise status_error(self.base_url, response, path, start)
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise EngineError(f"the model server at {self.base_url} sent a {encoding}-encoded answer to {path} "
                                  "though asked for none")
        except BaseException:
            await response.aclose()
            raise
        return response

    def _chunks(
        self, response: httpx.Response, limit: int, deadline: Deadline, *, cut: bool = False
    ) -> AsyncIterator[bytes]:
        """The raw body of ``response`` within ``limit`` bytes and ``deadline``: EngineError past the limit (one
        declared in Content-Length fails before reading), or with ``cut`` just its first ``limit`` bytes."""
        declared = response.headers.get("content-length", "")
        if not cut and declared.isdigit() and int(declared) > limit:
            raise EngineError(f"the model server at {self.base_url}: {too_large(limit)}")
        return capped(response.aiter_raw(), limit, deadline, cut=cut)

    def _deadline(self) -> Deadline:
        timeout = self.settings.request_timeout_s
        return Deadline(timeout, f"the model server at {self.base_url} did not finish answering within {timeout:g} s")

    async def _pause(self, attempt: int, error: ServerUnavailable) -> None:
        delay = max(self.backoff_s * 2**attempt, error.retry_after_s)
        logger.warning("%s; retrying in %.1f s (%d/%d)", error, delay, attempt + 1, self.settings.max_retries)
        await asyncio.sleep(delay)

    # -- capacity ---------------------------------------------------------------------------------------------

    def _running_client(self) -> httpx.AsyncClient:
        if self._closed or self._client is None:
            raise EngineClosed()
        return self._client

    def _check_capacity(self) -> httpx.AsyncClient:
        client = self._running_client()
        if self._outstanding >= self.settings.queue_size:
            raise EngineBusy()
        return client
