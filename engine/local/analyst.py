"""The analyst role: classify one message's sentiment (and, when asked for, the care question) in ONE forward pass.

The prompt holds the fixed instructions, worked examples and that message only, ending with an open answer. We read
the next-token logits of the label words' first tokens, so the output is always a valid label, whatever the message
says. No text is generated.

Two questions share the pass. After the message come two tails: the sentiment answer's opening, and a second user
turn asking the care question. A custom attention mask hides the first tail from the second, and the second tail's
positions continue straight from the message, so each question sees exactly ``prefix + message + its own tail``:
the same numbers as two separate prompts, for the price of a few more tokens (about a third more time with short
messages, which is why the care question is off unless ``care_question`` is set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean

import torch
from transformers import PreTrainedTokenizerBase

from engine.kernels.paths import FastPaths
from engine.local.prompt_rows import BATCH_TOKENS, length_groups, message_ids, padded_rows
from engine.roles.care_phrases import with_phrase_floor
from engine.roles.chat_format import SLOT, split_prompt
from engine.roles.language import Script, script_of
from engine.roles.prompts import (
    ANALYST_ANSWER_PREFIX,
    CARE_SPELLINGS,
    CONTENT_FREE,
    LABEL_SPELLINGS,
    analyst_messages,
    care_messages,
)
from engine.roles.verdict import care_from_logprobs, sentiment_from_logprobs
from engine.values import Sentiment

# (positive, negative, yes, no) log-scores for one message: log-probabilities up to one shared constant per
# question, so only the differences (log-odds) mean anything, and only they are used.
AnswerLogprobs = tuple[float, float, float, float]


def answer_token_ids(
    tokenizer: PreTrainedTokenizerBase, spellings: Mapping[str, Sequence[str]]
) -> dict[str, list[int]]:
    """First-token ids voting for each answer; a token claimed by two answers is dropped from both."""
    candidates = {
        answer: {tokenizer.encode(word, add_special_tokens=False)[0] for word in words}
        for answer, words in spellings.items()
    }
    owners: dict[int, int] = {}
    for ids in candidates.values():
        for token_id in ids:
            owners[token_id] = owners.get(token_id, 0) + 1
    distinct = {answer: sorted(i for i in ids if owners[i] == 1) for answer, ids in candidates.items()}
    missing = [answer for answer, ids in distinct.items() if not ids]
    if missing:
        raise ValueError(f"tokenizer gives no distinct first token for answer(s): {', '.join(missing)}")
    return distinct


def label_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
    """First-token ids of the sentiment labels (positive, negative)."""
    return answer_token_ids(tokenizer, LABEL_SPELLINGS)


class AnswerHead:
    """The output head's rows for the answer tokens only: the few logits a verdict needs, not the vocabulary.

    The full head is a (vocabulary x hidden) matrix, 151,936 rows for Qwen: reading it cost about 10 ms per
    classification pass in bf16, to compute logits nobody looks at. Log-odds between answers do not need the softmax
    over the whole vocabulary (its normaliser cancels), so the rows of the answer tokens are enough.
    """

    def __init__(self, paths: FastPaths, token_ids: Sequence[int]) -> None:
        self.token_ids = sorted(set(token_ids))
        self.column = {token_id: i for i, token_id in enumerate(self.token_ids)}
        self.rows, self.bias = paths.head_rows(self.token_ids)  # (answer tokens, hidden), (answer tokens,) or None

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the answer tokens, in ``token_ids`` order, for hidden states (..., hidden)."""
        logits = hidden.float() @ self.rows.T
        return logits if self.bias is None else logits + self.bias

    def mass(self, logits: torch.Tensor, token_ids: list[int]) -> float:
        """Log of the (unnormalised) probability mass of ``token_ids`` in one row of :meth:`__call__`'s output."""
        return torch.logsumexp(logits[[self.column[i] for i in token_ids]], dim=0).item()


