"""Tiny, randomly initialised Qwen2 and Llama models with a small BPE tokenizer, built offline in a few seconds.

It exercises the real loading, analyst, companion and worker code paths; its words are nonsense by design.
The tokenizer ships WITHOUT a chat template, so loading it also tests the ChatML fallback.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "positive Positive negative Negative neutral Neutral yes Yes no No Sentiment:",
    "system user assistant Message: You are a sentiment classifier.",
    "I love this, what a great day! I feel happy and grateful.",
    "This is terrible, I hate it. I feel sad and lonely.",
    "The meeting is at three. It is a normal day.",
    "今天很开心 我很难过 这家酒店太差了 服务很好 房间干净",
    "Thank you for sharing. How are you feeling today? Tell me more.",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a tiny corpus, Qwen-style special tokens, no chat template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Each label word on its own line (no leading space), often enough to become one token, as in Qwen's vocabulary.
    label_words = ["positive", "Positive", "negative", "Negative", "neutral", "Neutral"] * 50
    tokenizer.train_from_iterator(CORPUS * 20 + label_words, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )


def build_tiny_qwen(
    directory: Path,
    *,
    grouped_query_attention: bool = True,
    seed: int = 0,
    initializer_range: float = 0.02,
    tie_word_embeddings: bool = False,
) -> Path:
    """Save a tiny random Qwen2 (GQA like Qwen2.5, or none like Qwen1.5) with its tokenizer into ``directory``.

    A larger ``initializer_range`` gives sharper attention, so masks and positions visibly change the output."""
    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2 if grouped_query_attention else 4,
        max_position_embeddings=4096,
        tie_word_embeddings=tie_word_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_llama(directory: Path, *, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """Save a tiny random Llama (grouped-query attention, no q/k/v biases, like SmolLM2) with the same tokenizer."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
