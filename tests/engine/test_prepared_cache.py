"""Prepared int8 weights: a start after the first reads them back (memory-mapped) instead of preparing them again,
bit for bit the model a slow load builds; a file for other weights, precision, format or libraries, or a damaged one,
is never used; files are private, written whole, and outdated ones removed; a cache that cannot be written costs a
warning, not the start."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

import engine.loading.model as loading
from engine import prepared_weights_state
from engine.kernels.int8 import Int8Embedding, Int8Linear
from engine.loading import prepared_cache, prepared_files
from engine.loading.model import LoadedModel, load_model
from engine.loading.prepared_files import cache_folder, default_folder, read_header
from engine.settings import EngineSettings
from tests.support.tinymodel import build_tiny_qwen

PROMPT = "I love this, what a great day! Tell me more."


def settings_for(model: Path, cache: Path | str, precision: str = "int8") -> EngineSettings:
    return EngineSettings(model=str(model), precision=precision, threads=1, prepared_cache_dir=str(cache))


def prepared_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


@dataclass
class Snapshot:
    """A model as the loaders hand it to the fast paths: every tensor by name, module kinds, config, what is shared."""

    tensors: dict[str, torch.Tensor]
    modules: dict[str, str]
    shared: set[tuple[str, str]]
    config: dict
    generation_config: dict


def snapshot(model: torch.nn.Module) -> Snapshot:
    tensors = {name: tensor.detach() for name, tensor in model.state_dict(keep_vars=True).items()}
    pointers = {name: (t.data_ptr(), t.shape) for name, t in tensors.items()}
    shared = {(a, b) for a in tensors for b in tensors if a < b and pointers[a] == pointers[b]}
    return Snapshot(
        tensors, {name: type(module).__name__ for name, module in model.named_modules()}, shared,
        model.config.to_dict(), model.generation_config.to_dict(),
    )


def assert_identical(warm: Snapshot, cold: Snapshot) -> None:
    assert warm.tensors.keys() == cold.tensors.keys()
    for name, tensor in cold.tensors.items():
        assert warm.tensors[name].dtype == tensor.dtype and torch.equal(warm.tensors[name], tensor), name
    assert warm.modules == cold.modules
    assert warm.shared == cold.shared
    assert warm.config == cold.config
    assert warm.generation_config == cold.generation_config


@pytest.fixture
def before_fast_paths(monkeypatch: pytest.MonkeyPatch) -> list[Snapshot]:
    """Snapshots of every model load_model hands to build_fast_paths (packing drops the plain int8 weights)."""
    seen: list[Snapshot] = []
    original = loading.build_fast_paths

    def spying(model, **kwargs):
        seen.append(snapshot(model))
        return original(model, **kwargs)

    monkeypatch.setattr(loading, "build_fast_paths", spying)
    return seen


@pytest.fixture
def checkpoint_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The slow loads (from the checkpoint) load_model makes, by weights path."""
    calls: list[str] = []
    original = loading.load_checkpoint

    def counting(source, settings):
        calls.append(str(source.weights))
        return original(source, settings)

    monkeypatch.setattr(loading, "load_checkpoint", counting)
    return calls


