"""The training loop of ``moodbot tune``: balanced data, injected copies, cached lower layers, LoRA on the upper
layers (peft), early stopping on a dev split, resumable checkpoints, one small adapter file at the end.

The loss is cross-entropy on the label tokens' logits at the answer position, over the labels the example's file
uses: a two-way file's example chooses between positive and negative only (its label never said "not neutral"),
a three-way file's among all three.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from engine.adapters.file import offsets_text
from engine.adapters.layout import adapted_prompt_layout
from engine.roles.prompts import ADAPTED_ANALYST_PROMPT_VERSION, ADAPTED_LABEL_WORDS
from engine.tuning.calibration import MIN_GAIN, MIN_ROWS, fitted_offsets
from engine.tuning.data import (
    LabelledText,
    TrainingDataError,
    at_least_words,
    balanced,
    read_labelled,
    split_off_dev,
)
from engine.tuning.injections import instruction
from engine.tuning.network import TrainingModel, load_training_model, lower_features
from engine.tuning.recipes import Recipe
from engine.tuning.steps import (
    LABELS,
    AdapterTrainer,
    Encoded,
    WeightAverage,
    cosine_rate,
    dev_logits,
    epoch_batches,
    scores_of,
    train_step,
    warmup_steps,
)

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FEATURES = "features.pt"


_OFF_AT_ZERO = ("average_decay", "consistency")  # recipe fields that change nothing at 0


class StaleFeatures(Exception):
    """The work folder holds no features prepared for this data and recipe."""


@dataclass
class TuneJob:
    """What to train on and where the result goes."""

    model: str
    data: list[Path]
    out: Path
    recipe: Recipe
    dev: list[Path] = field(default_factory=list)  # empty: hold out recipe.dev_per_file rows of each data file
    workdir: Path | None = None  # checkpoints and cached features (default: next to ``out``)
    min_words: int = 0  # rows of ``data`` with fewer words are left out (``--dev`` files are kept whole)
    max_repeats: int = 0  # cap on how often a small file's rows repeat (0: equal shares per file, however small)
    precision: str = "fp32"  # the layers' products: fp32, or bf16 (faster on CPUs with native bf16, less accurate)


@dataclass
class TuneResult:
    """What a finished run reports."""

    out: Path
    steps: int
    seconds: float
    dev_scores: dict[str, float]  # per dev file accuracy of the saved adapter, and their mean under "mean"
    stopped: str  # "done" | "early stop" | "time limit"
    history: list[dict[str, float]]  # per evaluation: step, minutes, mean
    label_offsets: dict[str, float] = field(default_factory=dict)  # added to the label logits (all 0: none fitted)
    balanced_recall: tuple[float, float] = (0.0, 0.0)  # dev mean of balanced recall without and with the offsets
    total_steps: int = 0  # the recipe's steps (epochs included); ``steps`` is how many were taken
    precision: str = "fp32"  # what the products ran in

    def time_limit_report(self) -> str | None:
        """How to go on with a run its time limit stopped before its last step (None for any other run: ``tune``
        reports "time limit" only when steps were left)."""
        if self.stopped != "time limit":
            return None
        return (f"the time limit stopped training at step {self.steps} of {self.total_steps}, keeping the best state "
                f"so far; to go on from there, run the same command again with a larger --max-minutes (the "
                f"{self.seconds / 60:.0f} minutes spent so far count towards it)")

    def offsets_report(self) -> str:
        """One line on the label offsets: those fitted, with the dev balanced recall they gained, or why none were
        (the rule's numbers come from engine.tuning.calibration, so the words cannot drift from it)."""
        without, with_offsets = self.balanced_recall
        if any(self.label_offsets.values()):
            return (f"label offsets: {offsets_text(self.label_offsets)} "
                    f"(balanced recall on the dev split {without:.1%} -> {with_offsets:.1%})")
        return (f"label offsets: none (balanced recall on the dev split {without:.1%}; offsets need {MIN_ROWS} dev "
                f"rows of each label in each file, and are kept only for a gain of {MIN_GAIN:.1%} or more that "
                f"also holds on rows left out of the fit)")


def _allowed(example: LabelledText) -> list[bool]:
    return [label in example.choices for label in LABELS]


def training_examples(
    train: Sequence[LabelledText], recipe: Recipe, max_repeats: int = 0
) -> list[LabelledText]:
    """The balanced examples of one run, plus an injected copy (true label kept) of ``injected_share`` of them."""
    rng = random.Random(recipe.seed + 1)
    chosen = balanced(train, recipe.examples, recipe.seed, max_repeats)
    copies = [
        replace(e, appended=instruction(e.text, e.choices, rng))
        for e in chosen[: round(len(chosen) * recipe.injected_share)]
    ]
    examples = chosen + copies
    rng.shuffle(examples)
    return examples


def injected_dev(dev: Sequence[LabelledText], seed: int) -> list[LabelledText]:
    """An injected copy of every dev example, scored as a file of its own (``<file> +injected``): the dev score
    then rewards reading the message and ignoring the instruction, not only clean accuracy. The pushed label is
    drawn as in training, so obeying the instruction scores no better than chance on these rows."""
    rng = random.Random(seed + 2)
    return [replace(e, appended=instruction(e.text, e.choices, rng), source=f"{e.source} +injected") for e in dev]


def _run_key(
    job: TuneJob, training: TrainingModel, examples: Sequence[LabelledText], dev: Sequence[LabelledText]
) -> str:
    """What a checkpoint belongs to: the base model, the prompt, the recipe and every text. Not the time limit: it
    changes when a run stops, not what it trains, so a run stopped by its limit goes on from its checkpoint when
    started again with a larger one."""
    # Nor an average or a consistency loss that is off: work folders from before they existed still resume.
    recipe = {k: v for k, v in asdict(job.recipe).items() if k != "max_minutes" and (k not in _OFF_AT_ZERO or v)}
    return _digest([training.fingerprint, ADAPTED_ANALYST_PROMPT_VERSION, recipe, *_precision_mark(training)],
                   examples, dev)


def _features_key(
    training: TrainingModel, recipe: Recipe, examples: Sequence[LabelledText], dev: Sequence[LabelledText]
) -> str:
    """What the prepared lower-layer features depend on, and nothing more: a second run that changes only how it
    trains (rate, rank, epochs, time) reuses them instead of spending most of a quick run preparing again."""
    return _digest(
        [training.fingerprint, ADAPTED_ANALYST_PROMPT_VERSION, recipe.layers, recipe.max_message_tokens,
         *_precision_mark(training)],
        examples, dev,
    )


def _precision_mark(training: TrainingModel) -> list[str]:
    """What a run's keys add for its precision: nothing for fp32, so work folders from before bf16 training existed
    still resume and reuse their features; bf16 features and checkpoints are kept apart from them."""
    return [] if training.precision == "fp32" else [training.precision]


def _digest(head: object, examples: Sequence[LabelledText], dev: Sequence[LabelledText]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(head).encode())
    for example in (*examples, *dev):
        digest.update(f"{example.label}\t{example.text}\t{example.appended}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class PreparedRun:
    """A run's model, examples and lower-layer features, ready for training steps."""

    trainer: AdapterTrainer
    examples: list[LabelledText]  # the balanced training examples and their injected copies, in feature order
    dev: list[LabelledText]
    prefix_hidden: torch.Tensor  # the prompt's fixed prefix after the frozen lower layers
    train_set: Encoded
    dev_set: Encoded
    run_key: str  # what a checkpoint of this run must carry to be resumed
    workdir: Path


def prepare(job: TuneJob, *, progress: bool = True, reuse_only: bool = False) -> PreparedRun:
    """Read ``job``'s data, load the base model and compute (or reuse) the frozen lower layers' features.

    With ``reuse_only``, features prepared for other data or another recipe raise ``StaleFeatures`` instead of
    being prepared again (and overwriting them)."""
    recipe = job.recipe
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    rows = [example for path in job.data for example in read_labelled(path)]  # bad data fails before loading
    if job.min_words:
        rows = at_least_words(rows, job.min_words)
        sources = {example.source for example in rows}
        for path in job.data:
            if path.name not in sources:
                raise TrainingDataError(f"{path}: no row has {job.min_words} words or more")
    if job.dev:
        train, dev = rows, [example for path in job.dev for example in read_labelled(path)]
    else:
        train, dev = split_off_dev(rows, recipe.dev_per_file, recipe.seed)
    if recipe.injected_share > 0:
        dev = [*dev, *injected_dev(dev, recipe.seed)]
    training = load_training_model(job.model, job.precision)
    layout = adapted_prompt_layout(training.tokenizer, ADAPTED_LABEL_WORDS)
    examples = training_examples(train, recipe, job.max_repeats)
    workdir = job.workdir or job.out.with_name(job.out.stem + ".work")
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    trainer = AdapterTrainer(training, layout, recipe)
    features_key = _features_key(training, recipe, examples, dev)
    prefix_hidden, train_set, dev_set = _features(
        trainer, examples, dev, workdir / FEATURES, features_key, progress, reuse_only
    )
    return PreparedRun(
        trainer, examples, dev, prefix_hidden, train_set, dev_set, _run_key(job, training, examples, dev), workdir
    )


def tune(job: TuneJob, *, progress: bool = True, clock: Callable[[], float] = time.monotonic) -> TuneResult:
    """Train an analyst adapter as ``job`` says and save it to ``job.out``; resumes from a matching checkpoint."""
    started = clock()
    recipe = job.recipe
    run = prepare(job, progress=progress)
    trainer, prefix_hidden, train_set, dev_set = run.trainer, run.prefix_hidden, run.train_set, run.dev_set
    run_key, workdir = run.run_key, run.workdir
    optimizer = torch.optim.AdamW(trainer.parameters, lr=recipe.learning_rate, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train_set.features) / recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_rate(total_steps, recipe.warmup_share))
    average = WeightAverage(recipe.average_decay, warmup_steps(total_steps, recipe.warmup_share))
    step, best_score, best_state, stale, history = 0, -1.0, trainer.lora_state(), 0, []
    best_scores: dict[str, float] = {}  # per dev file, of the best state so far
    best_logits: torch.Tensor | None = None  # the best state's dev label logits, for fitting the label offsets
    spent_before, evaluation_minutes, mark = 0.0, 0.0, None  # mark: when the last step or evaluation ended
    checkpoint = workdir / CHECKPOINT
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        if saved.get("run_key") == run_key:
            trainer.load_lora_state(saved["lora"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            step, best_score, best_state = saved["step"], saved["best_score"], saved["best_state"]
            stale, history, spent_before = saved["stale"], saved["history"], saved["seconds"]
            best_scores, best_logits = saved.get("best_scores", {}), saved.get("best_logits")
            average.state = saved.get("average")
            started = clock()  # the time limit counts the earlier run's time plus this one's
            logger.info("resuming from step %d of %d", step, total_steps)
    lengths = [f.shape[0] for f in train_set.features]
    stopped = "done"
    bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", disable=not progress)
    batches: list[list[int]] = []  # this epoch's, drawn once per epoch (or on resuming mid-epoch)
    while step < total_steps:
        epoch, within = divmod(step, steps_per_epoch)
        if within == 0 or not batches:
            batches = epoch_batches(len(lengths), recipe.batch_size, lengths, recipe.seed + epoch)
        batch = batches[within]
        loss = train_step(trainer, prefix_hidden, train_set, batch, optimizer)
        schedule.step()
        step += 1
        average.update(trainer, step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", best=f"{best_score:.3f}" if best_score >= 0 else "-")
        minutes = (spent_before + clock() - started) / 60  # loading and preparing count too
        step_minutes, mark = (minutes - mark if mark is not None else 0.0), minutes
        # The limit counts the evaluation that ends the run: the last one is made while one more step and an
        # evaluation (as long as the last ones took) would still fit, so the run is over by the limit.
        out_of_time = minutes + step_minutes + evaluation_minutes >= recipe.max_minutes
        if step % recipe.eval_every == 0 or step == total_steps or out_of_time:
            evaluating = clock()
            evaluated = average.evaluated(trainer)
            logits = _dev_logits_of(trainer, evaluated, prefix_hidden, dev_set)
            scores = scores_of(logits, dev_set)
            evaluation_minutes = (clock() - evaluating) / 60
            mark = minutes + evaluation_minutes
            out_of_time = out_of_time or mark + step_minutes + evaluation_minutes >= recipe.max_minutes
            history.append({"step": step, "minutes": round(minutes, 2), "mean": round(scores["mean"], 4)})
            if scores["mean"] > best_score:
                best_score, best_state, best_scores, stale = scores["mean"], evaluated, scores, 0
                best_logits = logits
            else:
                stale += 1
            _save_checkpoint(checkpoint, {
                "run_key": run_key, "lora": trainer.lora_state(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "step": step, "best_score": best_score, "best_state": best_state,
                "best_scores": best_scores, "best_logits": best_logits, "average": average.state,
                "stale": stale, "history": history, "seconds": spent_before + clock() - started,
            })
            if stale >= recipe.patience:
                stopped = "early stop"
                break
            if out_of_time and step < total_steps:
                stopped = "time limit"
                break
    bar.close()
    seconds = spent_before + clock() - started
    trainer.load_lora_state(best_state)
    # The best state's scores were measured when it was found; a dev pass through deep adapters is not free.
    if best_logits is None:
        best_logits = dev_logits(trainer, prefix_hidden, dev_set)
    final = best_scores or scores_of(best_logits, dev_set)
    # Where the classes meet: an epoch can end leaning one way, and one offset per label moves that boundary.
    offsets, without, with_offsets = fitted_offsets(best_logits, dev_set.gold, dev_set.allowed, dev_set.sources,
                                                    [example.text for example in run.dev], recipe.seed)
    label_offsets = dict(zip(LABELS, offsets, strict=True))
    notes: dict[str, object] = {
        "recipe": asdict(recipe), "data": [p.name for p in job.data], "dev": [p.name for p in job.dev] or "held out",
        "min_words": job.min_words, "max_repeats": job.max_repeats,
        "examples": len(train_set.features), "steps": step, "stopped": stopped, "minutes": round(seconds / 60, 1),
        "dev_scores": {k: round(v, 4) for k, v in final.items()}, "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "precision": trainer.training.precision,
        "history": history,  # dev accuracy against training time
        "dev_balanced_recall": {"without offsets": round(without, 4), "with offsets": round(with_offsets, 4)},
    }
    trainer.export(best_state, notes, label_offsets).save(job.out)
    return TuneResult(
        job.out, step, seconds, final, stopped, history, label_offsets, (without, with_offsets), total_steps,
        trainer.training.precision,
    )


def _dev_logits_of(
    trainer: AdapterTrainer, state: dict[str, torch.Tensor], prefix_hidden: torch.Tensor, dev: Encoded
) -> torch.Tensor:
    """The dev label logits of LoRA matrices ``state``, leaving the trainer's own matrices as they were."""
    current = trainer.lora_state()
    trainer.load_lora_state(state)
    try:
        return dev_logits(trainer, prefix_hidden, dev)
    finally:
        trainer.load_lora_state(current)


def _save_checkpoint(path: Path, state: dict[str, object]) -> None:
    """Write ``state`` whole or not at all, owner-only: it is derived from the training texts (people's own words,
    when they come from ``moodbot labels``)."""
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        torch.save(state, handle)
    os.replace(temporary, path)


def _encode(
    trainer: AdapterTrainer, examples: Sequence[LabelledText], features: list[torch.Tensor]
) -> Encoded:
    clean: dict[tuple[str, str], int] = {}
    for index, example in enumerate(examples):
        if not example.appended:
            clean.setdefault((example.source, example.text), index)
    return Encoded(
        features=features,
        gold=torch.tensor([LABELS.index(e.label) for e in examples]),
        allowed=torch.tensor([_allowed(e) for e in examples]),
        sources=[e.source for e in examples],
        originals=torch.tensor([clean.get((e.source, e.text), -1) if e.appended else -1 for e in examples]),
    )


def _features(
    trainer: AdapterTrainer, examples: Sequence[LabelledText], dev: Sequence[LabelledText], path: Path, key: str,
    progress: bool, reuse_only: bool = False,
) -> tuple[torch.Tensor, Encoded, Encoded]:
    """Lower-layer features of the training and dev examples, computed once per run (kept in the work folder so a
    resumed run does not compute them again)."""
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == key:
            return saved["prefix"], _encode(trainer, examples, saved["train"]), _encode(trainer, dev, saved["dev"])
    if reuse_only:
        raise StaleFeatures(f"{path} was not prepared for this data and recipe")
    tokenizer, layout, limit = trainer.training.tokenizer, trainer.layout, trainer.recipe.max_message_tokens
    everything = [*examples, *dev]
    ids = [layout.message_ids(tokenizer, e.text, limit, e.appended) for e in everything]
    with tqdm(total=len(ids), desc="preparing", unit="msg", disable=not progress) as bar:
        prefix, features = lower_features(trainer.training, layout, ids, trainer.first, progress=bar.update)
    train_features, dev_features = features[: len(examples)], features[len(examples):]
    _save_checkpoint(path, {"key": key, "prefix": prefix, "train": train_features, "dev": dev_features})
    return prefix, _encode(trainer, examples, train_features), _encode(trainer, dev, dev_features)
