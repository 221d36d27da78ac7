"""What a training file, or the adapter's rank, buys: adapters trained with one thing changed, scored alike.

It reuses the features a finished ``moodbot tune`` run prepared (same model, data, recipe and seed, so the same
examples and dev rows), so a variant costs only its training steps. Every variant takes the same number of steps
of the same batch size and rate schedule, and is scored once at the end on the full dev split (clean and injected
rows of every file), so variants differ only in the one thing changed::

    moodbot tune --recipe default --data en.tsv --data zh.tsv --data chat.tsv --out default.safetensors
    python -m bench.ablation --model MODEL.gguf --recipe default --data en.tsv --data zh.tsv --data chat.tsv \\
        --work default.work --steps 100 [--without zh.tsv] [--rank 16]

Run it once per variant (no ``--without`` or ``--rank`` for the recipe itself), each in its own process so each
starts from the same untrained adapter.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from engine.tuning.recipes import RECIPES
from engine.tuning.steps import cosine_rate, dev_scores, epoch_batches, train_step
from engine.tuning.trainer import StaleFeatures, TuneJob, prepare


def main(argv: Sequence[str] | None = None) -> int:
    """Train one mix for ``--steps`` steps on the prepared features and print its dev scores as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    parser.add_argument("--data", type=Path, action="append", required=True, help="the tune run's files, in order")
    parser.add_argument("--work", type=Path, required=True, help="the tune run's work folder (features.pt)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--without", action="append", default=[], help="file name to leave out (repeatable)")
    parser.add_argument("--rank", type=int, help="the adapter's rank instead of the recipe's (alpha scaled alike)")
    parser.add_argument("--min-words", type=int, default=0, help="the tune run's --min-words")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    started = time.monotonic()
    names = {path.name for path in args.data}
    unknown = set(args.without) - names
    if unknown:
        raise SystemExit(f"--without names no --data file: {', '.join(sorted(unknown))}")
    recipe = RECIPES[args.recipe].with_rank(args.rank)  # the same scaling: the rank changes capacity, not the step
    job = TuneJob(model=args.model, data=args.data, out=args.work / "unused.safetensors", recipe=recipe,
                  workdir=args.work, min_words=args.min_words)
    features = args.work / "features.pt"
    if not features.exists():
        raise SystemExit(f"{features}: run `moodbot tune` with the same data and recipe first")
    try:
        run = prepare(job, progress=False, reuse_only=True)
    except StaleFeatures as exc:
        raise SystemExit(
            f"{exc}: pass the tune run's --data files in the same order, its recipe and --min-words"
        ) from exc
    kept = [i for i, example in enumerate(run.examples) if example.source not in args.without]

    trainer = run.trainer
    optimizer = torch.optim.AdamW(trainer.parameters, lr=recipe.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_rate(args.steps, recipe.warmup_share))
    lengths = [run.train_set.features[i].shape[0] for i in kept]
    per_epoch = epoch_batches(len(kept), recipe.batch_size, lengths, recipe.seed)
    for step in range(args.steps):
        epoch, within = divmod(step, len(per_epoch))
        if within == 0 and epoch:
            per_epoch = epoch_batches(len(kept), recipe.batch_size, lengths, recipe.seed + epoch)
        batch = [kept[i] for i in per_epoch[within]]
        train_step(trainer, run.prefix_hidden, run.train_set, batch, optimizer)
        schedule.step()
    scores = dev_scores(trainer, run.prefix_hidden, run.dev_set)
    result = {
        "without": args.without, "rank": recipe.rank, "examples": len(kept), "steps": args.steps,
        "batch_size": recipe.batch_size,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "dev": {name: round(value, 4) for name, value in scores.items()},
    }
    print(json.dumps(result, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