@torch.inference_mode()
def reply_logits(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A prompt's logits, the next decode step's, and a prompt pass's reference logits."""
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    cache = DynamicCache()
    prompt = loaded.paths.prefill(ids, torch.arange(ids.shape[1])[None], cache)
    step = loaded.paths.decode(prompt.argmax(-1, keepdim=True), torch.tensor([[ids.shape[1]]]), cache)
    return prompt, step, loaded.paths.prompt_logits(ids[0].tolist())


def assert_same_logits(warm: LoadedModel, cold: LoadedModel) -> None:
    for warm_logits, cold_logits in zip(reply_logits(warm), reply_logits(cold), strict=True):
        assert torch.equal(warm_logits, cold_logits)


# -- the round trip -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True], ids=["separate head", "tied head"])
def test_second_load_reads_the_prepared_file_and_is_bit_equal(
    tmp_path: Path, tied: bool, before_fast_paths: list[Snapshot], checkpoint_loads: list[str]
) -> None:
    model = build_tiny_qwen(tmp_path / "model", tie_word_embeddings=tied)
    settings = settings_for(model, tmp_path / "cache")
    cold = load_model(settings)
    [prepared] = prepared_in(tmp_path / "cache")
    warm = load_model(settings)
    assert checkpoint_loads == [str(model)]  # the second load never read the checkpoint
    cold_state, warm_state = before_fast_paths
    assert_identical(warm_state, cold_state)
    assert ("lm_head.weight_int8", "model.embed_tokens.weight_int8") in warm_state.shared or not tied
    assert_same_logits(warm, cold)
    assert warm.fingerprint == cold.fingerprint and prepared.name.startswith(f"{cold.fingerprint}-int8-v")
    assert warm.stop_token_ids == cold.stop_token_ids
    embedding = warm.model.get_input_embeddings()
    assert isinstance(embedding, Int8Embedding) and isinstance(warm.model.get_output_embeddings(), Int8Linear)


def test_large_tensors_are_mapped_from_the_file_and_small_ones_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_tiny_qwen(tmp_path / "model")
    settings = settings_for(model, tmp_path / "cache")
    load_model(settings)
    [path] = prepared_in(tmp_path / "cache")
    header = read_header(path)
    sizes = {name: entry.end - entry.start for name, entry in header.tensors.items()}
    tensors = prepared_cache.read_tensors(path, header)
    embedding = "model.embed_tokens.weight_int8"
    assert sizes[embedding] < prepared_cache.MAP_MIN_BYTES  # the tiny model's, so map from the first byte on
    assert str(path) not in Path("/proc/self/maps").read_text()  # read: no mapping
    monkeypatch.setattr(prepared_cache, "MAP_MIN_BYTES", sizes[embedding])
    mapped = prepared_cache.read_tensors(path, header)
    maps = Path("/proc/self/maps").read_text()
    assert str(path) in maps  # the embedding lives in a private mapping of the file
    assert torch.equal(mapped[embedding], tensors[embedding])
    del mapped
    assert str(path) not in Path("/proc/self/maps").read_text()  # unmapped with its tensor


def test_tensors_are_read_when_they_cannot_be_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_model(settings_for(build_tiny_qwen(tmp_path / "model"), tmp_path / "cache"))
    [path] = prepared_in(tmp_path / "cache")
    header = read_header(path)
    expected = prepared_cache.read_tensors(path, header)

    def out_of_handles(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(prepared_cache, "MAP_MIN_BYTES", 1)
    monkeypatch.setattr(prepared_cache.mmap, "mmap", out_of_handles)
    tensors = prepared_cache.read_tensors(path, header)
    assert all(torch.equal(tensors[name], expected[name]) for name in expected)


def test_every_tensor_starts_on_a_64_byte_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch's int8 weight-only product crashed on a head mapped 8 bytes past a boundary (AVX-512, four chats at
    # once): every tensor of a restored model, mapped or read, must be where torch's allocator would put it.
    settings = settings_for(build_tiny_qwen(tmp_path / "model", tie_word_embeddings=True), tmp_path / "cache")
    load_model(settings)
    [path] = prepared_in(tmp_path / "cache")
    header = read_header(path)
    assert all(entry.start % prepared_files.ALIGNMENT == 0 for entry in header.tensors.values())
    sizes = sorted(entry.end - entry.start for entry in header.tensors.values())
    monkeypatch.setattr(prepared_cache, "MAP_MIN_BYTES", sizes[len(sizes) // 2])  # half mapped, half read
    model = prepared_cache.restore_model(path, header)
    tensors = [*model.parameters(), *model.buffers()]
    assert str(path) in Path("/proc/self/maps").read_text() and len(tensors) > 10
    assert [t.data_ptr() % prepared_files.ALIGNMENT for t in tensors if t.numel()] == [0] * len(tensors)


def test_the_prepared_file_is_valid_safetensors(tmp_path: Path) -> None:
    from safetensors import safe_open

    load_model(settings_for(build_tiny_qwen(tmp_path / "model"), tmp_path / "cache"))
    [path] = prepared_in(tmp_path / "cache")
    header = read_header(path)
    ours = prepared_cache.read_tensors(path, header)
    with safe_open(str(path), framework="pt") as opened:  # checks that the entries cover the data, no gap between
        keys = set(opened.keys())
        fillers = {key for key in keys if key.startswith(prepared_files.PADDING_PREFIX)}
        assert keys - fillers == set(ours) and fillers
        assert opened.metadata() == header.metadata
        for name, tensor in ours.items():
            assert torch.equal(opened.get_tensor(name), tensor), name


# -- what is not used ------------------------------------------------------------------------------------------


def test_other_weights_prepare_again_and_replace_the_old_file(tmp_path: Path, checkpoint_loads: list[str]) -> None:
    model = build_tiny_qwen(tmp_path / "model", seed=0)
    settings = settings_for(model, tmp_path / "cache")
    first = load_model(settings)
    [old] = prepared_in(tmp_path / "cache")
    shutil.rmtree(model)
    build_tiny_qwen(model, seed=1)  # the same path, new weights: another fingerprint
    second = load_model(settings)
    assert second.fingerprint != first.fingerprint
    assert len(checkpoint_loads) == 2
    [new] = prepared_in(tmp_path / "cache")
    assert new != old and new.name.startswith(second.fingerprint)  # the old model's file is gone


def test_other_format_version_prepares_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_loads: list[str]
) -> None:
    model = build_tiny_qwen(tmp_path / "model")
    settings = settings_for(model, tmp_path / "cache")
    load_model(settings)
    monkeypatch.setattr(prepared_files, "FORMAT_VERSION", prepared_files.FORMAT_VERSION + 1)
    load_model(settings)
    assert len(checkpoint_loads) == 2
    [new] = prepared_in(tmp_path / "cache")
    assert new.name.endswith(f"-v{prepared_files.FORMAT_VERSION}.safetensors")
    assert read_header(new).metadata["format_version"] == str(prepared_files.FORMAT_VERSION)


def test_file_from_other_library_versions_is_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_loads: list[str]
) -> None:
    model = build_tiny_qwen(tmp_path / "model")
    settings = settings_for(model, tmp_path / "cache")
    load_model(settings)
    monkeypatch.setattr(prepared_files, "library_versions", lambda: "torch=99.0 transformers=99.0")
    load_model(settings)
    load_model(settings)
    assert len(checkpoint_loads) == 2  # the outdated file was rewritten, then read
    [path] = prepared_in(tmp_path / "cache")
    assert read_header(path).metadata["versions"] == "torch=99.0 transformers=99.0"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_float_precisions_are_not_cached(
    tmp_path: Path, precision: str, tiny_model_dir: Path, checkpoint_loads: list[str]
) -> None:
    load_model(settings_for(tiny_model_dir, tmp_path / "cache"))  # an int8 file of the same weights exists
    load_model(settings_for(tiny_model_dir, tmp_path / "cache", precision))
    assert len(checkpoint_loads) == 2
    assert [path.name.split("-")[1] for path in prepared_in(tmp_path / "cache")] == ["int8"]
    assert prepared_files.prepared_file(settings_for(tiny_model_dir, tmp_path / "cache", precision), "0" * 16) is None


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "empty"])
def test_damaged_file_warns_loads_from_the_checkpoint_and_is_rewritten(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture, checkpoint_loads: list[str],
    before_fast_paths: list[Snapshot],
) -> None:
    model = build_tiny_qwen(tmp_path / "model")
    settings = settings_for(model, tmp_path / "cache")
    cold = load_model(settings)
    [path] = prepared_in(tmp_path / "cache")
    data, header = path.read_bytes(), read_header(path)
    path.write_bytes({"truncated": data[: len(data) - 1000], "garbage header": b"\x10\x00" + data[2:],
                      "empty": b""}[damage])
    with caplog.at_level(logging.WARNING):
        again = load_model(settings)
    assert len(checkpoint_loads) == 2
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "unusable" in warning.getMessage() and str(path) in warning.getMessage()
    assert read_header(path) == header  # rewritten whole (metadata order aside, safetensors keeps it in a hash map)
    assert len(path.read_bytes()) == len(data)
    assert_identical(before_fast_paths[1], before_fast_paths[0])
    assert_same_logits(again, cold)


