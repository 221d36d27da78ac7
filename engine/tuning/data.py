"""Labelled training files: reading them, holding out a dev split, balancing labels and files.

A file holds ``text<TAB>label`` lines (1 positive, 0 negative, 2 neutral; a header line is allowed), the format
``moodbot eval`` reads and ``moodbot labels`` writes. A file with no neutral row is two-way: its labels say
"positive rather than negative", not "not neutral", so its examples are trained to choose between those two only.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LABEL_CODES = {"0": "negative", "1": "positive", "2": "neutral"}

# Kana and CJK ideographs: scripts written without spaces between words, where each character counts as one.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{_UNSPACED}]|[^\\W{_UNSPACED}]+")


class TrainingDataError(ValueError):
    """A problem with a labelled file, naming the file and line."""


@dataclass(frozen=True)
class LabelledText:
    """One training or dev example."""

    text: str
    label: str  # positive | negative | neutral
    source: str  # the file it came from (its name), for balancing and per-file scores
    choices: tuple[str, ...]  # the labels this example chooses between: its file's labels
    appended: str = ""  # an injected copy's instruction, appended to ``text`` (kept whole when the text is cut)


def read_labelled(path: Path) -> list[LabelledText]:
    """Every example of one file (``moodbot tune`` and ``moodbot eval`` alike); TrainingDataError names the line
    of a malformed row."""
    rows: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            text, tab, code = line.rpartition("\t")
            code = code.strip()
            if not tab:
                raise TrainingDataError(f"{path}:{number}: expected text<TAB>label")
            if number == 1 and not code.isdigit():
                continue  # header
            if code not in LABEL_CODES:
                raise TrainingDataError(f"{path}:{number}: label must be 0, 1 or 2, got {code!r}")
            if not text.strip():
                raise TrainingDataError(f"{path}:{number}: the text is empty")
            rows.append((text, LABEL_CODES[code]))
    if not rows:
        raise TrainingDataError(f"{path}: no labelled rows")
    labels = {label for _, label in rows}
    choices = ("positive", "neutral", "negative") if "neutral" in labels else ("positive", "negative")
    return [LabelledText(text, label, path.name, choices) for text, label in rows]


def word_count(text: str) -> int:
    """Words in ``text``: runs of letters or digits, with each Chinese or Japanese character counted as one
    (punctuation is not a word)."""
    return len(_WORD.findall(text))


def at_least_words(examples: Sequence[LabelledText], min_words: int) -> list[LabelledText]:
    """The examples of ``min_words`` words or more. Phrase-level sets (SST-2's training file is 43% fragments of
    under six words, labelled on their own) then give whole sentences, which is what people write."""
    return [example for example in examples if word_count(example.text) >= min_words]


def split_off_dev(
    examples: Sequence[LabelledText], per_file: int, seed: int
) -> tuple[list[LabelledText], list[LabelledText]]:
    """(train, dev): ``per_file`` examples of each file held out for early stopping, stratified by label."""
    rng = random.Random(seed)
    by_group: dict[tuple[str, str], list[LabelledText]] = defaultdict(list)
    for example in examples:
        by_group[(example.source, example.label)].append(example)
    files = {source for source, _ in by_group}
    train: list[LabelledText] = []
    dev: list[LabelledText] = []
    for source in sorted(files):
        groups = {label: rows for (s, label), rows in by_group.items() if s == source}
        total = sum(len(rows) for rows in groups.values())
        for label in sorted(groups):
            rows = groups[label][:]
            rng.shuffle(rows)
            take = min(len(rows) // 2, round(per_file * len(rows) / total))
            dev += rows[:take]
            train += rows[take:]
    return train, dev


def balanced(
    examples: Sequence[LabelledText], count: int, seed: int, max_repeats: int = 0
) -> list[LabelledText]:
    """``count`` examples with every file given an equal share and, within a file, every label an equal share.

    A group with fewer rows than its share is repeated (its rows cycle in a shuffled order) rather than left
    under-represented; a bigger group is sampled without repetition. With ``max_repeats``, no file's smallest label
    group is repeated more than that many times: a small file's share stops there and the rest goes to the bigger
    files (fewer than ``count`` when every file is capped). The result is shuffled.
    """
    rng = random.Random(seed)
    by_file: dict[str, dict[str, list[LabelledText]]] = defaultdict(lambda: defaultdict(list))
    for example in examples:
        by_file[example.source][example.label].append(example)
    chosen: list[LabelledText] = []
    shares = _file_shares(by_file, count, max_repeats)
    for source in sorted(by_file):
        labels, file_share = sorted(by_file[source]), shares[source]
        for label_index, label in enumerate(labels):
            share = file_share // len(labels) + (1 if label_index < file_share % len(labels) else 0)
            rows = by_file[source][label][:]
            rng.shuffle(rows)
            chosen += [rows[i % len(rows)] for i in range(share)]
    rng.shuffle(chosen)
    return chosen


def _file_shares(by_file: dict[str, dict[str, list[LabelledText]]], count: int, max_repeats: int) -> dict[str, int]:
    """How many of ``count`` examples each file gives: equal shares (the first files by name take the remainder),
    each capped by ``max_repeats`` where it is set, filled from the smallest cap up so that what a capped file cannot
    give goes to the others."""
    caps = {source: max_repeats * len(groups) * min(len(rows) for rows in groups.values()) if max_repeats else count
            for source, groups in by_file.items()}
    shares: dict[str, int] = {}
    left = count
    for index, source in enumerate(sorted(by_file, key=lambda name: (caps[name], name))):
        fair = -(-left // (len(by_file) - index))  # rounded up, so that the last file takes what is left
        shares[source] = min(caps[source], fair)
        left -= shares[source]
    return shares
