"""From label log-probabilities to a Sentiment: calibration, the neutral margin and the care signal.

Shared by every backend, so a local model and a remote server turn the same numbers into the same verdict.
The model is asked a two-way question (positive or negative). ``score`` = P(positive) − P(negative) after
calibration, in [-1, 1]; a message whose |score| is under ``neutral_margin`` is labelled neutral. A trained analyst
adapter reads its own labels (three-way) instead: :func:`sentiment_from_label_logits`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.values import Label, Sentiment


def sigmoid(x: float) -> float:
    """The logistic function, safe for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def sentiment_from_logprobs(
    positive: float, negative: float, *, bias: float = 0.0, neutral_margin: float = 0.0, care: float = 0.0
) -> Sentiment:
    """Verdict from the two label log-probabilities.

    ``bias`` is the log-odds the model gives content-free input (its prior lean, removed by calibration);
    ``care`` is the probability that the message signals a crisis, carried along unchanged.
    """
    p_positive = sigmoid(positive - negative - bias)
    score = max(-1.0, min(1.0, 2.0 * p_positive - 1.0))
    label: Label = "positive" if score > 0 else "negative"
    if abs(score) < neutral_margin:
        label = "neutral"
    return Sentiment(
        label=label, score=score, probs={"positive": p_positive, "negative": 1.0 - p_positive}, care=care
    )


def care_from_logprobs(yes: float, no: float) -> float:
    """P(crisis) from the care question's yes/no log-probabilities, renormalised over the two."""
    return sigmoid(yes - no)


def sentiment_from_label_logits(labels: Sequence[str], logits: Sequence[float], *, care: float = 0.0) -> Sentiment:
    """Verdict of a trained (adapted) analyst from its label words' logits, in ``labels`` order: softmax over them,
    the likeliest label, ``score`` = P(positive) − P(negative). No calibration and no neutral margin here: an adapter
    learned where neutral lies (its own label offsets are already in ``logits``)."""
    top = max(logits)
    weights = [math.exp(logit - top) for logit in logits]
    total = sum(weights)
    probs = {label: weight / total for label, weight in zip(labels, weights, strict=True)}
    label = max(probs, key=probs.__getitem__)
    score = max(-1.0, min(1.0, probs.get("positive", 0.0) - probs.get("negative", 0.0)))
    return Sentiment(label=label, score=score, probs=probs, care=care)  # type: ignore[arg-type]
