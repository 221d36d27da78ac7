"""`moodbot run` as a real process: polls the fake Bot API, answers, and stops cleanly on SIGTERM.

SIGTERM while a reply is being written: no update is taken after it, the reply is finished and stored whole, and the
database is closed. SIGKILL (what systemd sends when TimeoutStopSec runs out) mid-reply leaves no half reply behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.support.e2e import eventually
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi

ROOT = Path(__file__).resolve().parents[2]


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
                lambda a: (t := a.sent_texts(42)) and not t[-1].endswith(" …") and a.calls_of("sendMessageDraft"),
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


@pytest.mark.parametrize("wrong", ["token", "base_url"])
async def test_run_with_a_rejected_token_exits_2_with_one_line_and_never_shows_it(
    tiny_model_dir: Path, tmp_path: Path, wrong: str
) -> None:
    # The fake accepts only another bot's token; or the URL points where there is no Bot API (404: PTB says the
    # token was rejected there too).
    async with FakeBotApi(token="123:another-bots-token" if wrong == "token" else None) as api:
        base_url = api.base_url if wrong == "token" else api.base_url.replace("/bot", "/nowhere/bot")
        config = tmp_path / "config.toml"
        config.write_text(
            f'[telegram]\nbase_url = "{base_url}"\n[engine]\nmodel = "{tiny_model_dir}"\n'
            f'[storage]\npath = "{tmp_path / "run.db"}"\n[logging]\nlevel = "DEBUG"\n',
            encoding="utf-8",
        )
        log_file = tmp_path / "moodbot.log"  # stderr, as systemd or a redirect would keep it
        env = {**os.environ, "MOODBOT_TELEGRAM_TOKEN": TEST_TOKEN, "PYTHONPATH": str(ROOT)}
        with log_file.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "--config", str(config), "run",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        if wrong == "token":
            assert api.seen_tokens == [TEST_TOKEN], "the server was asked, and said no"
    log = log_file.read_text(encoding="utf-8")
    assert process.returncode == 2, log
    assert log.splitlines()[-1] == "moodbot: error: Telegram rejected the token (check telegram.token)"
    assert "[REDACTED]" in log, "PTB's own error (with its traceback) is still logged, redacted"
    secret_part = TEST_TOKEN.split(":")[1]
    for written in (log, stdout.decode()):
        assert TEST_TOKEN not in written and secret_part not in written


# The real run path (bot.cli.run.run_bot) with an engine that writes half a reply, then waits for a line on stdin.
HELD_BOT = """
import asyncio, sys
from bot.cli.run import run_bot
from bot.config import load_config
from bot.logs import configure_logging
from tests.support.fakeengine import ScriptedEngine

class HeldEngine(ScriptedEngine):
    async def reply(self, history, message, *, length="normal"):
        yield "The first half of the reply, "
        await asyncio.to_thread(sys.stdin.readline)
        yield "and the second half."

config = load_config(sys.argv[1])
configure_logging("INFO", secrets=[config.telegram.token])
run_bot(config, engine=HeldEngine())
"""
HALF_SHOWN = "The first half of the reply, …"
WHOLE = "The first half of the reply, and the second half."


def drafted(api: FakeBotApi, chat_id: int) -> str | None:
    """The draft a private chat shows now (the reply being written), None before any."""
    texts = [draft["text"] for draft in api.drafts if draft["chat_id"] == chat_id]
    return texts[-1] if texts else None


async def start_held_bot(api: FakeBotApi, tmp_path: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """Start the held bot and have Alice write to it; returns once half the reply shows in her chat (as a draft: no
    message yet)."""
    database = tmp_path / "held.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[telegram]\nbase_url = "{api.base_url}"\n[storage]\npath = "{database}"\n', encoding="utf-8")
    env = {**os.environ, "MOODBOT_TELEGRAM_TOKEN": TEST_TOKEN, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HELD_BOT, str(config), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    alice = api.user(42, "Alice")
    api.send_text(api.private_chat(alice), alice, "hello, are you there?")
    try:
        await api.wait_for(lambda a: drafted(a, 42) == HALF_SHOWN and a.sent_texts(42) == [], timeout=90)
    except BaseException:
        process.kill()
        output, _ = await process.communicate()
        raise AssertionError(output.decode()) from None
    return process, database


def stored_messages(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT role, text FROM messages ORDER BY id").fetchall()


async def test_sigterm_mid_reply_finishes_it_takes_nothing_new_and_closes_the_database(tmp_path: Path) -> None:
    async with FakeBotApi() as api:
        process, database = await start_held_bot(api, tmp_path)
        before = len(api.calls)
        process.send_signal(signal.SIGTERM)
        # Polling stops first; its last getUpdates (timeout 0) only confirms what was already taken.
        await api.wait_for(
            lambda a: any(
                c.method == "getUpdates" and c.params.get("timeout") == 0 and c.status is not None
                for c in a.calls[before:]
            ),
            timeout=30,
        )
        api.send_text(api.private_chat(api.user(42, "Alice")), api.user(42, "Alice"), "sent after SIGTERM")
        output, _ = await asyncio.wait_for(process.communicate(b"\n"), timeout=60)  # let the reply go on
        log = output.decode()
        assert process.returncode == 0, log
        assert api.sent_texts(42) == [WHOLE], "the reply in progress was finished in the chat"
        assert [u["message"]["text"] for u in api.pending_updates] == ["sent after SIGTERM"], "no update taken"
        assert TEST_TOKEN not in log
    assert not Path(f"{database}-wal").exists(), "the database was closed (WAL checkpointed and removed)"
    assert stored_messages(database) == [("user", "hello, are you there?"), ("assistant", WHOLE)]


async def test_sigkill_mid_reply_leaves_no_half_reply(tmp_path: Path) -> None:
    async with FakeBotApi() as api:
        process, database = await start_held_bot(api, tmp_path)
        process.kill()
        await asyncio.wait_for(process.communicate(), timeout=30)
    assert stored_messages(database) == [("user", "hello, are you there?")]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT label FROM sentiments").fetchall() == [("neutral",)]


# Every reply streams its first half, then hangs: the process is killed with replies half-written and a backlog.
HANGING_BOT = """
import asyncio, sys
from bot.cli.run import run_bot
from bot.config import load_config
from bot.logs import configure_logging
from tests.support.fakeengine import ScriptedEngine

