"""Models whose tokenizer is a SentencePiece ``tokenizer.model`` (Llama-2, Mistral, Gemma style) load offline.

transformers 5 turns such a file into a fast tokenizer only with ``sentencepiece`` and ``protobuf`` installed
(transformers' ``sentencepiece`` extra, a moodbot dependency); without them it misreads the file as tiktoken and the
load fails. The tokenizer is trained here on a few lines, so nothing is downloaded.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import sentencepiece
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaTokenizer

from engine import ChatTurn, EngineSettings, LocalEngine
from tests.support.tinymodel import CORPUS

# The analyst and the care question need the first token of each answer word to be its own piece.
ANSWER_WORDS = "positive Positive negative Negative yes Yes no No"
ROUND_TRIP = ["I love this, what a great day!", "The meeting is at three.", "ünïcode and 你好 via byte fallback"]


def build_sentencepiece_folder(directory: Path) -> Path:
    """Train a tiny BPE SentencePiece model and save it as a Llama tokenizer folder (``tokenizer.model`` only)."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20 + [ANSWER_WORDS] * 50), model_writer=model, vocab_size=400,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, minloglevel=2,
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    # What a Llama-2 hub repo holds besides tokenizer.model; no tokenizer.json, so the .model file must be converted.
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return directory


def build_tiny_llama(directory: Path) -> Path:
    """A tiny random Llama model next to the SentencePiece tokenizer in ``directory``."""
    tokenizer = AutoTokenizer.from_pretrained(build_sentencepiece_folder(directory))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def test_sentencepiece_model_loads_offline_and_round_trips(tmp_path: Path) -> None:
    folder = build_sentencepiece_folder(tmp_path / "spm")
    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))

    tokenizer = AutoTokenizer.from_pretrained(folder)

    assert isinstance(tokenizer, LlamaTokenizer)
    assert len(tokenizer) == processor.get_piece_size()
    for text in ROUND_TRIP:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == processor.encode(text)  # the same pieces SentencePiece itself gives
        assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("precision", ["fp32", "int8"])
async def test_engine_loads_a_llama_model_with_a_sentencepiece_tokenizer(tmp_path: Path, precision: str) -> None:
    folder = build_tiny_llama(tmp_path / "tiny-llama")
    settings = EngineSettings(model=str(folder), precision=precision, threads=1, temperature=0.0, max_new_tokens=6)
    engine = LocalEngine(settings)
    await engine.start()
    try:
        sentiment = await engine.classify("I love this, what a great day!")
        chunks = [chunk async for chunk in engine.reply([ChatTurn("user", "hello")], "I feel sad and lonely.")]
    finally:
        await engine.close()

    assert sentiment.label in ("positive", "neutral", "negative")
    assert -1.0 <= sentiment.score <= 1.0
    assert chunks  # the random model's words are nonsense, but the reply streams
