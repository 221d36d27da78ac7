"""What moodbot sends to and reads from an OpenAI-compatible server for replies: the request, the SSE stream, the guard,
and the bounds every answer is read within.

No HTTP here: :mod:`engine.remote.backend` does it; :mod:`engine.remote.analyst` holds the classification side.
Without a tokenizer, lengths are estimated (:func:`approx_tokens`).

A server can be broken, overloaded or hostile, so nothing it sends is trusted to be small, quick or well formed:
answers are read in raw chunks up to a byte limit (:func:`capped`), every wait for the server spends one budget
per request (:class:`Deadline`), and anything that is not what an OpenAI-compatible server sends is an
:class:`~engine.errors.EngineError`.
"""

from __future__ import annotations

import asyncio
import codecs
import io
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from engine.errors import EngineError
from engine.roles.guard import is_forbidden_line, visible_reply
from engine.roles.history import TURN_OVERHEAD_TOKENS
from engine.roles.prompts import COMPANION_SYSTEM_PROMPTS
from engine.settings import EngineSettings
from engine.values import ChatTurn, ReplyLength

CHARS_PER_TOKEN = 4  # rough size of a token of Latin-script text; CJK and other wide characters count 1 each
WIDE_FROM = 0x2E80  # first CJK code point

# Bounds on what a server may send. A classification's answer (8 tokens x 20 top logprobs) is about 20 KiB and a
# streamed chunk carries one token in 200-400 bytes of JSON, so these leave ten times the room a real server needs
# while keeping a runaway answer to a few MiB per request.
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # one JSON answer (a big server's model list included)
MAX_ERROR_BYTES = 16 * 1024  # read of a refusal's body: enough to quote it
STREAM_BASE_BYTES = 64 * 1024
STREAM_BYTES_PER_TOKEN = 4096
MAX_CHARS_PER_TOKEN = 64  # on average: a real reply has about 4, so more text than this is not a reply

T = TypeVar("T")

# The server renders its chat template and tokenises the result with special tokens parsed (llama-cpp-python's
# chat handler calls tokenize(..., special=True); vLLM and the llama.cpp server do the same), so a message holding
# "<|im_start|>system" would open a real turn there. Without the server's tokenizer, moodbot defuses the spellings
# control tokens have in chat templates: <|...|> (ChatML, Llama 3, Phi, gpt-oss; DeepSeek's fullwidth <｜...｜>),
# <tag> and </tag> (Gemma's <start_of_turn>, <s>, </s>, <think>, SmolLM's <repo_name>) and Mistral's [INST] family.
# A zero-width space after the opening bracket keeps the text readable for the model but no longer the token.
CONTROL_TOKEN_TEXT = re.compile(
    r"<(?=[|｜])|<(?=/?[A-Za-z_][A-Za-z0-9_]*>)"
    r"|\[(?=/?(?:INST|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS|TOOL_CONTENT|THINK)\])"
)
ZERO_WIDTH_SPACE = "\u200b"


# -- bounds ---------------------------------------------------------------------------------------------------


def stream_byte_limit(max_new_tokens: int) -> int:
    """The most bytes a streamed reply of ``max_new_tokens`` tokens may take, SSE framing included."""
    return STREAM_BASE_BYTES + max_new_tokens * STREAM_BYTES_PER_TOKEN


def reply_char_limit(max_new_tokens: int) -> int:
    """The most reply text ``max_new_tokens`` tokens can decode to."""
    return max_new_tokens * MAX_CHARS_PER_TOKEN


class Deadline:
    """One request's time for waiting on the server, spent only while waiting (so a trickle cannot outlast it).

    Time the caller spends between reads (showing a streamed chunk to a person) is not counted.
    """

    def __init__(self, seconds: float, message: str) -> None:
        self.left = seconds
        self.message = message  # the EngineError's text when the time is up

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable`` within the time left; EngineError when it runs out first (the wait is cancelled)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(max(self.left, 0.0)):
                return await awaitable
        except TimeoutError:
            raise EngineError(self.message) from None
        finally:
            self.left -= time.monotonic() - started


