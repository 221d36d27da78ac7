"""The sampler keeps transformers' semantics (repetition penalty, temperature, top-p) without a full-vocabulary sort."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from engine.local.sampling import TOP_K, SamplingSettings, penalize_repeats


def _reference_probs(logits: torch.Tensor, context: list[int], settings: SamplingSettings) -> torch.Tensor:
    processors = LogitsProcessorList([
        RepetitionPenaltyLogitsProcessor(settings.repetition_penalty),
        TemperatureLogitsWarper(settings.temperature),
        TopPLogitsWarper(settings.top_p),
    ])
    return torch.softmax(processors(torch.tensor([context]), logits[None].clone())[0], dim=-1)


def test_repetition_penalty_matches_transformers() -> None:
    logits = torch.randn(500)
    context = [3, 3, 17, 400, 499, 0]
    expected = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([context]), logits[None].clone())[0]
    assert torch.equal(penalize_repeats(logits, context, 1.3), expected)


def test_greedy_picks_the_best_token_after_the_penalty() -> None:
    logits = torch.zeros(100)
    logits[7], logits[9] = 5.0, 4.8
    settings = SamplingSettings(temperature=0.0, repetition_penalty=1.1)
    assert settings.pick(logits, [1, 2]) == 7
    assert settings.pick(logits, [7]) == 9  # 5.0 / 1.1 < 4.8


def test_samples_follow_the_same_nucleus_distribution_as_transformers() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(30_000, generator=generator)
    logits[:6] += torch.tensor([11.0, 10.5, 10.0, 9.5, 9.0, 8.0])  # a realistic head: a few likely tokens
    context = [0, 5, 123]
    settings = SamplingSettings(temperature=0.7, top_p=0.9, repetition_penalty=1.1)
    expected = _reference_probs(logits, context, settings)
    assert 3 <= int((expected > 0).sum()) <= TOP_K  # the nucleus fits in the candidates, as it does in practice
    draws = 4000
    counts = Counter(settings.pick(logits, context, generator) for _ in range(draws))
    assert set(counts) <= set(torch.nonzero(expected).flatten().tolist())  # never outside the nucleus
    for token, probability in enumerate(expected[:6].tolist()):
        assert abs(counts[token] / draws - probability) < 0.03, (token, counts[token] / draws, probability)


def test_top_p_one_samples_the_whole_softmax_of_a_small_vocabulary() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    settings = SamplingSettings(temperature=1.0, top_p=1.0, repetition_penalty=1.0)
    draws = 4000
    counts = Counter(settings.pick(logits, [], generator) for _ in range(draws))
    for token, probability in enumerate(torch.softmax(logits, dim=0).tolist()):
        assert abs(counts[token] / draws - probability) < 0.03


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_a_batch_picks_what_each_row_would_pick_alone(temperature: float) -> None:
    settings = SamplingSettings(temperature=temperature, top_p=0.9, repetition_penalty=1.3)
    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(3)) * 3
    contexts = [[], [1, 2, 3], list(range(0, 500, 7)), [int(logits[3].argmax())], [9] * 4, [499, 0]]
    for draw in range(20):
        alone = [
            settings.pick(logits[row], contexts[row], torch.Generator().manual_seed(draw * 10 + row))
            for row in range(len(contexts))
        ]
        generators = [torch.Generator().manual_seed(draw * 10 + row) for row in range(len(contexts))]
        together = settings.pick_batch(logits.clone(), contexts, generators)
        assert together == alone
    # pick leaves the caller's logits alone; pick_batch overwrites the ones it was handed (the penalty, in place).
    before = logits.clone()
    settings.pick(logits[3], contexts[3])
    assert torch.equal(logits, before)
    handed = logits.clone()
    settings.pick_batch(handed, contexts, [None] * len(contexts))
    assert not torch.equal(handed, before)
