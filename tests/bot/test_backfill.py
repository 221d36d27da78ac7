"""The back-fill: a periodic job that classifies every message stored without a mood, in rounds, skipping a message
whose classification keeps failing (with a warning), pausing while the engine is busy, and surviving any error."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.flow import MAX_CLASSIFY_ATTEMPTS
from bot.telegram import jobs
from engine import Sentiment
from storage import Store
from tests.support.e2e import config_for, eventually, rows, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine

BACKLOG = 250  # more than a round used to take (100)


class ChokesOnPoison(ScriptedEngine):
    """Classifies like the scripted engine, except that "poison" always fails (as a message that breaks the
    tokenizer would)."""

    poison_calls: int = 0

    async def classify(self, text: str) -> Sentiment:
        if "poison" in text and not self.busy:
            self.poison_calls += 1
            raise RuntimeError("the tokenizer chokes on this one")
        return await super().classify(text)


async def test_the_backfill_drains_the_backlog_skips_a_message_that_keeps_failing_and_survives_errors(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(jobs, "BACKFILL_FIRST_RUN_S", 3600.0)
    monkeypatch.setattr(jobs, "BACKFILL_INTERVAL_S", 0.2)
    database = tmp_path / "bot.db"
    async with await Store.open(database) as store:
        for n in range(BACKLOG):
            text = "poison" if n == 7 else f"a good day {n}"
            await store.add_user_message(chat_id=1, user_id=1, text=text, telegram_message_id=n + 1)
    # The first round's query fails outright (a locked database, say); later rounds go on.
    rounds: list[str] = []
    query = Store.unclassified_messages

    async def unclassified(self: Store, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("after_id", 0) == 0:
            rounds.append("round")
            if len(rounds) == 1:
                raise sqlite3.OperationalError("database is locked")
        return await query(self, *args, **kwargs)

    monkeypatch.setattr(Store, "unclassified_messages", unclassified)
    engine = ChokesOnPoison(busy=True)
    with caplog.at_level(logging.INFO, logger="bot"):
        async with running_bot(config_for(api, tmp_path), engine=engine):
            await eventually(lambda: "back-fill paused" in caplog.text)  # engine busy: wait, count nothing
            assert "back-fill round failed" in caplog.text
            assert rows(database, "SELECT MAX(attempts) FROM pending_moods") == [(0,)]
            engine.busy = False
            await eventually(lambda: "giving up on message" in caplog.text)
            gave_up_at = len(rounds)
            await eventually(lambda: len(rounds) >= gave_up_at + 2)  # two more rounds leave it alone
    assert rows(database, "SELECT COUNT(*) FROM sentiments") == [(BACKLOG - 1,)]
    assert engine.poison_calls == MAX_CLASSIFY_ATTEMPTS
    [(poison_id, attempts)] = rows(database, "SELECT message_id, attempts FROM pending_moods")
    assert attempts == MAX_CLASSIFY_ATTEMPTS
    assert rows(database, "SELECT text FROM messages WHERE id = ?", poison_id) == [("poison",)]
    assert f"giving up on message {poison_id} after {MAX_CLASSIFY_ATTEMPTS} failed classifications" in caplog.text
