"""int8: small error, half the bytes, tied embedding stored once, per-row int8 activations, the engine runs with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from engine import EngineSettings, LocalEngine
from engine.kernels import activations as rows_of
from engine.kernels import int8 as quantize
from engine.kernels import native
from engine.kernels.int8 import Int8Embedding, Int8Linear, quantize_rows, with_int8_activations
from engine.loading.model import LoadedModel, load_model
from engine.local.analyst import Analyst
from engine.local.companion import ReplyStream
from engine.local.sampling import SamplingSettings


def test_rows_round_trip_within_half_a_step() -> None:
    weight = torch.randn(32, 64)
    q, scales = quantize_rows(weight)
    assert q.dtype == torch.int8 and scales.shape == (32,)
    restored = q.float() * scales.float()[:, None]
    assert (restored - weight).abs().max() <= scales.float().max() * 0.51


def test_int8_linear_matches_the_float_layer() -> None:
    linear = nn.Linear(64, 48, bias=True)
    quantized = Int8Linear.from_linear(linear)
    x = torch.randn(3, 5, 64)
    expected = linear(x)
    got = quantized(x).float()
    assert got.shape == expected.shape
    assert (got - expected).norm() / expected.norm() < 0.03


def test_int8_activations_quantise_each_row_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the AVX2 kernel is used, unpacked layers stay weight-only in it whatever the flag (Int8Linear.forward).
    monkeypatch.setattr(native, "avx2_int8", lambda: None)
    linear = nn.Linear(64, 48, bias=True)
    quantized = Int8Linear.from_linear(linear)
    x = torch.randn(4, 64)
    expected = linear(x)
    w8a8 = with_int8_activations(quantized)
    got = w8a8(x).float()
    x_with_outlier = x.clone()
    x_with_outlier[3, 0] = 500.0  # a huge value in another row must not coarsen row 0's scale
    got_beside_outlier = w8a8(x_with_outlier).float()
    assert (got - expected).norm() / expected.norm() < 0.04
    assert torch.equal(got_beside_outlier[:3], got[:3])
    outside = quantized(x).float()  # the layer itself stays weight-only
    assert not torch.equal(outside, got)
    assert (outside - expected).norm() / expected.norm() < 0.03


def test_without_onednn_activations_are_int8_for_classification_only(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "onednn_int8_available", lambda: False)  # e.g. an ARM server's torch
    monkeypatch.setattr(native, "avx2_int8", lambda: None)  # nor the AVX2 kernel
    calls: list[int] = []
    per_row = quantize.int8_matmul_per_row
    monkeypatch.setattr(quantize, "int8_matmul_per_row", lambda *a: calls.append(1) or per_row(*a))
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    assert not any(isinstance(m, Int8Linear) and m.packed is not None for m in loaded.model.modules())
    analyst = Analyst(loaded.paths, loaded.tokenizer)
    texts = ["I love this, what a great day!", "This is terrible, I hate it.", "今天很开心"]
    calls.clear()
    batched = analyst.classify_batch(texts)
    assert calls, "classification should use int8 activations"
    for text, verdict in zip(texts, batched, strict=True):
        reference = analyst.classify_uncached(text)
        assert abs(verdict.score - reference.score) < 0.05
    calls.clear()
    _reply(loaded)
    assert calls == []  # replies stay weight-only


def _reply(loaded: LoadedModel) -> list[int]:
    stream = ReplyStream(
        loaded.paths, loaded.tokenizer, loaded.tokenizer.encode("Thank you for sharing."),
        SamplingSettings(max_new_tokens=4, temperature=0.0), frozenset(),
    )
    while not stream.done:
        stream.step()
    return stream.generated


needs_onednn = pytest.mark.skipif(not quantize.onednn_int8_available(), reason="this torch has no oneDNN int8 matmul")


@needs_onednn
def test_packed_layer_matches_the_float_layer_and_frees_its_plain_weights(int8_kernel: str) -> None:
    linear = nn.Linear(64, 48, bias=True)
    layer = Int8Linear.from_linear(linear)
    layer.pack()
    assert layer.weight_int8 is None and layer.packed is not None
    x = torch.randn(5, 64) + 0.5  # lopsided rows: the zero point matters
    expected = linear(x)
    with torch.inference_mode():
        several = layer(x).float()
        one_by_one = torch.cat([layer(row[None]).float() for row in x])
    assert (several - expected).norm() / expected.norm() < 0.03
    assert (one_by_one - expected).norm() / expected.norm() < 0.03
    assert (several - one_by_one).abs().max() < 0.02  # the single-row kernel path computes the same thing


@needs_onednn
def test_packed_layer_quantises_each_row_on_its_own(int8_kernel: str) -> None:
    layer = Int8Linear.from_linear(nn.Linear(64, 48))
    layer.pack()
    x = torch.randn(4, 64)
    x_with_outlier = x.clone()
    x_with_outlier[3, 0] = 500.0  # a huge value in another row must not coarsen rows 0-2
    with torch.inference_mode():
        assert torch.equal(layer(x_with_outlier)[:3], layer(x)[:3])


@needs_onednn
def test_packed_layer_multiplies_exactly_what_the_quantised_rows_say(int8_kernel: str) -> None:
    # Large weights (int8 near ±127) and inputs spanning the whole activation range: on CPUs without int8 dot
    # products oneDNN adds pairs of uint8 x int8 products in int16, which saturates unless activations keep to 7 bits.
    torch.manual_seed(0)
    linear = nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.sign(torch.randn(64, 256)) * (0.9 + 0.1 * torch.rand(64, 256)))
    layer = Int8Linear.from_linear(linear)
    weights = layer.weight_int8.double() * layer.scales.double()[:, None]
    layer.pack()
    x = torch.rand(3, 256) * 4.0  # all positive: the values run from 0 to the top of the range
    activations = rows_of.quantize_rows_of_activations(x)
    assert int(activations.values.max()) == rows_of.activation_max()
    assert activations.scales is not None and activations.zero_points is not None
    restored = (activations.values.double() - activations.zero_points.double()) * activations.scales.double()
    expected = restored @ weights.t()
    with torch.inference_mode():
        got = layer.forward_quantized(activations, torch.float32).double()
        one = rows_of.quantize_rows_of_activations(x[:1])
        got_one = layer.forward_quantized(one, torch.float32).double()
    assert ((got - expected).abs().max() / expected.abs().max()) < 1e-4
    assert one.single_row is not None
    scale, zero_point = one.single_row
    expected_one = ((one.values.double() - zero_point) * scale) @ weights.t()
    assert ((got_one - expected_one).abs().max() / expected_one.abs().max()) < 1e-4


def test_activation_rows_round_trip_within_half_a_step() -> None:
    x = torch.randn(6, 40) * torch.tensor([[0.1], [1.0], [10.0], [1.0], [1.0], [1.0]])
    x[4] = x[4].abs() + 3.0  # all positive: the range is widened to include zero
    x[5] = 0.0
    activations = rows_of.quantize_rows_of_activations(x)
    assert activations.values.dtype == torch.uint8
    assert activations.scales is not None and activations.zero_points is not None
    restored = (activations.values.float() - activations.zero_points) * activations.scales
    assert ((restored - x).abs() <= activations.scales * 0.51).all()
    single = rows_of.quantize_rows_of_activations(x[1:2])
    assert single.single_row is not None
    scale, zero_point = single.single_row
    assert ((single.values.float() - zero_point) * scale - x[1]).abs().max() <= scale * 0.51


@needs_onednn
def test_int8_model_packs_every_projection_but_the_shared_head(tiny_model_dir: Path, int8_kernel: str) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    model = loaded.model
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    head = model.get_output_embeddings()
    assert head.packed is None and head.weight_int8 is not None  # the head stays weight-only
    for layer in layers:
        if layer is not head:  # packed itself, or a slice of a packed fused matrix (q/k/v, gate/up)
            assert layer.weight_int8 is None and (layer.packed is not None or layer._shared is not None)
    reference = load_model(EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1)).model
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.inference_mode():
        out, ref = model(ids).logits.float(), reference(ids).logits
    assert (out - ref).norm() / ref.norm() < 0.1
    assert len(_reply(loaded)) == 4


def test_quantized_model_keeps_one_shared_int8_vocabulary(tiny_model_dir: Path) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    model = loaded.model
    assert isinstance(model.get_input_embeddings(), Int8Embedding)
    assert not any(type(m) is nn.Linear for m in model.modules())
    reference = load_model(EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1)).model
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.inference_mode():
        out, ref = model(ids).logits.float(), reference(ids).logits
    assert (out - ref).norm() / ref.norm() < 0.1


async def test_engine_classifies_and_replies_in_int8(tiny_model_dir: Path) -> None:
    engine = LocalEngine(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1, max_new_tokens=5,
                                        temperature=0.0))
    await engine.start()
    try:
        assert (await engine.classify("I love it")).label in ("positive", "neutral", "negative")
        assert "".join([c async for c in engine.reply([], "hello")]) is not None
    finally:
        await engine.close()


def test_gguf_quantised_while_loading_matches_quantised_after(smollm2_gguf: Path) -> None:
    from engine.kernels.int8 import quantize_model
    from engine.loading.gguf_loader import load_gguf_model

    while_loading = load_gguf_model(smollm2_gguf, torch.bfloat16, quantize_int8=True)
    after = quantize_model(load_gguf_model(smollm2_gguf, torch.bfloat16))
    assert not any(type(m) is nn.Linear for m in while_loading.modules())
    assert while_loading.get_output_embeddings().weight_int8 is while_loading.get_input_embeddings().weight_int8
    ids = torch.tensor([[1, 4093, 28, 253, 2234, 314, 260, 1345, 30, 2]])
    with torch.inference_mode():
        assert torch.equal(while_loading(ids).logits, after(ids).logits)
