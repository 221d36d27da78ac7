"""Plain value types passed between the engine and its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Label = Literal["positive", "neutral", "negative"]
LABELS: tuple[Label, ...] = ("positive", "neutral", "negative")
Role = Literal["user", "assistant"]
# How long the companion's reply may be: "normal" (a few sentences) or "short" (one or two, fewer tokens).
ReplyLength = Literal["short", "normal"]
REPLY_LENGTHS: tuple[ReplyLength, ...] = ("short", "normal")


@dataclass(frozen=True)
class Sentiment:
    """The analyst's verdict on one message: a label, a score in [-1, 1] and the per-label probabilities.

    ``care`` is the probability that the message signals self-harm or a crisis (0 when not asked).
    """

    label: Label
    score: float
    probs: dict[str, float] = field(default_factory=dict)
    care: float = 0.0


@dataclass(frozen=True)
class ChatTurn:
    """One earlier turn of a conversation, as the companion sees it."""

    role: Role
    text: str
