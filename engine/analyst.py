"""The analyst role: classify one message's sentiment with ONE forward pass and no text generation.

The prompt holds the fixed instructions and that message only, ending with an open assistant turn. We read the
next-token logits of the label words' first tokens, so the output is always a valid label, whatever the message says.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from engine.chat_format import SLOT, split_prompt
from engine.prefix import PrefixCache
from engine.prompts import LABEL_SPELLINGS, analyst_messages
from engine.values import LABELS, Label, Sentiment

MAX_MESSAGE_TOKENS = 512  # longer messages are classified on their beginning


def label_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[Label, list[int]]:
    """First-token ids voting for each label; a token claimed by two labels is dropped from both."""
    candidates: dict[Label, set[int]] = {}
    for label, spellings in LABEL_SPELLINGS.items():
        candidates[label] = {tokenizer.encode(word, add_special_tokens=False)[0] for word in spellings}
    owners: dict[int, int] = {}
    for ids in candidates.values():
        for token_id in ids:
            owners[token_id] = owners.get(token_id, 0) + 1
    distinct = {label: sorted(i for i in ids if owners[i] == 1) for label, ids in candidates.items()}
    missing = [label for label, ids in distinct.items() if not ids]
    if missing:
        raise ValueError(f"tokenizer gives no distinct first token for label(s): {', '.join(missing)}")
    return distinct


def sentiment_from_label_logits(label_logits: torch.Tensor) -> Sentiment:
    """Turn the three label scores (in LABELS order) into a Sentiment; score = P(positive) - P(negative)."""
    probs = torch.softmax(label_logits.float(), dim=-1).tolist()
    by_label = dict(zip(LABELS, probs, strict=True))
    label = LABELS[max(range(len(LABELS)), key=probs.__getitem__)]
    score = max(-1.0, min(1.0, by_label["positive"] - by_label["negative"]))
    return Sentiment(label=label, score=score, probs=by_label)


class Analyst:
    """Classifies messages in isolation; runs only on the inference worker thread.

    The prompt is ``prefix + message + tail``: the prefix (system prompt and the start of the user turn) is the same
    for every message, so its keys and values are computed once at start-up and reused for every batch.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.label_ids = label_token_ids(tokenizer)
        prefix_text, tail_text = split_prompt(tokenizer, analyst_messages(SLOT))
        self.tail_ids = tokenizer.encode(tail_text, add_special_tokens=False)
        self.prefix = PrefixCache(model, tokenizer.encode(prefix_text, add_special_tokens=False))

    def message_ids(self, text: str) -> list[int]:
        """The part of the prompt that depends on the message: its tokens (cut to the beginning) and the tail."""
        return self.tokenizer.encode(text, add_special_tokens=False)[:MAX_MESSAGE_TOKENS] + self.tail_ids

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the whole isolated analyst prompt for one message."""
        return self.prefix.prefix_ids + self.message_ids(text)

    @torch.inference_mode()
    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        """Classify several messages in one forward pass over the cached prefix; each sees only its own message."""
        if not texts:
            return []
        suffixes = [self.message_ids(text) for text in texts]
        batch, width, prefix_len = len(texts), max(len(s) for s in suffixes), len(self.prefix)
        pad_id = self.tokenizer.pad_token_id or 0
        # Left padding sits between the shared prefix and each message; the mask hides it.
        input_ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in suffixes])  # (batch, width)
        suffix_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes])  # (batch, width)
        attention_mask = torch.cat([torch.ones(batch, prefix_len, dtype=torch.long), suffix_mask], dim=1)
        # Positions count real tokens only, continuing after the prefix.
        position_ids = prefix_len + (suffix_mask.cumsum(-1) - 1).clamp(min=0)  # (batch, width)
        assert attention_mask.shape == (batch, prefix_len + width) and position_ids.shape == (batch, width)
        logits = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=self.prefix.for_batch(batch), use_cache=True, logits_to_keep=1,
        ).logits[:, -1, :]  # (batch, vocab)
        return [sentiment_from_label_logits(self._label_scores(row)) for row in logits]

    @torch.inference_mode()
    def classify_uncached(self, text: str) -> Sentiment:
        """The same classification without the prefix cache (a reference for tests and benchmarks)."""
        logits = self.model(input_ids=torch.tensor([self.prompt_ids(text)]), logits_to_keep=1).logits[0, -1]
        return sentiment_from_label_logits(self._label_scores(logits))

    def _label_scores(self, next_token_logits: torch.Tensor) -> torch.Tensor:
        """(vocab,) logits → (3,) label scores, summing the probability mass of each label's spellings."""
        scores = [torch.logsumexp(next_token_logits[self.label_ids[label]].float(), dim=0) for label in LABELS]
        return torch.stack(scores)
