"""The adapted analyst's prompt as token ids: the prefix every message shares, the message, the answer's opening,
and the token that stands for each label. Training and inference build it here, so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.roles.chat_format import SLOT, encode_text, split_prompt
from engine.roles.prompts import ANALYST_ANSWER_PREFIX, adapted_analyst_messages

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_MESSAGE_TOKENS = 512  # longer messages are classified on their beginning (as the base analyst does)


@dataclass(frozen=True)
class AdaptedPromptLayout:
    """Token ids of the adapted analyst's prompt: ``prefix_ids + message + tail_ids``; the label is read at the
    last position, from the logits of ``label_ids``."""

    prefix_ids: list[int]
    tail_ids: list[int]
    label_ids: dict[str, int]  # label -> the first token of its word

    def message_ids(
        self, tokenizer: PreTrainedTokenizerBase, text: str, limit: int = MAX_MESSAGE_TOKENS, appended: str = ""
    ) -> list[int]:
        """The message's own tokens as plain text (it cannot forge the prompt's turns), cut to ``limit``.

        ``appended`` (training's injected instructions) survives the cut whole: the text before it is cut instead,
        or a long review's injected copy would lose the very instruction it exists to carry."""
        whole = encode_text(tokenizer, text + appended)
        if len(whole) <= limit or not appended:
            return whole[:limit]
        tail = encode_text(tokenizer, appended)[:limit]
        return encode_text(tokenizer, text)[: limit - len(tail)] + tail


def adapted_prompt_layout(tokenizer: PreTrainedTokenizerBase, label_words: Mapping[str, str]) -> AdaptedPromptLayout:
    """The layout for ``tokenizer``; ValueError when two labels' words start with the same token."""
    before, after = split_prompt(tokenizer, adapted_analyst_messages(SLOT))
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    label_ids = {label: encode(word)[0] for label, word in label_words.items()}
    if len(set(label_ids.values())) != len(label_ids):
        raise ValueError("the tokenizer gives two labels' words the same first token")
    return AdaptedPromptLayout(encode(before), encode(after + ANALYST_ANSWER_PREFIX), label_ids)