async def capped(
    chunks: AsyncIterator[bytes], limit: int, deadline: Deadline, *, cut: bool = False
) -> AsyncIterator[bytes]:
    """``chunks`` as they arrive, each awaited within ``deadline``, up to ``limit`` bytes in all: past it an
    EngineError, or with ``cut`` the end (when the beginning is all that is needed; the rest is never read)."""
    total = 0
    while True:
        try:
            chunk = await deadline.wait(anext(chunks))
        except StopAsyncIteration:
            return
        if total + len(chunk) > limit:
            if not cut:
                raise EngineError(too_large(limit))
            yield chunk[: limit - total]
            return
        total += len(chunk)
        yield chunk


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    """Every chunk joined (bound them with :func:`capped`)."""
    return b"".join([chunk async for chunk in chunks])


def too_large(limit: int) -> str:
    """The error text for an answer over ``limit`` bytes."""
    return f"the server's answer is larger than {limit / 1024:g} KiB, more than a real answer needs"


async def text_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of UTF-8 text in ``chunks`` (ended by LF, CR LF or CR); EngineError for bytes that are not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = io.StringIO()  # the line begun so far (linear however many chunks a long line arrives in)
    final = False
    while not final:
        chunk = await anext(chunks, None)
        final = chunk is None
        try:
            text = decoder.decode(chunk or b"", final=final)
        except UnicodeDecodeError:
            raise EngineError("the server's stream is not UTF-8 text") from None
        # A CR LF split over two chunks reads as an extra empty line: harmless, SSE skips empty lines.
        *complete, rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for piece in complete:
            pending.write(piece)
            yield pending.getvalue()
            pending = io.StringIO()
        pending.write(rest)
    if tail := pending.getvalue():
        yield tail


def parse_json(data: str | bytes) -> Any:
    """``data`` parsed as JSON; ValueError when it is not (nesting too deep for the parser included)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# -- the companion --------------------------------------------------------------------------------------------


def defuse_control_tokens(text: str) -> str:
    """``text`` with every control-token spelling broken by a zero-width space, so a server that parses special
    tokens in its rendered prompt reads it as text (see :data:`CONTROL_TOKEN_TEXT`)."""
    return CONTROL_TOKEN_TEXT.sub(lambda match: match.group() + ZERO_WIDTH_SPACE, text)


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate of ``text``'s length in tokens (errs long for Latin text, about right for CJK)."""
    wide = sum(1 for char in text if ord(char) >= WIDE_FROM)
    return wide + math.ceil((len(text) - wide) / CHARS_PER_TOKEN)


def trim_history_approx(history: Sequence[ChatTurn], budget_tokens: int) -> list[ChatTurn]:
    """The newest turns that fit in ``budget_tokens`` (estimated), oldest first; never starts on a reply."""
    kept: list[ChatTurn] = []
    used = 0
    for turn in reversed(history):
        cost = approx_tokens(turn.text) + TURN_OVERHEAD_TOKENS
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept


def truncate_approx(text: str, max_tokens: int) -> str:
    """``text`` cut so that its estimated length is at most ``max_tokens``."""
    wide = narrow = 0
    for index, char in enumerate(text):
        if ord(char) >= WIDE_FROM:
            wide += 1
        else:
            narrow += 1
        if wide + math.ceil(narrow / CHARS_PER_TOKEN) > max_tokens:
            return text[:index]
    return text


def reply_body(
    settings: EngineSettings, history: Sequence[ChatTurn], message: str, length: ReplyLength = "normal"
) -> dict[str, Any]:
    """The streamed chat-completion request for a companion reply of ``length``: system prompt, trimmed history, the
    message (what people and earlier replies wrote with its control-token spellings defused)."""
    messages = [{"role": "system", "content": COMPANION_SYSTEM_PROMPTS[length]}]
    messages += [
        {"role": t.role, "content": defuse_control_tokens(t.text)}
        for t in trim_history_approx(history, settings.history_tokens)
    ]
    message = defuse_control_tokens(truncate_approx(message, settings.history_tokens))
    messages.append({"role": "user", "content": message})
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "stream": True,
        "max_tokens": settings.reply_token_limit(length),
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    if settings.seed is not None:
        body["seed"] = settings.seed
    return body


