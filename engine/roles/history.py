"""How much of a conversation the companion sees: the newest turns that fit a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.roles.chat_format import encode_text
from engine.values import ChatTurn

if TYPE_CHECKING:  # only for annotations: the remote backend imports this module without transformers or torch
    from transformers import PreTrainedTokenizerBase

TURN_OVERHEAD_TOKENS = 5  # <|im_start|>role\n … <|im_end|>\n


def trim_history(
    tokenizer: PreTrainedTokenizerBase, history: Sequence[ChatTurn], budget_tokens: int
) -> list[ChatTurn]:
    """The newest turns of ``history`` that fit in ``budget_tokens``, oldest first; never starts on a reply."""
    kept: list[ChatTurn] = []
    used = 0
    for turn in reversed(history):
        cost = len(encode_text(tokenizer, turn.text)) + TURN_OVERHEAD_TOKENS
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    while kept and kept[0].role == "assistant":  # a conversation shown to the model opens with the user
        kept.pop(0)
    return kept


def truncate_text(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> str:
    """``text`` cut to its first ``max_tokens`` tokens (unchanged when it fits)."""
    ids = encode_text(tokenizer, text)
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])
