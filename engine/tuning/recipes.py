"""Named training recipes: how many layers carry the adapter, its rank, the data and the time it may take.

The numbers behind each choice (accuracy against training time on a 2-core CPU) are in the README's Analyst
adapters section and bench/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Recipe:
    """Everything about a training run except its data and files."""

    layers: int = 8  # the top N decoder layers carry the adapter (the frozen ones below are computed once)
    rank: int = 16
    alpha: float = 32.0  # LoRA scaling = alpha / rank
    learning_rate: float = 1e-4
    warmup_share: float = 0.15  # of the steps, the rate rising linearly to its peak (then a cosine down to a tenth)
    clip_norm: float = 1.0  # gradient norm clipping
    batch_size: int = 8
    examples: int = 1200  # balanced training examples per epoch (before the injected copies)
    epochs: int = 2
    injected_share: float = 0.5  # this share of the examples also get an injected copy, with the true label
    dev_per_file: int = 150  # held out from each file for early stopping when no --dev is given
    eval_every: int = 50  # steps between dev evaluations (and checkpoints)
    patience: int = 4  # evaluations without a better dev score before stopping early
    max_message_tokens: int = 128  # longer training messages are cut (inference reads up to 512)
    # 0: evaluate and save the matrices as the last step left them; else an average of the steps after the warm-up,
    # each step weighing 1 - decay (engine.tuning.steps.WeightAverage).
    average_decay: float = 0.0
    # Weight of a second loss on each injected copy: the KL divergence from its clean original's label distribution
    # (as the adapter reads it at that step) to the copy's, so the instruction moves no probability; 0: off.
    consistency: float = 0.0
    max_minutes: float = 110.0  # the run (loading and preparing included) stops here, keeping the best adapter
    seed: int = 0

    def with_overrides(self, **overrides: object) -> Recipe:
        """A copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def with_rank(self, rank: int | None) -> Recipe:
        """A copy with another LoRA rank and alpha scaled alike, so the update's scaling (alpha / rank) and with it the
        step size stay as they were: the rank changes capacity only. None: this recipe."""
        return replace(self, rank=rank, alpha=self.alpha * rank / self.rank) if rank else self


RECIPES: dict[str, Recipe] = {
    # Under half an hour on a 2-core CPU, preparation included. The top 12 of 24 layers: with only the top 4, an
    # appended instruction had already tilted the hidden states before the adapter could act, and the adapter
    # obeyed it as the untrained model did; with 12 it learned to ignore it (bench/RESULTS.md).
    "quick": Recipe(
        layers=12, rank=8, alpha=16.0, learning_rate=3e-4, examples=1200, epochs=1, dev_per_file=100,
        eval_every=50, max_message_tokens=96, max_minutes=28.0,
    ),
    # Nearly three times the quick recipe's examples and longer messages, the same adapter; its limit keeps it < 2 h.
    # Twice the quick recipe's rate: against 3e-4, it did better on every held-out set with fewer injected verdicts
    # flipped, for the same dev mean (bench/RESULTS.md, "A higher rate").
    "default": Recipe(
        layers=12, rank=8, alpha=16.0, learning_rate=6e-4, examples=3200, epochs=1, dev_per_file=100,
        eval_every=100, max_message_tokens=128, max_minutes=110.0,
    ),
}
