"""Starting the engine, classifying and replying print no warnings from moodbot's own code paths."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from engine import ChatTurn, EngineSettings, create_engine


@pytest.mark.real_model
@pytest.mark.parametrize("precision", ["fp32", "int8"])
async def test_start_classify_and_reply_raise_no_warning(smollm2_gguf: Path, precision: str) -> None:
    # fp32 goes through transformers' forward (its deprecated `past_key_values` argument warned) and every GGUF load
    # read one tensor from a read-only NumPy array (torch warned); int8 takes the packed kernels, and starts twice:
    # the second time from the prepared weights the first one saved (memory-mapped tensors).
    for _ in range(2 if precision == "int8" else 1):
        engine = create_engine(
            EngineSettings(model=str(smollm2_gguf), precision=precision, threads=2, max_new_tokens=4)
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await engine.start()
            try:
                await engine.classify("what a lovely day")
                reply = [chunk async for chunk in engine.reply(
                    [ChatTurn("user", "hi"), ChatTurn("assistant", "hello")], "how are you?"
                )]
            finally:
                await engine.close()
        assert reply
        assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