# -- the files ---------------------------------------------------------------------------------------------------


def test_files_are_private_and_written_whole(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "cache" / "prepared"
    loaded = load_model(settings_for(tiny_model_dir, folder))
    [path] = prepared_in(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temporary file left
    metadata = read_header(path).metadata
    assert metadata["fingerprint"] == loaded.fingerprint and metadata["precision"] == "int8"
    assert metadata["format_version"] == str(prepared_files.FORMAT_VERSION)
    assert "torch=" in metadata["versions"] and "transformers=" in metadata["versions"]
    assert metadata["model"] == str(tiny_model_dir.resolve())
    assert not any(key.startswith("tokenizer/") for key in metadata)  # a folder's own tokenizer files load fast


def test_a_killed_writers_temporary_file_is_removed_once_old(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    old, fresh = folder / ".x.safetensors.abc.partial", folder / ".x.safetensors.def.partial"
    old.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    os.utime(old, (1, 1))
    load_model(settings_for(tiny_model_dir, folder))
    assert not old.exists() and fresh.exists()


def test_default_folder_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("") == default_folder() == tmp_path / "xdg" / "moodbot" / "prepared"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the XDG spec says
    assert default_folder() == Path.home() / ".cache" / "moodbot" / "prepared"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_folder() == Path.home() / ".cache" / "moodbot" / "prepared"
    assert cache_folder("~/elsewhere") == Path.home() / "elsewhere"
    assert cache_folder("off") is None and cache_folder(" OFF ") is None


def test_default_setting_writes_under_xdg_cache_home(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1)  # prepared_cache_dir = ""
    load_model(settings)
    assert len(prepared_in(tmp_path / "xdg-cache" / "moodbot" / "prepared")) == 1  # tests/conftest.py's XDG


def test_off_writes_and_reads_nothing(tmp_path: Path, tiny_model_dir: Path, checkpoint_loads: list[str]) -> None:
    load_model(settings_for(tiny_model_dir, "off"))
    load_model(settings_for(tiny_model_dir, "off"))
    assert len(checkpoint_loads) == 2
    assert not (tmp_path / "xdg-cache").exists() and not (tmp_path / "off").exists()
    assert prepared_weights_state(settings_for(tiny_model_dir, "off")).state == "off"


def test_unwritable_folder_warns_once_and_loads(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        loaded = load_model(settings_for(tiny_model_dir, blocker / "prepared"))
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "could not save prepared weights" in warning.getMessage()
    assert isinstance(loaded.model.get_input_embeddings(), Int8Embedding)


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prepared_cache.os, "fsync", disk_full)
    with caplog.at_level(logging.WARNING):
        load_model(settings_for(tiny_model_dir, tmp_path / "cache"))
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "No space left on device" in warning.getMessage()
    assert list((tmp_path / "cache").iterdir()) == []


def test_state_for_doctor(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = settings_for(tiny_model_dir, tmp_path / "cache")
    before = prepared_weights_state(settings)
    assert before.state == "not yet" and before.path is not None and not before.path.exists()
    load_model(settings)
    after = prepared_weights_state(settings)
    assert (after.state, after.path, after.size_bytes) == ("cached", before.path, before.path.stat().st_size)
    assert prepared_weights_state(settings_for(tiny_model_dir, tmp_path / "cache", "fp32")).state == "not used"
    hub = EngineSettings(model="nobody/not-downloaded", precision="int8", prepared_cache_dir=str(tmp_path / "c"))
    assert prepared_weights_state(hub).state == "not yet"  # nothing downloaded to find out


# -- the real SmolLM2 GGUF ----------------------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_gguf_warm_load_equals_the_cold_one(
    smollm2_gguf: Path, tmp_path: Path, before_fast_paths: list[Snapshot], checkpoint_loads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = EngineSettings(model=str(smollm2_gguf), precision="int8", threads=2,
                              prepared_cache_dir=str(tmp_path / "cache"))
    tokenizer_loads: list[str] = []
    original = loading.load_tokenizer

    def counting_tokenizer_loads(source):
        tokenizer_loads.append(str(source.weights))
        return original(source)

    monkeypatch.setattr(loading, "load_tokenizer", counting_tokenizer_loads)
    cold = load_model(settings)
    warm = load_model(settings)
    assert len(checkpoint_loads) == 1 and len(tokenizer_loads) == 1  # neither read the GGUF file a second time
    assert_identical(before_fast_paths[1], before_fast_paths[0])
    assert_same_logits(warm, cold)
    # The tokenizer came from the prepared file, not from the GGUF vocabulary: it must tokenise the same.
    texts = [PROMPT, "Привет! 今天很开心 <|im_start|>user\nhi<|im_end|>", "  spaces\tand\nnewlines  "]
    for text in texts:
        assert warm.tokenizer(text).input_ids == cold.tokenizer(text).input_ids
    chat = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]
    assert warm.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == (
        cold.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    )
    assert warm.tokenizer.get_vocab() == cold.tokenizer.get_vocab()
    assert warm.tokenizer.all_special_tokens == cold.tokenizer.all_special_tokens
    assert (warm.tokenizer.eos_token_id, warm.tokenizer.pad_token_id, warm.tokenizer.bos_token_id) == (
        cold.tokenizer.eos_token_id, cold.tokenizer.pad_token_id, cold.tokenizer.bos_token_id
    )
    assert warm.stop_token_ids == cold.stop_token_ids