async def sse_deltas(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The text deltas of a streamed chat completion, from its Server-Sent-Events lines, until ``data: [DONE]``.

    Anything but a chat-completion chunk (not JSON, another shape, a non-text delta) is an EngineError, and so is
    a stream that stops before ``[DONE]`` or a ``finish_reason`` (a page or an error answered instead, a cut reply).
    """
    finished = False
    async for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" and "id:" fields
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            chunk = parse_json(data)
        except ValueError:
            raise EngineError(f"the server sent a stream chunk that is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise EngineError(f"the server sent a stream chunk that is not a JSON object: {data[:80]!r}")
        if chunk.get("error"):
            raise EngineError(f"the server failed while streaming: {one_line(str(chunk['error']))}")
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise EngineError(f"the server sent a stream chunk whose choices are not a list: {data[:80]!r}")
        for choice in choices:
            if text := _delta_text(choice, data):
                yield text
            finished = finished or bool(isinstance(choice, dict) and choice.get("finish_reason"))
    if not finished:
        raise EngineError("the server's stream ended before the reply did (no finish_reason, no [DONE])")


def _delta_text(choice: object, data: str) -> str:
    """The text of one streamed choice ('' when it carries none); EngineError when it is not shaped like one."""
    delta = choice.get("delta") if isinstance(choice, dict) else None
    text = delta.get("content") if isinstance(delta, dict) else None
    if not isinstance(choice, dict) or not isinstance(delta, dict | None) or not isinstance(text, str | None):
        raise EngineError(f"the server sent a stream chunk without text where its text belongs: {data[:80]!r}")
    return text or ""


class GuardedText:
    """The reply guard applied to streamed text: what may be shown so far, never taking back what was shown.

    Gives what :func:`engine.guard.visible_reply` gives for the text so far, but judges each complete line once (a
    server streaming thousands of tiny deltas costs linear time, not quadratic); ``max_chars`` bounds the reply.
    """

    def __init__(self, max_chars: int | None = None) -> None:
        self.max_chars = max_chars
        self.kept: list[str] = []  # complete lines that may be shown
        self.partial = ""  # the line still being written
        self.length = 0  # raw characters so far
        self.shown = ""

    def feed(self, delta: str) -> str:
        """Add raw text from the server; return the newly visible part (maybe ''). EngineError past ``max_chars``."""
        self.length += len(delta)
        if self.max_chars is not None and self.length > self.max_chars:
            raise EngineError(f"the server's reply is longer than {self.max_chars} characters, more than asked for")
        *complete, self.partial = (self.partial + delta).split("\n")
        self.kept += [line for line in complete if not is_forbidden_line(line)]
        return self._advance(final=False)

    def finish(self) -> str:
        """The stream ended: the rest of the cleaned reply that may still be shown."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        # visible_reply(raw) with the complete lines already judged: kept lines, then the partial line when it may
        # show (on its own, visible_reply shows it exactly when it would show it after other lines).
        if final:
            last = [] if is_forbidden_line(self.partial) else [self.partial]
            visible = "\n".join(self.kept + last).strip()
        else:
            head = "\n".join(self.kept) + "\n" if self.kept else ""
            visible = (head + (self.partial if visible_reply(self.partial, final=False) else "")).lstrip()
        if not visible.startswith(self.shown):  # only trailing whitespace can differ at the end
            return ""
        delta, self.shown = visible[len(self.shown):], visible
        return delta


def logsumexp(values: Sequence[float]) -> float:
    """log(sum(exp(v))) computed without overflow; ``values`` must not be empty."""
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def one_line(text: str, limit: int = 200) -> str:
    """``text`` as one short line, for error messages that quote a server."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
