"""A fresh store in a private folder, for the storage tests that need nothing else of its file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, migrated store at ``tmp_path/data/moodbot.db``, closed after the test."""
    async with await Store.open(tmp_path / "data" / "moodbot.db") as opened:
        yield opened
