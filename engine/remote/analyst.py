"""The analyst over HTTP: the local analyst's two questions, read from a server's ``top_logprobs``.

The local analyst reads next-token logits where its prompts end: after the answer opening ``Sentiment:`` for the
sentiment, after the open assistant turn for the care question (yes/no). A portable chat-completions request cannot
end a prompt inside the assistant's turn, so the sentiment request lets the model write the opening itself (greedy,
a few tokens; the worked examples all answer ``Sentiment: <label>``) and reads the ``top_logprobs`` at the first
token after it (or at the first token, when the model answers the label straight away). The care request reads the
first token. Answer words are matched on token *text*, since we cannot tokenize remotely:

* a returned token counts for an answer when its text, stripped of surrounding whitespace, is non-empty and a
  prefix of one of that answer's spellings (case-sensitive): "Positive", "pos" and " positive" count for positive;
  the whole word is a spelling's first token when the word is one token, a shorter piece when it is split;
* a piece that could start spellings of two answers goes to the one whose spelling is not itself among the returned
  tokens (a word returned whole is one token, so it does not start with a piece); when that does not settle it, the
  piece counts for neither, as the local analyst drops a first token shared by two answers;
* an answer's log-probability is the log-sum-exp of its tokens' logprobs; an answer with no token among the
  returned ones gets a floor just below the smallest returned logprob (its true value is lower still). When no
  answer is seen at all there is no evidence: :attr:`AnswerScores.seen` is empty so callers can count it, the
  sentiment score is 0 (neutral under the default margin; calibration is not applied to nothing) and the care
  probability is 0, not the 0.5 two equal floors would give.

A small model does not always write the opening: SmolLM2-135M chats instead ("I'm glad you're happy …") on about a
fifth of longer Chinese messages, so no label is among its top tokens there. Servers that continue a final
assistant message (vLLM with ``continue_final_message``, the llama.cpp server, Ollama) could be sent the opening
itself; llama-cpp-python's server cannot, so this backend does not rely on it.

Everything read from an answer is checked first (:func:`top_logprobs_at`): a token's text must be a string and its
logprob a number no greater than 0 and not NaN (``-Infinity``, which llama-cpp-python's server writes for a token
of probability 0, counts as :data:`MIN_LOGPROB`, as vLLM writes it). Anything else is a :class:`MalformedAnswer`:
a NaN would otherwise pass through the arithmetic and come out as "positive, 1.0".

The verdict itself comes from :mod:`engine.roles.verdict`, shared with the local analyst, with the same per-script
calibration (the lean on content-free input, measured at start-up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from engine.remote.errors import MalformedAnswer
from engine.remote.wire import defuse_control_tokens, logsumexp, truncate_approx
from engine.roles.care_phrases import with_phrase_floor
from engine.roles.language import script_of
from engine.roles.prompts import ANALYST_ANSWER_PREFIX, CARE_SPELLINGS, LABEL_SPELLINGS, analyst_messages, care_messages
from engine.roles.verdict import care_from_logprobs, sentiment_from_logprobs
from engine.values import Sentiment

MAX_MESSAGE_TOKENS = 512  # as the local analyst: longer messages are classified on their beginning (estimated here)
TOP_LOGPROBS = 20  # the most OpenAI (and vLLM by default) allow
FLOOR_MARGIN = 1.0  # nats below the smallest returned logprob, for an answer that is not among them
ANSWER_MAX_TOKENS = 8  # room for the model to write the answer opening, then the label (it stops at end of turn)
MIN_LOGPROB = -9999.0  # what -Infinity counts as (vLLM's own floor)
LOGPROB_SLACK = 1e-3  # a log-probability above 0 by more than rounding is not one

Spellings = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class AnswerScores:
    """Per-answer log-probabilities read from one token's ``top_logprobs``, and which answers were really seen."""

    logprobs: dict[str, float]  # floored where the answer had no token among the returned ones
    seen: tuple[str, ...]  # answers with at least one returned token; empty = a guess


def sentiment_body(model: str, text: str) -> dict[str, Any]:
    """The request for the sentiment question: a few greedy tokens (opening + label), each with top logprobs."""
    return _body(model, analyst_messages(_cut(text)), ANSWER_MAX_TOKENS)


def care_body(model: str, text: str) -> dict[str, Any]:
    """The request for the care question: one greedy token with its top logprobs."""
    return _body(model, care_messages(_cut(text)), 1)


def answer_position(content: Sequence[Mapping[str, Any]], opening: str = ANALYST_ANSWER_PREFIX) -> int:
    """Index of the generated token that holds the answer: the one after ``opening``, else the first."""
    written = ""
    for index, entry in enumerate(content):
        if written.strip() == opening.strip():
            return index
        written += str(entry.get("token", ""))
        if not opening.strip().startswith(written.strip()):
            return 0  # the model wrote something else: read the first token, as a plain prompt would
    return 0


