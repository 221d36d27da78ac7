"""`moodbot run` as a real process: polls the fake Bot API, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from tests.fakebotapi import TEST_TOKEN, FakeBotApi

ROOT = Path(__file__).resolve().parent.parent


async def test_run_answers_and_stops_on_sigterm(tiny_model_dir: Path, tmp_path: Path) -> None:
    async with FakeBotApi() as api:
        database = tmp_path / "run.db"
        config = tmp_path / "config.toml"
        config.write_text(
            f'[telegram]\nbase_url = "{api.base_url}"\n'
            f'[engine]\nmodel = "{tiny_model_dir}"\nprecision = "fp32"\nthreads = 1\nmax_new_tokens = 6\n'
            f'[storage]\npath = "{database}"\n',
            encoding="utf-8",
        )
        env = {**os.environ, "MOODBOT_TELEGRAM_TOKEN": TEST_TOKEN, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), "run",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            alice = api.user(42, "Alice")
            chat = api.private_chat(alice)
            api.send_text(chat, alice, "hello from a real process")
            await api.wait_for(
                lambda a: (t := a.sent_texts(42)) and not t[-1].endswith(" …") and a.calls_of("editMessageText"),
                timeout=90,
            )
            api.send_command(chat, alice, "/help")
            await api.wait_for_messages(42, count=2, timeout=30)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        log = output.decode()
        assert process.returncode == 0, log
        assert TEST_TOKEN not in log, "the token must never be logged"
        assert "handled message" in log and "hello from a real process" not in log
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT role FROM messages ORDER BY id").fetchall() == [("user",), ("assistant",)]
