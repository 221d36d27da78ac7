"""``moodbot tune``: train an analyst adapter on this CPU from labelled files, then say how to use and check it.

The model is the configured one (``engine.model``) unless ``--model`` names another; the adapter only works on the
model it was trained on. Training runs in this process (no bot needed) and can be stopped and started again: it
resumes from the last checkpoint in the work folder.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from bot.config import Config
from engine import TRAINING_PRECISIONS

logger = logging.getLogger(__name__)


def _count(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text} is not a count (a whole number, 0 or more)")
    return int(text)


def _number_from_zero_below(limit: float, kind: str, rule: str) -> Callable[[str], float]:
    """argparse type: a number from 0 up to (not including) ``limit``; else "TEXT is not a KIND (RULE)"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 <= value < limit:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"{text} is not a {kind} ({rule})")
        return value

    return parse


_decay = _number_from_zero_below(1.0, "decay", "a number from 0 up to, not including, 1")
_weight = _number_from_zero_below(float("inf"), "weight", "a number, 0 or more")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tune`` sub-command's options."""
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="labelled TSV file (text<TAB>label: 1 pos, 0 neg, 2 neutral); repeat for several")
    parser.add_argument("--dev", type=Path, action="append", default=[],
                        help="labelled file(s) for early stopping (default: a held-out part of each --data file)")
    parser.add_argument("--min-words", type=int, default=0,
                        help="leave out --data rows of fewer words, e.g. 6 for SST-2's phrase fragments "
                             "(a Chinese character counts as a word)")
    parser.add_argument("--max-repeats", type=_count, default=0,
                        help="repeat a small file's rows at most this often, giving the rest of its share to the "
                             "bigger files (default: every file an equal share, however small)")
    parser.add_argument("--out", type=Path, required=True, help="the adapter file to write (.safetensors)")
    parser.add_argument("--recipe", choices=("quick", "default"), default="default",
                        help="quick: under half an hour on 2 cores; default: about an hour")
    parser.add_argument("--model", default=None, help="base model (default: engine.model from the config)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="checkpoints and cached features (default: OUT's name + .work, next to it)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--examples", type=int, default=None, help="balanced training examples per epoch")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--layers", type=int, default=None, help="adapt the top N decoder layers")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank (alpha follows it: the same scaling)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak rate (a run changing only this reuses the prepared features)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this long, loading and preparing included (a run this limit "
                             "stopped goes on from its checkpoint when started again with a larger one)")
    parser.add_argument("--precision", choices=TRAINING_PRECISIONS, default=TRAINING_PRECISIONS[0],
                        help="what training computes in: bf16 is about three times faster on a CPU with AVX-512 "
                             "BF16 or AMX, for trying recipes; its adapters scored lower than fp32's")
    parser.add_argument("--average-decay", type=_decay, default=None,
                        help="evaluate and save an average of the steps after the warm-up, each weighing 1 - this "
                             "(0: the last step's matrices as they are)")
    parser.add_argument("--consistency", type=_weight, default=None,
                        help="weight of a loss keeping each injected copy's label probabilities those of its clean "
                             "original (0: off)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between dev evaluations and checkpoints (fewer: more time for training)")


def tune_command(config: Config, args: argparse.Namespace) -> None:
    """Run ``moodbot tune`` with parsed ``args`` and print the result."""
    from engine import RECIPES, TuneJob, tune

    recipe = RECIPES[args.recipe].with_rank(args.rank).with_overrides(
        seed=args.seed, examples=args.examples, epochs=args.epochs, layers=args.layers,
        learning_rate=args.learning_rate, max_minutes=args.max_minutes, eval_every=args.eval_every,
        average_decay=args.average_decay, consistency=args.consistency,
    )
    job = TuneJob(
        model=args.model or config.engine.model, data=args.data, dev=args.dev, out=args.out, recipe=recipe,
        workdir=args.workdir, min_words=args.min_words, max_repeats=args.max_repeats, precision=args.precision,
    )
    result = tune(job)
    scores = ", ".join(f"{name} {value:.1%}" for name, value in result.dev_scores.items() if name != "mean")
    print(f"wrote {result.out} after {result.steps} steps in {result.seconds / 60:.1f} min ({result.stopped}), "
          f"computing in {result.precision}")
    print(f"dev accuracy: {scores}; mean {result.dev_scores['mean']:.1%}")
    if result.history:
        curve = ", ".join(f"{point['minutes']:.0f} min {point['mean']:.1%}" for point in result.history)
        print(f"dev accuracy (mean) over training: {curve}")
    print(result.offsets_report())
    if (go_on := result.time_limit_report()) is not None:
        print(go_on)
    print(f"use it: [engine] analyst_adapter = \"{result.out}\"; check it: moodbot eval --adapter {result.out} "
          "--data FILE")
