"""What moodbot sends to and reads from an OpenAI-compatible server for replies: the request, the SSE stream, the guard.

Pure functions, no I/O: :mod:`engine.openai_backend` does the HTTP; :mod:`engine.openai_analyst` holds the
classification side. Without a tokenizer, lengths are estimated (:func:`approx_tokens`).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from engine.errors import EngineError
from engine.roles.guard import visible_reply
from engine.roles.history import TURN_OVERHEAD_TOKENS
from engine.roles.prompts import COMPANION_SYSTEM_PROMPT
from engine.settings import EngineSettings
from engine.values import ChatTurn

CHARS_PER_TOKEN = 4  # rough size of a token of Latin-script text; CJK and other wide characters count 1 each
WIDE_FROM = 0x2E80  # first CJK code point


# -- the companion --------------------------------------------------------------------------------------------


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


def reply_body(settings: EngineSettings, history: Sequence[ChatTurn], message: str) -> dict[str, Any]:
    """The streamed chat-completion request for a companion reply: system prompt, trimmed history, the message."""
    messages = [{"role": "system", "content": COMPANION_SYSTEM_PROMPT}]
    messages += [{"role": t.role, "content": t.text} for t in trim_history_approx(history, settings.history_tokens)]
    messages.append({"role": "user", "content": truncate_approx(message, settings.history_tokens)})
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "stream": True,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    if settings.seed is not None:
        body["seed"] = settings.seed
    return body


async def sse_deltas(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The text deltas of a streamed chat completion, from its Server-Sent-Events lines, until ``data: [DONE]``."""
    async for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" and "id:" fields
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise EngineError(f"the server sent a stream chunk that is not JSON: {data[:80]!r}") from None
        if isinstance(chunk, dict) and chunk.get("error"):
            raise EngineError(f"the server failed while streaming: {one_line(str(chunk['error']))}")
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text


class GuardedText:
    """The reply guard applied to streamed text: what may be shown so far, never taking back what was shown."""

    def __init__(self) -> None:
        self.raw = ""
        self.shown = ""

    def feed(self, delta: str) -> str:
        """Add raw text from the server; return the newly visible part (maybe '')."""
        self.raw += delta
        return self._advance(final=False)

    def finish(self) -> str:
        """The stream ended: the rest of the cleaned reply that may still be shown."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        visible = visible_reply(self.raw, final=final)
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
