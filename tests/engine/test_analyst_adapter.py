"""The adapted analyst (engine/local/adapted_analyst.py) computes what the base model with its LoRA merged computes,
on every classification path, and nothing else in the engine changes with it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine import EngineSettings, LocalEngine
from engine.adapters.file import AdapterError, AnalystAdapter
from engine.kernels import int8 as quantize
from engine.kernels import native
from engine.kernels.arithmetic import PACKED_ROWS, FloatStreamArithmetic
from engine.kernels.low_rank import AdaptedProjection, update_nbytes
from engine.kernels.paths import FastPaths
from engine.loading.model import LoadedModel, load_model
from engine.local import adapted_analyst as adapted_module
from engine.local.adapted_analyst import AdaptedAnalyst, adapted_analyst
from engine.values import LABELS
from tests.support.adapters import ALL_PROJECTIONS, MIXED, last_logits, merge, plain_model, random_adapter
from tests.support.tinymodel import build_tiny_llama, build_tiny_qwen

needs_onednn = pytest.mark.skipif(
    not quantize.onednn_int8_available(), reason="this torch build has no oneDNN int8 matmul (packed int8 only)"
)

TEXTS = [
    "I love this",
    "This is terrible, I hate it and I feel sad and lonely today",
    "ok",
    "是的，我今天很开心",
    "The meeting is at three. It is a normal day.",
    "Thank you for sharing, I feel happy and grateful",
    "房间干净，服务很好",
    "I hate it",
    "Tell me more about how you are feeling today, I am listening",
    "sad",
    "What a great day! I feel happy.",
    "这家酒店太差了",
]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with larger weights, so labels' logits differ by more than rounding."""
    build = build_tiny_qwen if request.param == "qwen2" else build_tiny_llama
    return build(tmp_path_factory.mktemp(f"adapter-{request.param}"), initializer_range=0.1)


@pytest.fixture(scope="module")
def adapter(model_dir: Path) -> AnalystAdapter:
    return random_adapter(model_dir, plain_model(model_dir), MIXED)


@pytest.fixture(scope="module")
def reference(model_dir: Path, adapter: AnalystAdapter) -> torch.nn.Module:
    """The plain fp32 model with the adapter merged into its weights."""
    return merge(plain_model(model_dir), adapter)


def load(model_dir: Path, precision: str) -> LoadedModel:
    return load_model(EngineSettings(model=str(model_dir), precision=precision, threads=1))


def reference_logits(analyst: AdaptedAnalyst, reference: torch.nn.Module, texts: list[str]) -> torch.Tensor:
    return torch.stack([last_logits(reference, analyst.prompt_ids(text), analyst.label_ids) for text in texts])


def test_fp32_equals_transformers_forward_with_the_lora_merged(
    model_dir: Path, adapter: AnalystAdapter, reference: torch.nn.Module
) -> None:
    loaded = load(model_dir, "fp32")
    analyst = adapted_analyst(loaded, adapter, care_question=False)
    assert isinstance(analyst.prompt_pass.arithmetic.inner, FloatStreamArithmetic)
    logits = analyst.label_logits(TEXTS)
    expected = reference_logits(analyst, reference, TEXTS)
    torch.testing.assert_close(logits, expected, atol=2e-5, rtol=1e-4)
    # The adapter moves the readout by far more than that tolerance: a pass that ignored it would fail above.
    base = reference_logits(analyst, plain_model(model_dir), TEXTS)
    assert (logits - base).abs().max() > 0.05


def test_every_projection_in_every_layer(model_dir: Path) -> None:
    everywhere = random_adapter(model_dir, plain_model(model_dir), {0: ALL_PROJECTIONS, 1: ALL_PROJECTIONS}, seed=3)
    analyst = adapted_analyst(load(model_dir, "fp32"), everywhere, care_question=False)
    expected = reference_logits(analyst, merge(plain_model(model_dir), everywhere), TEXTS[:4])
    torch.testing.assert_close(analyst.label_logits(TEXTS[:4]), expected, atol=2e-5, rtol=1e-4)


