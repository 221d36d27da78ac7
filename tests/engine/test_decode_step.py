"""The hand-written decode step computes what transformers' forward computes, alone and in padded batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

from engine.kernels import decode as decode_step_module
from engine.kernels import int8 as quantize
from engine.kernels import native
from engine.kernels.int8 import FusedInt8Projections, Int8Linear
from engine.kernels.paths import FastPaths, build_fast_paths
from engine.loading.model import load_model
from engine.local.companion import ReplyStream
from engine.local.sampling import SamplingSettings
from engine.settings import EngineSettings

PROMPTS = ([5, 17, 42, 99, 7, 3, 64, 12], [8, 21, 33])


def _transformers_steps(model: torch.nn.Module, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        steps = [model(input_ids=torch.tensor([[t]]), cache=cache, use_cache=True).logits[:, -1].float()
                 for t in tokens]
    return torch.cat(steps)


def _fast_steps(paths: FastPaths, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    assert paths.decode_step is not None
    cache = DynamicCache()
    with torch.inference_mode():
        paths.model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        steps = [paths.decode(torch.tensor([[t]]), torch.tensor([[len(prompt) + i]]), cache)
                 for i, t in enumerate(tokens)]
    return torch.cat(steps)


@pytest.mark.parametrize(("model_fixture", "precision"), [
    ("tiny_model_dir", "fp32"), ("tiny_model_dir", "int8"), ("tiny_mha_model_dir", "fp32"),  # GQA (Qwen2.5), MHA (1.5)
])
def test_single_stream_steps_match_transformers(
    model_fixture: str, precision: str, request: pytest.FixtureRequest
) -> None:
    model_dir = request.getfixturevalue(model_fixture)
    loaded = load_model(EngineSettings(model=str(model_dir), precision=precision, threads=1))
    tokens = [11, 23, 31, 2]
    expected = _transformers_steps(loaded.model, PROMPTS[0], tokens)
    got = _fast_steps(loaded.paths, PROMPTS[0], tokens)
    assert got.shape == (len(tokens), loaded.model.config.vocab_size)
    tolerance = 1e-5 if precision == "fp32" else 2e-2
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)


def test_padded_batch_step_matches_each_sequence_alone(tiny_model_dir: Path) -> None:
    _padded_batch_against_each_alone(tiny_model_dir, "fp32")


def test_packed_int8_padded_batch_step_matches_each_sequence_alone(tiny_model_dir: Path, int8_kernel: str) -> None:
    _padded_batch_against_each_alone(tiny_model_dir, "int8")


def _padded_batch_against_each_alone(tiny_model_dir: Path, precision: str) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision=precision, threads=1))
    model, step = loaded.model, loaded.paths.decode
    # int8: the packed step takes both, a batch with per-row scale tensors and a chat alone with plain numbers.
    assert (loaded.paths.packed_step is not None) == (precision == "int8" and quantize.onednn_int8_available())
    long, short = PROMPTS
    pad = len(long) - len(short)
    caches = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            cache = DynamicCache()
            model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
            caches.append(cache)
        batched = DynamicCache()
        model(input_ids=torch.tensor([long]), cache=batched, use_cache=True)
        for layer, alone in zip(batched.layers, caches[1].layers, strict=True):  # row 2: the short one, left-padded
            padding = alone.keys.new_zeros(1, alone.keys.shape[1], pad, alone.keys.shape[3])
            layer.keys = torch.cat([layer.keys, torch.cat([padding, alone.keys], dim=2)])
            layer.values = torch.cat([layer.values, torch.cat([padding, alone.values], dim=2)])
        mask = torch.ones(2, len(long) + 1, dtype=torch.long)
        mask[1, :pad] = 0
        logits = step(torch.tensor([[11], [11]]), torch.tensor([[len(long)], [len(short)]]), batched, mask)
        alone = [step(torch.tensor([[11]]), torch.tensor([[len(p)]]), c) for p, c in zip(PROMPTS, caches, strict=True)]
    tolerance = 1e-5 if precision == "fp32" else 1e-3
    torch.testing.assert_close(logits, torch.cat(alone), atol=tolerance, rtol=tolerance)
    assert batched.get_seq_length() == len(long) + 1


@pytest.mark.parametrize("precision", ["fp32", "int8-weight-only"])
def test_fused_projections_share_the_model_weights(
    tiny_model_dir: Path, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "onednn_int8_available", lambda: False)  # plain int8 weights, as on ARM
    monkeypatch.setattr(native, "avx2_int8", lambda: None)  # nor the AVX2 kernel
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision=precision.split("-")[0], threads=1))
    step = loaded.paths.decode_step
    assert step is not None
    attention = loaded.model.model.layers[0].self_attn
    fused = step.layers[0].qkv
    int8 = precision.startswith("int8")
    name = "weight_int8" if int8 else "weight"
    assert isinstance(fused, Int8Linear) == int8
    storage = getattr(fused, name).untyped_storage().data_ptr()
    for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
        assert getattr(projection, name).untyped_storage().data_ptr() == storage  # a view, not a copy
    q, k, v = (attention.q_proj.out_features, attention.k_proj.out_features, attention.v_proj.out_features)
    assert getattr(fused, name).shape[0] == q + k + v


@pytest.mark.skipif(not quantize.onednn_int8_available(), reason="this torch build has no oneDNN int8 matmul")
def test_packed_int8_projections_are_one_matrix_the_model_layers_slice(tiny_model_dir: Path) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    step = loaded.paths.decode_step
    assert step is not None
    layer = loaded.model.model.layers[0]
    attention = layer.self_attn
    qkv, gate_up = step.layers[0].qkv, step.layers[0].gate_up
    assert isinstance(qkv, FusedInt8Projections) and isinstance(gate_up, FusedInt8Projections)
    for index, projection in enumerate((attention.q_proj, attention.k_proj, attention.v_proj)):
        assert projection.weight_int8 is None and projection._shared == (qkv, index)  # no second copy
    assert qkv.fused.packed is not None and qkv.fused.weight_int8 is None
    x = torch.randn(3, 1, attention.q_proj.in_features, dtype=torch.bfloat16)
    with torch.inference_mode():
        together = qkv(x)
        separate = torch.cat([attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)], dim=-1)
        assert torch.equal(together, separate)
        assert torch.equal(attention.v_proj(x), together[..., -attention.v_proj.out_features:])  # out of order
        gate, up = gate_up(x).split([layer.mlp.gate_proj.out_features, layer.mlp.up_proj.out_features], dim=-1)
        assert torch.equal(layer.mlp.gate_proj(x), gate) and torch.equal(layer.mlp.up_proj(x), up)
    assert qkv._input is None  # nothing kept alive once every slice was handed out


def test_real_model_greedy_reply_is_the_same_with_and_without_it(smollm2_gguf: Path) -> None:
    loaded = load_model(EngineSettings(model=str(smollm2_gguf), precision="bf16", threads=2))
    assert loaded.model.config.model_type == "llama"
    assert loaded.paths.decode_step is not None
    prompt = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about your favourite season."}], add_generation_prompt=True,
        tokenize=True, return_dict=False,
    )
    replies = []
    for paths in (loaded.paths, FastPaths(loaded.model)):  # the fast decode step, then transformers' forward alone
        stream = ReplyStream(
            paths, loaded.tokenizer, list(prompt), SamplingSettings(max_new_tokens=24, temperature=0.0),
            loaded.stop_token_ids,
        )
        while not stream.done:
            stream.step()
        replies.append(stream.generated)
    assert len(replies[0]) >= 8
    assert replies[0] == replies[1]


def test_other_model_shapes_keep_transformers_forward() -> None:
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=64))
    paths = build_fast_paths(model)
    assert paths.decode_step is None and paths.packed_step is None


@pytest.mark.parametrize("chats", [8, 10])
@pytest.mark.parametrize("step_name", ["decode_step", "packed_step"])
def test_many_chats_share_an_int8_x_int8_output_head(
    tiny_model_dir: Path, chats: int, step_name: str, int8_kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    step = getattr(loaded.paths, step_name)
    assert step is not None and isinstance(loaded.model.get_output_embeddings(), Int8Linear)
    calls = []
    real = quantize.symmetric_rows  # the head's int8 rows, for torch._int_mm or the AVX2 kernel
    monkeypatch.setattr(quantize, "symmetric_rows", lambda *args: calls.append(1) or real(*args))
    prompts = torch.randint(3, 100, (chats, 6), generator=torch.Generator().manual_seed(chats))
    tokens = torch.randint(3, 100, (chats, 1), generator=torch.Generator().manual_seed(1))
    cache = DynamicCache()
    with torch.inference_mode():
        loaded.model(input_ids=prompts, cache=cache, use_cache=True)
        batched = step(tokens, torch.full((chats, 1), 6), cache)
        int8_head = chats >= decode_step_module.HEAD_INT8_ACTIVATION_ROWS
        assert len(calls) == (1 if int8_head else 0)
        for layer in cache.layers:  # drop the token just appended, and take the same step with the weight-only head
            layer.keys, layer.values = layer.keys[:, :, :6], layer.values[:, :, :6]
        monkeypatch.setattr(decode_step_module, "HEAD_INT8_ACTIVATION_ROWS", 10_000)
        weight_only = step(tokens, torch.full((chats, 1), 6), cache)
    torch.testing.assert_close(batched, weight_only, atol=5e-2, rtol=5e-2)
    assert (batched.argmax(-1) == weight_only.argmax(-1)).float().mean() >= 0.8
