"""Label offsets fitted after training (engine.tuning.calibration) and carried by the adapter file."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.adapters.file import AdapterError, AnalystAdapter, LoraPair, load_adapter
from engine.tuning.calibration import MIN_ROWS, balanced_recall, fitted_offsets

POSITIVE, NEUTRAL, NEGATIVE = 0, 1, 2
THREE_WAY = [True, True, True]
TWO_WAY = [True, False, True]


def rows(count: int, gold: int, logits: list[float], source: str, allowed: list[bool]) -> list[tuple]:
    return [(logits, gold, allowed, source)] * count


def tensors(data: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    logits = torch.tensor([row[0] for row in data])
    gold = torch.tensor([row[1] for row in data])
    allowed = torch.tensor([row[2] for row in data])
    return logits, gold, allowed, [row[3] for row in data]


def test_a_model_that_leans_to_neutral_gets_a_negative_neutral_offset() -> None:
    # Positive chat messages score neutral a little higher than positive: every one of them is logged neutral.
    data = (rows(30, POSITIVE, [1.0, 1.5, -2.0], "chat", THREE_WAY)
            + rows(30, NEUTRAL, [0.0, 2.0, -1.0], "chat", THREE_WAY)
            + rows(20, NEGATIVE, [-1.0, 0.5, 1.5], "chat", THREE_WAY))
    logits, gold, allowed, sources = tensors(data)
    offsets, without, with_offsets = fitted_offsets(logits, gold, allowed, sources)
    assert without == pytest.approx(2 / 3)  # positive recall 0
    assert with_offsets == pytest.approx(1.0)
    # Below -0.5 the positives are right, down to -2.0 the neutrals stay right: the pick keeps off both edges.
    assert offsets[0] == 0.0 and -1.9 < offsets[1] < -0.6
    assert balanced_recall(logits, gold, allowed, sources, torch.tensor(offsets)) == pytest.approx(with_offsets)


def test_offsets_stay_zero_when_nothing_is_gained() -> None:
    data = (rows(15, POSITIVE, [2.0, 0.0, -2.0], "chat", THREE_WAY)
            + rows(15, NEUTRAL, [0.0, 2.0, 0.0], "chat", THREE_WAY)
            + rows(15, NEGATIVE, [-2.0, 0.0, 2.0], "chat", THREE_WAY))
    offsets, without, with_offsets = fitted_offsets(*tensors(data))
    assert offsets == [0.0, 0.0, 0.0] and without == with_offsets == 1.0


def test_a_gain_within_chance_fits_nothing() -> None:
    # One positive message of 300 is called neutral: offsets could fix it, for a third of a point.
    data = (rows(99, POSITIVE, [2.0, 0.0, -2.0], "chat", THREE_WAY)
            + rows(1, POSITIVE, [1.0, 1.2, -2.0], "chat", THREE_WAY)
            + rows(100, NEUTRAL, [0.0, 2.0, 0.0], "chat", THREE_WAY)
            + rows(100, NEGATIVE, [-2.0, 0.0, 2.0], "chat", THREE_WAY))
    offsets, without, with_offsets = fitted_offsets(*tensors(data))
    assert without < 1.0 and offsets == [0.0, 0.0, 0.0] and with_offsets == without


def test_too_few_dev_rows_of_a_label_fit_nothing() -> None:
    data = (rows(30, POSITIVE, [1.0, 1.5, -2.0], "chat", THREE_WAY)
            + rows(30, NEUTRAL, [0.0, 2.0, -1.0], "chat", THREE_WAY)
            + rows(MIN_ROWS - 1, NEGATIVE, [-1.0, 0.5, 1.5], "chat", THREE_WAY))
    offsets, without, with_offsets = fitted_offsets(*tensors(data))
    assert offsets == [0.0, 0.0, 0.0] and with_offsets == without < 1.0


def test_a_two_way_file_is_scored_without_neutral_and_weighs_as_much_as_a_three_way_one() -> None:
    # Reviews lean negative; chat messages are right as they are. One offset serves both files: negative's, between
    # -0.5 (the reviews' positives turn right) and -2.0 (chat's negatives would turn neutral).
    reviews = (rows(20, POSITIVE, [0.0, 9.0, 0.5], "reviews", TWO_WAY)
               + rows(20, NEGATIVE, [-1.0, 9.0, 1.0], "reviews", TWO_WAY))
    chat = (rows(20, POSITIVE, [2.0, 0.0, -2.0], "chat", THREE_WAY)
            + rows(20, NEUTRAL, [0.0, 2.0, 0.0], "chat", THREE_WAY)
            + rows(20, NEGATIVE, [-2.0, 0.0, 2.0], "chat", THREE_WAY))
    logits, gold, allowed, sources = tensors(reviews + chat)
    offsets, without, with_offsets = fitted_offsets(logits, gold, allowed, sources)
    assert without == pytest.approx((0.5 + 1.0) / 2)  # every review called negative, neutral's 9.0 never counted
    assert with_offsets == pytest.approx(1.0)
    assert -1.9 < offsets[2] < -0.6 and offsets[1] == 0.0


def adapter_with(offsets: dict[str, float]) -> AnalystAdapter:
    return AnalystAdapter(
        base_model="m", base_fingerprint="f", prompt_version=1, labels=("positive", "neutral", "negative"),
        label_words={"positive": " positive", "neutral": " neutral", "negative": " negative"}, scaling=2.0,
        pairs={(0, "q_proj"): LoraPair(torch.ones(2, 4), torch.ones(4, 2))}, label_offsets=offsets,
    )


def test_the_adapter_file_keeps_its_offsets_and_an_older_file_has_none(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    adapter_with({"positive": 0.0, "neutral": -1.3, "negative": 0.4}).save(path)
    loaded = load_adapter(path)
    assert loaded.offsets() == [0.0, -1.3, 0.4]
    assert loaded.offsets_text() == "neutral -1.3, negative +0.4"  # labels' order, the zero one left out

    with safe_open(str(path), framework="pt") as handle:  # the same file as written before offsets existed
        metadata = {k: v for k, v in (handle.metadata() or {}).items() if k != "label_offsets"}
        tensors_ = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    older = tmp_path / "older.safetensors"
    save_file(tensors_, str(older), metadata=metadata)
    assert load_adapter(older).offsets() == [0.0, 0.0, 0.0]
    assert load_adapter(older).offsets_text() == "none"


@pytest.mark.parametrize("offsets", [{"neutral": math.nan}, {"neutral": math.inf}, {"happy": 1.0}])
def test_offsets_that_are_not_numbers_for_its_labels_are_refused(tmp_path: Path, offsets: dict[str, float]) -> None:
    path = tmp_path / "a.safetensors"
    adapter_with(offsets).save(path)
    with pytest.raises(AdapterError, match="label offsets"):
        load_adapter(path)


def test_offsets_that_only_fit_noise_are_dropped_by_the_out_of_fold_check() -> None:
    from engine.tuning.calibration import _fit

    kept_by_own_rows = kept = 0
    for seed in range(20):  # label logits with no relation to the labels at all
        logits = torch.randn(120, 3, generator=torch.Generator().manual_seed(seed))
        data = (logits, torch.tensor([POSITIVE, NEUTRAL, NEGATIVE] * 40), torch.ones(120, 3, dtype=torch.bool),
                ["chat"] * 120)
        kept_by_own_rows += any(_fit(*data)[0])
        kept += any(fitted_offsets(*data)[0])
    # On its own rows a grid over two offsets always finds a few points of "gain" in noise; out of fold it does not.
    assert kept_by_own_rows == 20 and kept <= 10


def test_a_real_lean_survives_the_out_of_fold_check_with_its_copies_kept_together() -> None:
    data = (rows(30, POSITIVE, [1.0, 1.5, -2.0], "chat", THREE_WAY)
            + rows(30, NEUTRAL, [0.0, 2.0, -1.0], "chat", THREE_WAY)
            + rows(20, NEGATIVE, [-1.0, 0.5, 1.5], "chat", THREE_WAY))
    logits, gold, allowed, sources = tensors(data + data)  # every row and its injected copy
    groups = [str(row) for row in range(len(data))] * 2
    offsets, without, with_offsets = fitted_offsets(logits, gold, allowed, sources, groups, seed=7)
    assert -1.9 < offsets[1] < -0.6 and with_offsets == pytest.approx(1.0) and without == pytest.approx(2 / 3)


def test_the_tenths_keep_a_group_together_and_deal_each_files_labels_evenly() -> None:
    from engine.tuning.calibration import FOLDS, _folds

    gold = torch.tensor([POSITIVE] * 23 + [NEGATIVE] * 17 + [NEUTRAL] * 31)
    sources = ["reviews"] * 40 + ["chat"] * 31
    groups = [f"{row // 2}" for row in range(71)]  # pairs of rows share a group (the last row is alone)
    folds = _folds(gold, sources, groups, seed=1)
    assert all(folds[row] == folds[row + 1] for row in range(0, 70, 2) if groups[row] == groups[row + 1])
    assert set(folds.tolist()) == set(range(FOLDS))
    firsts = {group: row for row, group in reversed(list(enumerate(groups)))}
    counts = Counter((sources[row], int(gold[row]), int(folds[row])) for row in firsts.values())
    for source, label in {(sources[row], int(gold[row])) for row in firsts.values()}:
        spread = [counts[(source, label, fold)] for fold in range(FOLDS)]
        assert max(spread) - min(spread) <= 1, (source, label, spread)
    assert torch.equal(folds, _folds(gold, sources, groups, seed=1))  # the same draw every time