def _agreement(logits: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(share of messages with the same top label, mean |difference| of the label probabilities)."""
    same = (logits.argmax(dim=1) == expected.argmax(dim=1)).float().mean().item()
    probability_gap = (logits.softmax(dim=1) - expected.softmax(dim=1)).abs().mean().item()
    return same, probability_gap


@pytest.mark.parametrize("precision", ["bf16", "int8 packed", "int8 weight-only"])
def test_lower_precisions_agree_with_the_merged_reference(
    model_dir: Path, adapter: AnalystAdapter, reference: torch.nn.Module, precision: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if precision == "int8 packed" and not quantize.onednn_int8_available():
        pytest.skip("this torch build has no oneDNN int8 matmul (packed int8 only)")
    if precision == "int8 weight-only":
        monkeypatch.setattr(quantize, "onednn_int8_available", lambda: False)  # as on ARM
        monkeypatch.setattr(native, "avx2_int8", lambda: None)  # nor the AVX2 kernel
    loaded = load(model_dir, precision.split()[0])
    analyst = adapted_analyst(loaded, adapter, care_question=False)
    inner = analyst.prompt_pass.arithmetic.inner
    assert (inner is PACKED_ROWS) == (precision == "int8 packed")
    logits = analyst.label_logits(TEXTS)
    same, gap = _agreement(logits, reference_logits(analyst, reference, TEXTS))
    # How far the adapter moves the fp32 readout: the gap above must be a small part of it.
    _, adapter_effect = _agreement(reference_logits(analyst, plain_model(model_dir), TEXTS),
                                   reference_logits(analyst, reference, TEXTS))
    print(f"{precision}: same label on {same:.0%}, mean |P - P_fp32| {gap:.4f}, adapter's effect {adapter_effect:.4f}")
    assert same >= 0.75 and gap < 0.2 * adapter_effect


def test_a_batch_of_different_lengths_equals_one_at_a_time(
    model_dir: Path, adapter: AnalystAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyst = adapted_analyst(load(model_dir, "fp32"), adapter, care_question=False)
    alone = torch.cat([analyst.label_logits([text]) for text in TEXTS])
    torch.testing.assert_close(analyst.label_logits(TEXTS), alone, atol=1e-5, rtol=1e-5)
    # Split by length into several passes (a small budget), answers still in the messages' order.
    monkeypatch.setattr(adapted_module, "BATCH_TOKENS", 60)
    one_by_one = [analyst.classify_batch([text])[0] for text in TEXTS]
    for single, batched in zip(one_by_one, analyst.classify_batch(TEXTS), strict=True):
        assert batched.label == single.label and batched.score == pytest.approx(single.score, abs=1e-5)


@needs_onednn
def test_packed_batches_equal_one_at_a_time(model_dir: Path, adapter: AnalystAdapter) -> None:
    analyst = adapted_analyst(load(model_dir, "int8"), adapter, care_question=False)
    alone = torch.cat([analyst.label_logits([text]) for text in TEXTS])
    torch.testing.assert_close(analyst.label_logits(TEXTS), alone, atol=1e-4, rtol=1e-4)


def test_an_adapter_that_changes_nothing_reads_the_base_model(model_dir: Path) -> None:
    plain = plain_model(model_dir)
    nothing = random_adapter(model_dir, plain, MIXED, zero_b=True)
    analyst = adapted_analyst(load(model_dir, "fp32"), nothing, care_question=False)
    logits = analyst.label_logits(TEXTS)
    torch.testing.assert_close(logits, reference_logits(analyst, plain, TEXTS), atol=2e-5, rtol=1e-4)
    for text, row, verdict in zip(TEXTS, logits, analyst.classify_batch(TEXTS), strict=True):
        probs = dict(zip(analyst.labels, row.softmax(dim=0).tolist(), strict=True))
        assert verdict.probs == pytest.approx(probs, abs=1e-5), text
        assert verdict.label == max(probs, key=probs.__getitem__)
        assert verdict.score == pytest.approx(probs["positive"] - probs["negative"], abs=1e-5)


def test_the_adapters_label_offsets_are_added_before_the_verdict(model_dir: Path, adapter: AnalystAdapter) -> None:
    loaded = load(model_dir, "fp32")
    plain = adapted_analyst(loaded, adapter, care_question=False)
    offsets = {"positive": 0.0, "neutral": -0.7, "negative": 1.1}
    shifted = adapted_analyst(loaded, replace(adapter, label_offsets=offsets), care_question=False)
    logits = plain.label_logits(TEXTS)
    torch.testing.assert_close(shifted.label_logits(TEXTS), logits)  # the raw readout is the same
    moved = logits + torch.tensor([offsets[label] for label in plain.labels])
    for row, verdict in zip(moved, shifted.classify_batch(TEXTS), strict=True):
        probs = dict(zip(plain.labels, row.softmax(dim=0).tolist(), strict=True))
        assert verdict.probs == pytest.approx(probs, abs=1e-5)
        assert verdict.label == max(probs, key=probs.__getitem__)
    always = replace(adapter, label_offsets={"neutral": 100.0})
    assert {v.label for v in adapted_analyst(loaded, always, care_question=False).classify_batch(TEXTS)} == {"neutral"}


def test_verdicts_are_three_way_and_care_comes_from_the_phrases_or_the_base_model(
    model_dir: Path, adapter: AnalystAdapter
) -> None:
    loaded = load(model_dir, "fp32")
    analyst = adapted_analyst(loaded, adapter, care_question=False)
    verdicts = analyst.classify_batch([*TEXTS, "I want to kill myself"])
    assert {v.label for v in verdicts} <= set(LABELS) and all(set(v.probs) == set(LABELS) for v in verdicts)
    assert verdicts[-1].care >= 0.9 and all(v.care == 0.0 for v in verdicts[:-1])  # the phrase floor, as today
    asking = adapted_analyst(loaded, adapter, care_question=True)
    assert asking.care is not None
    cares = [v.care for v in asking.classify_batch(TEXTS[:4])]
    expected = [v.care for v in asking.care.classify_batch(TEXTS[:4])]  # the base analyst's own answer
    assert cares == pytest.approx(expected, abs=1e-6) and any(c > 0 for c in cares)


def test_the_adapted_layers_share_the_models_modules(model_dir: Path, adapter: AnalystAdapter) -> None:
    loaded = load(model_dir, "fp32")
    before = {name: t.data_ptr() for name, t in loaded.model.state_dict().items()}
    analyst = adapted_analyst(loaded, adapter, care_question=False)
    stack, general = analyst.prompt_pass.stack, loaded.paths.general
    assert general is not None
    for index, (ours, theirs) in enumerate(zip(stack.layers, general.layers, strict=True)):
        for field in ("qkv", "output", "gate_up", "down"):
            module = getattr(ours, field)
            base = module.base if isinstance(module, AdaptedProjection) else module
            assert base is getattr(theirs, field), (index, field)
    # What the updates hold is the adapter's size plus the zero blocks of fused B matrices, nothing full-size.
    assert update_nbytes(stack) <= 2 * adapter.size_bytes()
    assert {name: t.data_ptr() for name, t in loaded.model.state_dict().items()} == before


def test_an_adapter_for_other_weights_or_another_prompt_is_refused(model_dir: Path) -> None:
    loaded = load(model_dir, "fp32")
    plain = plain_model(model_dir)
    other = random_adapter(model_dir, plain, MIXED, base_fingerprint="0123456789abcdef")
    with pytest.raises(AdapterError, match=r"trained on .* not on this model") as refused:
        adapted_analyst(loaded, other, care_question=False)
    assert "\n" not in str(refused.value)
    old_prompt = random_adapter(model_dir, plain, MIXED, prompt_version=0)
    with pytest.raises(AdapterError, match="prompt version 0") as refused:
        adapted_analyst(loaded, old_prompt, care_question=False)
    assert "\n" not in str(refused.value)


def test_an_adapter_that_does_not_fit_or_a_model_without_a_stack_is_refused(model_dir: Path) -> None:
    loaded = load(model_dir, "fp32")
    plain = plain_model(model_dir)
    beyond = random_adapter(model_dir, plain, MIXED)
    beyond.pairs[(7, "q_proj")] = beyond.pairs[(0, "q_proj")]
    with pytest.raises(AdapterError, match="does not fit this model: layer 7 q_proj"):
        adapted_analyst(loaded, beyond, care_question=False)
    misshapen = random_adapter(model_dir, plain, MIXED)
    misshapen.pairs[(0, "down_proj")] = misshapen.pairs[(0, "gate_proj")]  # gate's (64 in, 128 out) as down's
    with pytest.raises(AdapterError, match="layer 0 down_proj: shapes"):
        adapted_analyst(loaded, misshapen, care_question=False)
    transformers_only = FastPaths(loaded.model)  # what a model of another shape gets: no stack
    with pytest.raises(AdapterError, match="need a qwen2- or llama-shaped model"):
        AdaptedAnalyst(transformers_only, loaded.tokenizer, random_adapter(model_dir, plain, MIXED))


async def test_the_engine_refuses_an_adapter_for_another_model_at_start(model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    random_adapter(model_dir, plain_model(model_dir), MIXED, base_fingerprint="0123456789abcdef").save(path)
    engine = LocalEngine(EngineSettings(model=str(model_dir), precision="fp32", threads=1, analyst_adapter=str(path)))
    with pytest.raises(AdapterError, match="trained on"):
        await engine.start()
    await engine.close()
    missing = LocalEngine(EngineSettings(model=str(model_dir), precision="fp32", threads=1,
                                         analyst_adapter=str(tmp_path / "nowhere.safetensors")))
    with pytest.raises(AdapterError, match="analyst adapter not found"):
        await missing.start()
    await missing.close()


async def _reply_and_verdicts(settings: EngineSettings) -> tuple[list[str], list[tuple[str, float]]]:
    engine = LocalEngine(settings)
    await engine.start()
    try:
        verdicts = [await engine.classify(text) for text in TEXTS[:3]]
        chunks = [chunk async for chunk in engine.reply([], "I had a long day at work")]
        logits = engine.loaded.paths.prompt_logits(engine.loaded.tokenizer.encode("hello there"))
    finally:
        await engine.close()
    return [*chunks, repr(logits.tolist())], [(v.label, v.score) for v in verdicts]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
async def test_replies_are_bit_identical_with_and_without_an_adapter(
    model_dir: Path, tmp_path: Path, precision: str
) -> None:
    path = tmp_path / "adapter.safetensors"
    random_adapter(model_dir, plain_model(model_dir), MIXED).save(path)
    settings = EngineSettings(model=str(model_dir), precision=precision, threads=1, temperature=0.0,
                              max_new_tokens=16, seed=1)
    plain_reply, plain_verdicts = await _reply_and_verdicts(settings)
    adapted_reply, adapted_verdicts = await _reply_and_verdicts(
        EngineSettings(**{**settings.__dict__, "analyst_adapter": str(path)}))
    assert adapted_reply == plain_reply
    assert adapted_verdicts != plain_verdicts  # the analyst did change: the adapter was in use


def test_an_adapter_moodbot_tune_wrote_runs_as_merged(tmp_path: Path) -> None:
    """The trainer's file, prompt layout and labels are what this runtime reads: a freshly trained adapter's
    readout equals the base model with its matrices merged."""
    from engine.adapters.file import load_adapter
    from engine.tuning.recipes import Recipe
    from engine.tuning.trainer import TuneJob, tune

    model_dir = build_tiny_qwen(tmp_path / "model")
    rows = [(f"I love this great day {i}", 1) for i in range(8)] + [(f"I hate it {i}", 0) for i in range(8)] + [
        (f"The meeting is at {i}", 2) for i in range(8)]
    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    recipe = Recipe(layers=1, rank=4, alpha=8.0, learning_rate=5e-3, batch_size=4, examples=16, epochs=1,
                    dev_per_file=4, eval_every=2, patience=100, max_message_tokens=32, max_minutes=30.0, seed=1)
    out = tmp_path / "analyst.safetensors"
    tune(TuneJob(model=str(model_dir), data=[data], out=out, recipe=recipe), progress=False)
    adapter = load_adapter(out)
    analyst = adapted_analyst(load(model_dir, "fp32"), adapter, care_question=False)
    expected = reference_logits(analyst, merge(plain_model(model_dir), adapter), TEXTS)
    torch.testing.assert_close(analyst.label_logits(TEXTS), expected, atol=2e-5, rtol=1e-4)


REAL_TEXTS = [
    "What a wonderful surprise, thank you so much!",
    "I failed the exam again and I feel awful.",
    "The bus was late, as usual.",
    "The meeting moved to Thursday at three.",
    "We adopted a puppy this weekend and the kids can't stop laughing.",
    "这家酒店的服务非常好，下次还会再来。",
    "房间又小又脏，非常失望。",
    "快递又丢了，真让人生气。",
]


@pytest.mark.real_model
def test_real_model_int8_loads_an_adapter_and_classifies(smollm2_gguf: Path) -> None:
    fp32 = load_model(EngineSettings(model=str(smollm2_gguf), precision="fp32", threads=2))
    layers = range(fp32.model.config.num_hidden_layers)
    adapter = random_adapter(smollm2_gguf, fp32.model, {i: ("q_proj", "v_proj", "down_proj") for i in layers},
                             rank=8, std=0.05)
    expected = adapted_analyst(fp32, adapter, care_question=False).label_logits(REAL_TEXTS)
    del fp32
    loaded = load_model(EngineSettings(model=str(smollm2_gguf), precision="int8", threads=2))
    analyst = adapted_analyst(loaded, adapter, care_question=False)
    assert (analyst.prompt_pass.arithmetic.inner is PACKED_ROWS) == quantize.onednn_int8_available()
    verdicts = analyst.classify_batch(REAL_TEXTS)
    assert all(v.label in LABELS and sum(v.probs.values()) == pytest.approx(1.0) for v in verdicts)
    same, gap = _agreement(analyst.label_logits(REAL_TEXTS), expected)
    print(f"SmolLM2 int8 with an adapter on every layer: same label as fp32 on {same:.0%}, mean |P - P_fp32| {gap:.4f}")
    assert same >= 0.75 and gap < 0.06  # measured 100% and 0.028
