"""The rows of a classification pass: messages over a cached prefix, grouped by length, padded, masked.

Shared by the analyst (engine/local/analyst.py) and the adapted analyst (engine/local/adapted_analyst.py): each row
is one message followed by the answer's tail (and, for the care question, a second tail that does not see the
first), left-padded to the widest row of its group; the mask lets every row see the prefix and its own tokens only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from engine.roles.chat_format import encode_text

MAX_MESSAGE_TOKENS = 512  # longer messages are classified on their beginning
BATCH_TOKENS = 2048  # padded tokens per classification forward pass (a bigger batch is split by length)

# Token kinds in a classification row.
_PAD, _MESSAGE, _SENTIMENT_TAIL, _CARE_TAIL = 0, 1, 2, 3


def message_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The message's own tokens as plain text (cut to its beginning): it cannot forge the prompt's turns."""
    return encode_text(tokenizer, text)[:MAX_MESSAGE_TOKENS]


def length_groups(lengths: Sequence[int], tails: int, budget: int) -> list[list[int]]:
    """Message indices, shortest first, in groups whose padded size (messages plus ``tails`` tokens each) stays
    within ``budget`` tokens."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        width = lengths[index] + tails  # the group's widest so far: indices come shortest first
        if groups and width * (len(groups[-1]) + 1) <= budget:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


@dataclass(frozen=True)
class PaddedRows:
    """One padded batch for a prompt pass's ``hidden_at``."""

    input_ids: torch.Tensor  # (batch, width)
    positions: torch.Tensor  # (batch, width)
    mask: torch.Tensor  # (batch, 1, width, prefix + width) bool: which keys each query sees
    answer_columns: list[int]  # where the sentiment answer and the care answer come (the same without care)


def padded_rows(
    rows: Sequence[list[int]], prefix_len: int, sentiment_tail: list[int], care_tail: list[int], pad_id: int
) -> PaddedRows:
    """Messages ``rows`` (token ids) each followed by the tails, over a prefix of ``prefix_len`` tokens. The care
    tail continues from the message, as if the sentiment tail were not there, and does not see it."""
    batch = len(rows)
    width = max(len(r) for r in rows) + len(sentiment_tail) + len(care_tail)
    input_ids, positions, kinds = [], [], []
    for message in rows:
        padding = width - len(message) - len(sentiment_tail) - len(care_tail)
        input_ids.append([pad_id] * padding + message + sentiment_tail + care_tail)
        through_sentiment = len(message) + len(sentiment_tail)
        positions.append(
            [prefix_len] * padding
            + [prefix_len + i for i in range(through_sentiment)]
            + [prefix_len + len(message) + i for i in range(len(care_tail))]
        )
        kinds.append(
            [_PAD] * padding + [_MESSAGE] * len(message)
            + [_SENTIMENT_TAIL] * len(sentiment_tail) + [_CARE_TAIL] * len(care_tail)
        )
    kind = torch.tensor(kinds)  # (batch, width)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    visible = causal & (kind[:, None, :] != _PAD)  # (batch, query, key)
    visible &= ~((kind[:, :, None] == _CARE_TAIL) & (kind[:, None, :] == _SENTIMENT_TAIL))
    # Every query sees the whole prefix, so no row of the mask is empty (padding queries included).
    mask = torch.cat([torch.ones(batch, width, prefix_len, dtype=torch.bool), visible], dim=2)[:, None]
    assert mask.shape == (batch, 1, width, prefix_len + width)
    answer_columns = [width - len(care_tail) - 1, width - 1]
    return PaddedRows(torch.tensor(input_ids), torch.tensor(positions), mask, answer_columns)
