"""The analyst role: classify one message's sentiment with ONE forward pass and no text generation.

The prompt holds the fixed instructions and that message only, ending with an open assistant turn. We read the
next-token logits of the label words' first tokens, so the output is always a valid label, whatever the message says.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from engine.chat_format import encode_prompt
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
    """Classifies messages in isolation; runs only on the inference worker thread."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.label_ids = label_token_ids(tokenizer)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the isolated analyst prompt for one message (long messages cut to their beginning)."""
        message_ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(message_ids) > MAX_MESSAGE_TOKENS:
            text = self.tokenizer.decode(message_ids[:MAX_MESSAGE_TOKENS])
        return encode_prompt(self.tokenizer, analyst_messages(text))

    @torch.inference_mode()
    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        """Classify several messages in one left-padded forward pass; each sees only its own message."""
        if not texts:
            return []
        prompts = [self.prompt_ids(text) for text in texts]
        width = max(len(p) for p in prompts)
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        # With left padding, positions must count real tokens only, or padded rows see shifted positions.
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        assert input_ids.shape == attention_mask.shape == position_ids.shape == (len(texts), width)
        logits = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=False, logits_to_keep=1,
        ).logits[:, -1, :]  # (batch, vocab)
        return [sentiment_from_label_logits(self._label_scores(row)) for row in logits]

    def _label_scores(self, next_token_logits: torch.Tensor) -> torch.Tensor:
        """(vocab,) logits → (3,) label scores, summing the probability mass of each label's spellings."""
        scores = [torch.logsumexp(next_token_logits[self.label_ids[label]].float(), dim=0) for label in LABELS]
        return torch.stack(scores)