def top_logprobs_at(response: Mapping[str, Any], *, after_opening: bool) -> list[dict[str, Any]] | None:
    """The checked ``top_logprobs`` where the answer is, each ``{"token": str, "logprob": float}``; None when the
    server sent no logprobs; MalformedAnswer when what it sent is not shaped like a chat completion's."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedAnswer("no choices list")
    logprobs = choices[0].get("logprobs")
    if logprobs is None:
        return None
    content = logprobs.get("content") if isinstance(logprobs, dict) else logprobs
    if not content:
        return None
    if not isinstance(content, list) or not all(isinstance(e, dict) and _has_text(e) for e in content):
        raise MalformedAnswer("logprobs.content is not a list of tokens with text")
    top = content[answer_position(content) if after_opening else 0].get("top_logprobs")
    if not top:
        return None
    if not isinstance(top, list):
        raise MalformedAnswer("top_logprobs is not a list")
    return [_checked(entry) for entry in top]


def _checked(entry: object) -> dict[str, Any]:
    """One top-logprobs entry as ``{"token": str, "logprob": float}``, or MalformedAnswer."""
    if not isinstance(entry, dict) or not _has_text(entry):
        raise MalformedAnswer(f"a top_logprobs entry without token text: {str(entry)[:80]!r}")
    logprob = entry.get("logprob")
    if not isinstance(logprob, int | float) or isinstance(logprob, bool):
        raise MalformedAnswer(f"logprob {logprob!r} is not a number")
    if (isinstance(logprob, float) and math.isnan(logprob)) or logprob > LOGPROB_SLACK:
        raise MalformedAnswer(f"logprob {logprob!r} is not a log-probability")
    return {"token": entry["token"], "logprob": float(max(logprob, MIN_LOGPROB))}  # a huge int: no overflow


def _has_text(entry: Mapping[str, Any]) -> bool:
    return isinstance(entry.get("token"), str)


def token_answer(token: str, spellings: Spellings, whole_words: frozenset[str] = frozenset()) -> str | None:
    """The answer a returned token votes for, or None (no answer, or two answers share it).

    ``whole_words`` are the spellings returned whole as tokens next to this one; they do not start with a piece.
    """
    text = token.strip()
    if not text:
        return None
    matches = [
        answer for answer, words in spellings.items()
        if any(w == text or (w.startswith(text) and w not in whole_words) for w in _stripped(words))
    ]
    return matches[0] if len(matches) == 1 else None


def answer_scores(top_logprobs: Sequence[Mapping[str, Any]], spellings: Spellings) -> AnswerScores:
    """Per-answer log-probabilities from one token's ``top_logprobs`` (rules: module docstring)."""
    votes: dict[str, list[float]] = {answer: [] for answer in spellings}
    tokens = [str(entry.get("token", "")).strip() for entry in top_logprobs]
    every_spelling = {w for words in spellings.values() for w in _stripped(words)}
    whole_words = frozenset(tokens) & every_spelling
    for entry, token in zip(top_logprobs, tokens, strict=True):
        answer = token_answer(token, spellings, whole_words)
        if answer is not None:
            votes[answer].append(float(entry["logprob"]))
    floor = min(float(entry["logprob"]) for entry in top_logprobs) - FLOOR_MARGIN
    return AnswerScores(
        logprobs={answer: logsumexp(lps) if lps else floor for answer, lps in votes.items()},
        seen=tuple(answer for answer, lps in votes.items() if lps),
    )


def label_scores(top_logprobs: Sequence[Mapping[str, Any]]) -> AnswerScores:
    """The sentiment labels' scores (positive, negative)."""
    return answer_scores(top_logprobs, LABEL_SPELLINGS)


def care_scores(top_logprobs: Sequence[Mapping[str, Any]]) -> AnswerScores:
    """The care answers' scores (yes, no)."""
    return answer_scores(top_logprobs, CARE_SPELLINGS)


def lean(labels: AnswerScores) -> float:
    """Log-odds of positive over negative: what calibration averages over content-free inputs."""
    return labels.logprobs["positive"] - labels.logprobs["negative"]


def calibration_bias(leans: Sequence[float]) -> float:
    """The bias removed from every verdict of one script: the mean lean on its content-free inputs."""
    return fmean(leans)


def remote_sentiment(
    text: str, labels: AnswerScores, care: AnswerScores, *, bias: Mapping[str, float], neutral_margin: float
) -> Sentiment:
    """The verdict, through the shared function (the one place this backend calls it)."""
    care_probability = care_from_logprobs(care.logprobs["yes"], care.logprobs["no"]) if care.seen else 0.0
    lean_removed = bias.get(script_of(text), 0.0) if labels.seen else 0.0  # no evidence: score 0, not the bias
    return sentiment_from_logprobs(
        labels.logprobs["positive"], labels.logprobs["negative"], bias=lean_removed,
        neutral_margin=neutral_margin, care=with_phrase_floor(text, care_probability),
    )


def _body(model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {
        "model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
        "logprobs": True, "top_logprobs": TOP_LOGPROBS,
    }


def _cut(text: str) -> str:
    return defuse_control_tokens(truncate_approx(text, MAX_MESSAGE_TOKENS))


def _stripped(words: Sequence[str]) -> set[str]:
    return {w.strip() for w in words if w.strip()}