class Analyst:
    """Classifies messages in isolation; runs only on the inference worker thread.

    The prefix (system prompt, examples, the start of the user turn) is the same for every message, so its keys and
    values are computed once at start-up and reused for every batch by the model's prompt pass (FastPaths.prompt_pass).
    With ``calibrate`` the model's lean on content-free input is measured per script at start-up and removed from
    every verdict.
    """

    def __init__(
        self, paths: FastPaths, tokenizer: PreTrainedTokenizerBase,
        *, calibrate: bool = True, neutral_margin: float = 0.0, care_question: bool = False,
    ) -> None:
        self.paths = paths
        self.tokenizer = tokenizer
        self.neutral_margin = neutral_margin
        self.care_question = care_question
        self.label_ids = label_token_ids(tokenizer)
        self.care_ids = answer_token_ids(tokenizer, CARE_SPELLINGS)
        prefix_text, sentiment_tail = split_prompt(tokenizer, analyst_messages(SLOT))
        care_prefix, care_tail = split_prompt(tokenizer, care_messages(SLOT))
        assert care_prefix == prefix_text, "both questions must share the cached prefix"
        self.sentiment_tail_ids = self._encode(sentiment_tail + ANALYST_ANSWER_PREFIX)
        self.care_question_ids = self._encode(care_tail)  # the care question's own tail, asked or not
        # Without the care question there is no care tail: the pass is just the message and the sentiment tail.
        self.care_tail_ids = self.care_question_ids if care_question else []
        self.prompt_pass = paths.prompt_pass(self._encode(prefix_text))
        self.prefix = self.prompt_pass.prefix
        answer_ids = [i for ids in (*self.label_ids.values(), *self.care_ids.values()) for i in ids]
        self.answer_head = AnswerHead(paths, answer_ids)
        self.bias: dict[Script, float] = {"en": 0.0, "zh": 0.0}
        if calibrate:
            self.bias = {script: self._content_free_bias(texts) for script, texts in CONTENT_FREE.items()}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def message_ids(self, text: str) -> list[int]:
        """The message's own tokens as plain text (cut to its beginning): it cannot forge the prompt's turns."""
        return message_ids(self.tokenizer, text)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the whole isolated sentiment prompt for one message, ending where the label comes."""
        return self.prefix.prefix_ids + self.message_ids(text) + self.sentiment_tail_ids

    def care_prompt_ids(self, text: str) -> list[int]:
        """Token ids of the whole isolated care prompt for one message, ending where yes/no comes."""
        return self.prefix.prefix_ids + self.message_ids(text) + self.care_question_ids

    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        """Classify several messages over the cached prefix, each seeing only its own message."""
        return [self.verdict(text, answers) for text, answers in zip(texts, self.answers(texts), strict=True)]

    def answers(self, texts: Sequence[str]) -> list[AnswerLogprobs]:
        """:meth:`answer_logprobs` of any number of messages, in their order. Messages are grouped by length so
        short ones are not padded to a long one's width: each group is one forward pass of at most
        ``BATCH_TOKENS`` (padded) tokens."""
        lengths = [len(self.message_ids(text)) for text in texts]
        tails = len(self.sentiment_tail_ids) + len(self.care_tail_ids)
        answers: dict[int, AnswerLogprobs] = {}
        for group in length_groups(lengths, tails, BATCH_TOKENS):
            for index, result in zip(group, self.answer_logprobs([texts[i] for i in group]), strict=True):
                answers[index] = result
        return [answers[i] for i in range(len(texts))]

    def verdict(self, text: str, answers: AnswerLogprobs) -> Sentiment:
        """The Sentiment for one message's answer log-probabilities, calibrated for its script."""
        positive, negative, yes, no = answers
        model_care = care_from_logprobs(yes, no) if self.care_question else 0.0
        return sentiment_from_logprobs(
            positive, negative, bias=self.bias[script_of(text)], neutral_margin=self.neutral_margin,
            care=with_phrase_floor(text, model_care),
        )

    @torch.inference_mode()
    def answer_logprobs(self, texts: Sequence[str]) -> list[AnswerLogprobs]:
        """(positive, negative, yes, no) log-scores per message, both questions in one forward pass."""
        if not texts:
            return []
        hidden = self.hidden_at_answers(texts)  # (batch, 2, hidden)
        scores = self.answer_head(hidden)  # (batch, 2, answer tokens)
        sentiment, care = scores[:, 0], scores[:, 1]
        return [
            (
                self.answer_head.mass(sentiment[i], self.label_ids["positive"]),
                self.answer_head.mass(sentiment[i], self.label_ids["negative"]),
                self.answer_head.mass(care[i], self.care_ids["yes"]),
                self.answer_head.mass(care[i], self.care_ids["no"]),
            )
            for i in range(len(texts))
        ]

    @torch.inference_mode()
    def hidden_at_answers(self, texts: Sequence[str]) -> torch.Tensor:
        """Final hidden states (batch, 2, hidden) where the sentiment and the care answers come, for one padded
        batch of messages over the cached prefix (without the care question, both are the sentiment answer's)."""
        rows = [self.message_ids(text) for text in texts]
        pad_id = self.tokenizer.pad_token_id or 0
        batch = padded_rows(rows, len(self.prefix), self.sentiment_tail_ids, self.care_tail_ids, pad_id)
        return self.prompt_pass.hidden_at(batch.input_ids, batch.positions, batch.mask, batch.answer_columns)

    @torch.inference_mode()
    def classify_uncached(self, text: str) -> Sentiment:
        """The same classification as two plain prompts, no prefix cache and no shared pass (a reference)."""
        def last_logprobs(ids: list[int]) -> torch.Tensor:
            return torch.log_softmax(self.paths.prompt_logits(ids).float(), dim=-1)

        sentiment_lp = last_logprobs(self.prompt_ids(text))
        care_lp = last_logprobs(self.care_prompt_ids(text)) if self.care_question else sentiment_lp
        answers = (
            _mass(sentiment_lp, self.label_ids["positive"]), _mass(sentiment_lp, self.label_ids["negative"]),
            _mass(care_lp, self.care_ids["yes"]), _mass(care_lp, self.care_ids["no"]),
        )
        return self.verdict(text, answers)

    def _content_free_bias(self, texts: Sequence[str]) -> float:
        """Mean log-odds (positive over negative) the model gives messages with no content."""
        return fmean(positive - negative for positive, negative, _, _ in self.answer_logprobs(texts))


def _mass(logprobs: torch.Tensor, token_ids: list[int]) -> float:
    """Log of the probability mass of ``token_ids`` (the spellings of one answer)."""
    return torch.logsumexp(logprobs[token_ids], dim=0).item()