class HangingEngine(ScriptedEngine):
    async def reply(self, history, message, *, length="normal"):
        yield "The first half of the reply, "
        await asyncio.Event().wait()

config = load_config(sys.argv[1])
configure_logging("INFO", secrets=[config.telegram.token])
run_bot(config, engine=HangingEngine())
"""


async def test_sigkill_with_a_backlog_and_half_replies_loses_nothing_and_a_restart_answers_everything(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A crash or restart loses nothing already received: messages taken from Telegram are stored before they wait
    behind their chat, and the next start answers every one of them once. The half-written replies were drafts, so
    no half message is left in the chats: each reply is one message."""
    database = tmp_path / "crash.db"
    config = tmp_path / "config.toml"
    env = {**os.environ, "MOODBOT_TELEGRAM_TOKEN": TEST_TOKEN, "PYTHONPATH": str(ROOT)}
    async with FakeBotApi() as api:
        config.write_text(
            f'[telegram]\nbase_url = "{api.base_url}"\n'
            f'[engine]\nmodel = "{tiny_model_dir}"\nprecision = "fp32"\nthreads = 1\nmax_new_tokens = 6\n'
            f'[storage]\npath = "{database}"\n',
            encoding="utf-8",
        )
        alice, bob = api.user(42, "Alice"), api.user(43, "Bob")
        crashing = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HANGING_BOT, str(config), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            api.send_text(api.private_chat(alice), alice, "hello, are you there?")
            api.send_text(api.private_chat(bob), bob, "hi, it's Bob")
            await api.wait_for(lambda a: drafted(a, 42) == HALF_SHOWN and drafted(a, 43) == HALF_SHOWN, 90)
            for text in ("one more thing", "and another"):  # queued behind Alice's hanging reply
                api.send_text(api.private_chat(alice), alice, text)
            await api.wait_for(lambda a: not a.pending_updates, timeout=30)  # taken, and confirmed to Telegram
            await eventually(lambda: len(stored_messages(database)) == 4, timeout=30)
        finally:
            crashing.kill()
            output, _ = await crashing.communicate()
        assert crashing.returncode == -signal.SIGKILL, output.decode()

        restarted = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), "run",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            def all_answered(a: FakeBotApi) -> bool:
                texts = a.sent_texts(42) + a.sent_texts(43)
                return len(texts) == 4 and not any(t.endswith(" …") for t in texts)

            await api.wait_for(all_answered, timeout=120)
            api.send_command(api.private_chat(alice), alice, "/help")  # after the late replies in her chat
            await api.wait_for_messages(42, count=4, timeout=30)
        finally:
            restarted.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(restarted.communicate(), timeout=60)
        log = output.decode()
        assert restarted.returncode == 0, log
        assert "answering 4 messages left unanswered by the last stop" in log, log
        first_alice, first_bob = api.sent_messages(42)[0], api.sent_messages(43)[0]
    with sqlite3.connect(database) as db:
        users = db.execute("SELECT id, text FROM messages WHERE role = 'user' ORDER BY id").fetchall()
        replies = dict(db.execute("SELECT reply_to, telegram_message_id FROM messages WHERE role = 'assistant'"))
        assert db.execute("SELECT COUNT(*) FROM sentiments").fetchone() == (4,)
        assert db.execute("SELECT COUNT(*) FROM pending_replies").fetchone() == (0,)
    assert [text for _, text in users] == ["hello, are you there?", "hi, it's Bob", "one more thing", "and another"]
    assert sorted(replies) == [message_id for message_id, _ in users], "every message answered, once"
    assert replies[users[0][0]] == first_alice["message_id"] and replies[users[1][0]] == first_bob["message_id"], (
        "the first message in each chat is the reply to the first message: no half reply was left before it"
    )
