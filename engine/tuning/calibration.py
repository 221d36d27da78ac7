"""Label offsets fitted on the dev split after training: where the adapter's classes meet.

Training ends with an adapter whose label words' logits rank the classes, but whose boundaries carry the balance of
whatever it was trained on last: one adapter called half of the positive tweets neutral, another a quarter of the
neutral ones positive. One constant per label, added to its logit before the softmax, moves a boundary without
touching the ranking inside a class. They are fitted on the dev split (rows never trained on) to the score that
treats every label alike: the mean over dev files of each file's recall averaged over its own labels (a two-way
file compares positive against negative only, so the neutral offset does not touch it).

Positive's offset stays 0 (only differences matter). The search is a grid over the other two, small steps within
``±LIMIT``; each point is scored with its neighbours, so the pick lies inside a stretch of good offsets rather than
on its edge, and a tie goes to the offsets nearest zero: a hundred dev rows per file cannot tell a hair's
difference, and no offset at all is the answer when none helps by at least ``MIN_GAIN``.

A gain on the rows the offsets were fitted to can be the two numbers fitting noise: a hundred dev rows of a file
hold a dozen or so of its rarest label. So the same fit is also made ``FOLDS`` times, each time without a tenth
of the rows, and judged on that tenth; offsets are kept only when those out-of-fold verdicts beat none. Offsets that
gained one to two points on their own rows but lost out of fold cost two held-out adapters two to three points of
the tweets' macro recall (bench/RESULTS.md, "A consistency loss …, and label offsets checked out of fold").
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import torch

LIMIT = 2.0  # the largest offset tried, in logits (a factor of e² ≈ 7.4 in odds)
STEP = 0.1
MARGIN = 2  # steps either side that a chosen point's neighbourhood spans
GRID_SLICE = 128  # offsets tried at once
# The least gain in dev balanced recall that offsets must bring to be kept: on a few hundred dev rows a smaller one
# is chance, and offsets that gained 0.2 points there moved held-out verdicts both ways (bench/RESULTS.md).
MIN_GAIN = 0.01
MIN_ROWS = 10  # dev rows each file needs of each of its labels before offsets are fitted (fewer: all stay 0)
FOLDS = 10  # the out-of-fold check fits on nine tenths of the dev rows and judges on the tenth left out
DRAWS = 3  # ways of cutting the rows into tenths that the check averages over (one alone decides by chance)


def balanced_recall(logits: torch.Tensor, gold: torch.Tensor, allowed: torch.Tensor, sources: Sequence[str],
                    offsets: torch.Tensor) -> float:
    """Mean over ``sources`` of each one's recall averaged over its gold labels, with ``offsets`` (3,) added to the
    logits (n, 3) and each row choosing among its ``allowed`` labels."""
    scores = _balanced_recalls(logits, gold, allowed, sources, offsets.unsqueeze(0))
    return float(scores[0])


def fitted_offsets(logits: torch.Tensor, gold: torch.Tensor, allowed: torch.Tensor, sources: Sequence[str],
                   groups: Sequence[str] | None = None, seed: int = 0) -> tuple[list[float], float, float]:
    """(offsets per label, score without, score with): the offsets (label order of ``logits``' columns, the first
    fixed at 0) that give the highest :func:`balanced_recall` on these rows, ties going to the smallest offsets.
    All 0 when some file has fewer than ``MIN_ROWS`` rows of one of its labels (too few to place a boundary by), when
    they gain less than ``MIN_GAIN``, or when the same fit made without each tenth of the rows does no better than
    none on the rows it left out. Rows sharing a ``groups`` entry (a message and its injected copy) are left out
    together; ``seed`` draws the tenths."""
    offsets, none, score = _fit(logits, gold, allowed, sources)
    if any(offsets) and _out_of_fold_gain(logits, gold, allowed, sources, groups, seed, none) <= 0:
        return [0.0, 0.0, 0.0], none, none
    return offsets, none, score


def _fit(logits: torch.Tensor, gold: torch.Tensor, allowed: torch.Tensor,
         sources: Sequence[str]) -> tuple[list[float], float, float]:
    """:func:`fitted_offsets` on these rows alone, without the out-of-fold check."""
    none = balanced_recall(logits, gold, allowed, sources, torch.zeros(3))
    counts = Counter(zip(sources, gold.tolist(), strict=True))
    if not counts or min(counts.values()) < MIN_ROWS:
        return [0.0, 0.0, 0.0], none, none
    reach = round(LIMIT / STEP)
    steps = torch.arange(-reach, reach + 1) * STEP  # 0 exactly among them
    second, third = torch.meshgrid(steps, steps, indexing="ij")
    grid = torch.stack([torch.zeros_like(second), second, third], dim=-1).reshape(-1, 3)
    # In slices of the grid: each point holds a prediction per dev row, and a --dev file may be large.
    scores = torch.cat([_balanced_recalls(logits, gold, allowed, sources, grid[start : start + GRID_SLICE])
                        for start in range(0, len(grid), GRID_SLICE)])
    # Each point is judged with its neighbours (±MARGIN steps): the pick then lies inside a stretch of good offsets,
    # not on the edge where one more dev row would have fallen the other way.
    side = len(steps)
    smoothed = torch.nn.functional.avg_pool2d(
        scores.reshape(1, side, side), 2 * MARGIN + 1, stride=1, padding=MARGIN, count_include_pad=False
    ).flatten()
    near = (smoothed >= smoothed.max() - 1e-9).nonzero().flatten()
    chosen = near[grid[near].abs().sum(dim=-1).argmin()]
    if scores[chosen] < none + MIN_GAIN:
        return [0.0, 0.0, 0.0], none, none
    return [round(float(x), 2) for x in grid[chosen]], none, float(scores[chosen])


def _out_of_fold_gain(logits: torch.Tensor, gold: torch.Tensor, allowed: torch.Tensor, sources: Sequence[str],
                      groups: Sequence[str] | None, seed: int, none: float) -> float:
    """Balanced recall when every row gets the offsets fitted without its tenth of the rows, less ``none`` (that of
    no offsets); the mean over ``DRAWS`` ways of cutting the rows into tenths."""
    groups = groups or [str(row) for row in range(len(sources))]
    gains = []
    for draw in range(DRAWS):
        folds = _folds(gold, sources, groups, seed * DRAWS + draw)
        shifted = logits.float().clone()
        for fold in range(FOLDS):
            held = folds == fold
            kept = [source for source, out in zip(sources, held.tolist(), strict=True) if not out]
            offsets, _, _ = _fit(logits[~held], gold[~held], allowed[~held], kept)
            shifted[held] += torch.tensor(offsets)
        gains.append(balanced_recall(shifted, gold, allowed, sources, torch.zeros(3)) - none)
    return sum(gains) / DRAWS


def _folds(gold: torch.Tensor, sources: Sequence[str], groups: Sequence[str], seed: int) -> torch.Tensor:
    """A tenth (0 to FOLDS - 1) for every row: a group's rows in one, each file's labels dealt out evenly."""
    first: dict[str, int] = {}
    for row, group in enumerate(groups):
        first.setdefault(group, row)
    strata: dict[tuple[str, int], list[str]] = {}
    for group, row in first.items():
        strata.setdefault((sources[row], int(gold[row])), []).append(group)
    rng, dealt, fold_of = random.Random(seed), 0, {}
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        for group in members:
            fold_of[group], dealt = dealt % FOLDS, dealt + 1
    return torch.tensor([fold_of[group] for group in groups])


def _balanced_recalls(logits: torch.Tensor, gold: torch.Tensor, allowed: torch.Tensor, sources: Sequence[str],
                      grid: torch.Tensor) -> torch.Tensor:
    """The balanced recall for each row of offsets in ``grid`` (g, 3), as a (g,) tensor."""
    shifted = logits.float().unsqueeze(0) + grid.unsqueeze(1)  # (g, n, 3)
    predicted = shifted.masked_fill(~allowed.unsqueeze(0), float("-inf")).argmax(dim=-1)  # (g, n)
    hits = (predicted == gold.unsqueeze(0)).float()
    per_file = []
    for source in sorted(set(sources)):
        rows = torch.tensor([s == source for s in sources])
        recalls = [hits[:, rows & (gold == label)].mean(dim=1) for label in gold[rows].unique().tolist()]
        per_file.append(torch.stack(recalls).mean(dim=0))
    return torch.stack(per_file).mean(dim=0)
