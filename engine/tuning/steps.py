"""What one training step and one dev pass compute: the peft-wrapped upper layers, the loss on the label words'
logits, the rate schedule and the batches of an epoch. ``engine.tuning.trainer`` drives them (data, prepared
features, checkpoints, early stopping); ``bench.ablation`` reuses them on a finished run's features.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from engine.adapters.file import PROJECTIONS, AnalystAdapter, LoraPair
from engine.adapters.layout import AdaptedPromptLayout
from engine.roles.prompts import ADAPTED_ANALYST_PROMPT_VERSION, ADAPTED_LABEL_WORDS
from engine.tuning.network import Stage, TrainingModel, pad_right
from engine.tuning.recipes import Recipe

LABELS = ("positive", "neutral", "negative")


@dataclass
class Encoded:
    """Examples as the loop uses them: lower-layer features, gold label index, allowed label mask."""

    features: list[torch.Tensor]
    gold: torch.Tensor  # (n,) index into LABELS
    allowed: torch.Tensor  # (n, 3) bool
    sources: list[str]
    originals: torch.Tensor  # (n,) for an injected copy the index of a clean example of the same text, else -1


def epoch_batches(count: int, batch_size: int, lengths: Sequence[int], seed: int) -> list[list[int]]:
    """One epoch's batches: shuffled, then sorted by length within windows of 16 batches (less padding)."""
    rng = random.Random(seed)
    order = list(range(count))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, count, window):
        chunk = sorted(order[start : start + window], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class AdapterTrainer:
    """The peft-wrapped upper layers of one base model and the computations a step needs."""

    def __init__(self, training: TrainingModel, layout: AdaptedPromptLayout, recipe: Recipe) -> None:
        from peft import LoraConfig, get_peft_model

        self.training, self.layout, self.recipe = training, layout, recipe
        count = len(training.layers)
        self.first = max(0, count - recipe.layers)
        torch.manual_seed(recipe.seed)
        config = LoraConfig(
            r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=0.0, target_modules=list(PROJECTIONS),
            layers_to_transform=list(range(self.first, count)), bias="none",
        )
        with warnings.catch_warnings():
            # peft asks transformers about gradient checkpointing through a name transformers deprecated.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            self.peft_model = get_peft_model(training.model, config)
        self.parameters = [p for p in self.peft_model.parameters() if p.requires_grad]
        self.stage = Stage(training.model, training.layers[self.first:])
        head = training.model.get_output_embeddings()
        self.label_rows = head.weight[[layout.label_ids[label] for label in LABELS]].detach().float()
        self.norm = training.model.model.norm

    def logits(self, prefix_hidden: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(batch, 3) label logits for a batch of examples' lower features: the layers computed in the training
        model's precision, the final norm and the label rows in float32."""
        with self.training.computing():
            _, prefix_kv = self.stage.prefix(prefix_hidden)
            hidden = self.stage.after_prefix(pad_right([f.float() for f in features]), prefix_kv)
        last = torch.tensor([f.shape[0] - 1 for f in features])
        # In bf16 a logit near 15 moves in steps of 1/16: too coarse for the loss and the label offsets.
        answers = self.norm(hidden[torch.arange(len(features)), last].float())
        return answers @ self.label_rows.T

    def lora_state(self) -> dict[str, torch.Tensor]:
        """Copies of the trainable LoRA matrices by parameter name."""
        return {n: p.detach().clone() for n, p in self.peft_model.named_parameters() if p.requires_grad}

    def load_lora_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put saved LoRA matrices back."""
        named = dict(self.peft_model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                named[name].copy_(value)

    def export(self, state: dict[str, torch.Tensor], recipe_notes: dict[str, object],
               label_offsets: dict[str, float] | None = None) -> AnalystAdapter:
        """The adapter file's contents for LoRA matrices ``state`` (and the label offsets fitted after training)."""
        self.load_lora_state(state)
        pairs: dict[tuple[int, str], LoraPair] = {}
        scaling = None
        for index in range(self.first, len(self.training.layers)):
            layer = self.training.layers[index]
            for projection in PROJECTIONS:
                parent = layer.self_attn if projection.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else layer.mlp
                module = getattr(parent, projection)
                pairs[(index, projection)] = LoraPair(
                    module.lora_A["default"].weight.detach().clone(), module.lora_B["default"].weight.detach().clone()
                )
                scaling = module.scaling["default"]
        return AnalystAdapter(
            base_model=self.training.name, base_fingerprint=self.training.fingerprint,
            prompt_version=ADAPTED_ANALYST_PROMPT_VERSION, labels=LABELS,
            label_words={label: ADAPTED_LABEL_WORDS[label] for label in LABELS}, scaling=float(scaling or 0.0),
            pairs=pairs, recipe=recipe_notes, label_offsets=dict(label_offsets or {}),
        )


def dev_logits(trainer: AdapterTrainer, prefix_hidden: torch.Tensor, dev: Encoded) -> torch.Tensor:
    """(n, 3) label logits of every dev example, in LABELS order."""
    batches = [torch.zeros(0, len(LABELS))]
    with torch.no_grad():
        for start in range(0, len(dev.features), 32):
            batches.append(trainer.logits(prefix_hidden, dev.features[start : start + 32]))
    return torch.cat(batches)


def scores_of(logits: torch.Tensor, dev: Encoded) -> dict[str, float]:
    """Accuracy per dev file (among each file's own labels) of label ``logits`` (n, 3), and their mean."""
    predicted = logits.masked_fill(~dev.allowed, float("-inf")).argmax(dim=-1)
    correct: dict[str, list[bool]] = {}
    for source, hit in zip(dev.sources, (predicted == dev.gold).tolist(), strict=True):
        correct.setdefault(source, []).append(hit)
    scores = {source: sum(hits) / len(hits) for source, hits in sorted(correct.items())}
    scores["mean"] = sum(scores.values()) / len(scores)
    return scores


def dev_scores(trainer: AdapterTrainer, prefix_hidden: torch.Tensor, dev: Encoded) -> dict[str, float]:
    """Accuracy per dev file (among each file's own labels) and their mean."""
    return scores_of(dev_logits(trainer, prefix_hidden, dev), dev)


def train_step(
    trainer: AdapterTrainer, prefix_hidden: torch.Tensor, data: Encoded, batch: Sequence[int],
    optimizer: torch.optim.Optimizer,
) -> float:
    """One optimiser step on the examples ``batch`` indexes in ``data``; the batch's loss."""
    raw = trainer.logits(prefix_hidden, [data.features[i] for i in batch])
    logits = raw.masked_fill(~data.allowed[list(batch)], float("-inf"))
    loss = torch.nn.functional.cross_entropy(logits, data.gold[list(batch)])
    if trainer.recipe.consistency:
        loss = loss + trainer.recipe.consistency * _copies_consistency(trainer, prefix_hidden, data, batch, raw)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # A batch of injected copies can pull hard against what the model believes: clipping keeps one such batch
    # from undoing the steps before it (without it, a rate that learns also diverged now and then).
    torch.nn.utils.clip_grad_norm_(trainer.parameters, trainer.recipe.clip_norm)
    optimizer.step()
    return loss.item()


def consistency_loss(copies: torch.Tensor, originals: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence from the originals' label distributions (fixed targets: no gradient reaches them) to
    their injected copies', over each row's allowed labels; ``copies`` and ``originals`` are (n, 3) label logits."""
    # A large finite fill rather than -inf: a label outside the file's choices then has probability 0 in both
    # distributions and adds exactly 0, where -inf would make 0 * (-inf - -inf) a NaN.
    copies = copies.masked_fill(~allowed, -1e9).log_softmax(dim=-1)
    targets = originals.detach().masked_fill(~allowed, -1e9).log_softmax(dim=-1)
    return (targets.exp() * (targets - copies)).sum(dim=-1).mean()


def _copies_consistency(
    trainer: AdapterTrainer, prefix_hidden: torch.Tensor, data: Encoded, batch: Sequence[int], raw: torch.Tensor
) -> torch.Tensor:
    """The consistency loss of the injected copies in ``batch`` (whose label logits are ``raw``) against their clean
    originals, read from the batch or, when not in it, from a pass without gradients; 0 when the batch has none."""
    rows = [row for row, index in enumerate(batch) if data.originals[index] >= 0]
    if not rows:
        return raw.new_zeros(())
    where = {index: row for row, index in enumerate(batch)}
    wanted = [int(data.originals[batch[row]]) for row in rows]
    missing = sorted({index for index in wanted if index not in where})
    with torch.no_grad():
        extra = trainer.logits(prefix_hidden, [data.features[i] for i in missing]) if missing else raw[:0]
    targets = torch.stack([raw[where[i]] if i in where else extra[missing.index(i)] for i in wanted])
    return consistency_loss(raw[rows], targets, data.allowed[[batch[row] for row in rows]])


class WeightAverage:
    """An exponential moving average of the LoRA matrices over the steps after the warm-up: ``average += (1 -
    decay) * (current - average)`` after every step. Evaluated and saved in place of the last step's matrices, it
    smooths out where the last few batches happened to push the adapter (bench/RESULTS.md, "Averaged weights").

    Written out rather than through ``torch.optim.swa_utils.AveragedModel``, which copies the whole module: here
    that is the whole base model, for an average of a few million LoRA numbers."""

    def __init__(self, decay: float, start_after: int) -> None:
        self.decay, self.start_after = decay, start_after
        self.state: dict[str, torch.Tensor] | None = None  # None until the first step after the warm-up

    def update(self, trainer: AdapterTrainer, step: int) -> None:
        """Fold the trainer's matrices after ``step`` (counted from 1) into the average (with decay 0: nothing)."""
        if not self.decay or step <= self.start_after:
            return
        if self.state is None:
            self.state = trainer.lora_state()
            return
        named = dict(trainer.peft_model.named_parameters())
        with torch.no_grad():
            for name, average in self.state.items():
                average.lerp_(named[name].detach(), 1.0 - self.decay)

    def evaluated(self, trainer: AdapterTrainer) -> dict[str, torch.Tensor]:
        """What the run evaluates and would save: a copy of the average, or of the current matrices before it
        starts (or when it is off)."""
        if self.state is None:
            return trainer.lora_state()
        return {name: value.clone() for name, value in self.state.items()}


def warmup_steps(total_steps: int, warmup_share: float) -> int:
    """Steps of the rate's linear warm-up."""
    return max(1, round(total_steps * warmup_share))


def cosine_rate(total_steps: int, warmup_share: float) -> Callable[[int], float]:
    """The rate's multiplier at each step: a linear warm-up, then a cosine down to a tenth."""
    warmup = warmup_steps(total_steps, warmup_share)

    def rate(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / total_steps)))

    return rate
