"""The ``moodbot`` command, run in-process: classify, the terminal chat, labels, and one-line errors."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import stat
from pathlib import Path

import pytest

from bot.cli import main
from bot.cli.evaluation import Example, read_examples
from bot.cli.terminal import chat
from bot.config import DEFAULT_CARE_MESSAGE, Config, StorageConfig, load_config
from bot.views.texts import BUSY_TEXT
from storage import SentimentRecord, Store
from tests.support.fakeengine import ScriptedEngine


def write_config(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[engine]\nmodel = "{model}"\nprecision = "fp32"\nthreads = 1\nmax_new_tokens = 8\ntemperature = 0\n'
        f'[storage]\npath = "{tmp_path / "data" / "moodbot.db"}"\n',
        encoding="utf-8",
    )
    return path


def test_classify_prints_label_and_score(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["--config", str(write_config(tmp_path, tiny_model_dir)), "classify", "I", "feel", "great"]) == 0
    label, score = capsys.readouterr().out.split()
    assert label in ("positive", "neutral", "negative")
    assert -1.0 <= float(score) <= 1.0


def test_config_after_the_subcommand_works_too(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["classify", "hello", "--config", str(write_config(tmp_path, tiny_model_dir))]) == 0
    assert capsys.readouterr().out.split()[0] in ("positive", "neutral", "negative")


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[engine]\nthreads = -1\n", encoding="utf-8")
    assert main(["--config", str(path), "classify", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moodbot: error: engine.threads:") and err.count("\n") == 1


def test_missing_model_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, tmp_path / "nowhere" / "model.gguf")
    assert main(["--config", str(config), "classify", "x"]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and err.count("\n") == 1 and "Traceback" not in err


def test_run_without_token_names_the_key(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(write_config(tmp_path, tmp_path)), "run"]) == 2
    assert "telegram.token" in capsys.readouterr().err


async def test_terminal_chat_stores_messages_replies_and_mood(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_model_dir), environ={})
    stdin = io.StringIO("hello there\n/mood\nsecond message\n/reset\n/quit\nnever read\n")
    stdout = io.StringIO()
    await chat(config, stdin=stdin, stdout=stdout)
    output = stdout.getvalue()
    assert output.count("moodbot> ") == 2
    assert "[mood: " in output and "Messages: 1" in output and "Fresh start" in output
    with sqlite3.connect(tmp_path / "data" / "moodbot.db") as db:
        roles = [r for (r,) in db.execute("SELECT role FROM messages ORDER BY id")]
        assert roles == ["user", "assistant", "user", "assistant"]
        assert db.execute("SELECT COUNT(*) FROM sentiments").fetchone() == (2,)
        assert "never read" not in str(db.execute("SELECT text FROM messages").fetchall())


async def test_the_terminal_takes_the_same_turn_as_telegram(tmp_path: Path) -> None:
    """The conversation flow is written once: a busy engine gets the same polite answer in the terminal as in
    Telegram (and no reply is stored), and a message that signals a crisis gets the same help resources, logged."""
    config = Config(storage=StorageConfig(path=str(tmp_path / "moodbot.db")))
    busy = io.StringIO()
    await chat(config, engine=ScriptedEngine(busy=True), stdin=io.StringIO("hello\n"), stdout=busy)
    assert f"moodbot> {BUSY_TEXT}" in busy.getvalue()
    crisis = io.StringIO()
    await chat(config, engine=ScriptedEngine(), stdin=io.StringIO("I want to hurt myself\n"), stdout=crisis)
    assert "[mood: negative -0.90]" in crisis.getvalue() and f"moodbot> {DEFAULT_CARE_MESSAGE}" in crisis.getvalue()
    with sqlite3.connect(tmp_path / "moodbot.db") as db:
        assert db.execute("SELECT role, text FROM messages ORDER BY id").fetchall() == [
            ("user", "hello"), ("user", "I want to hurt myself"), ("assistant", "echo: I want to hurt myself")
        ]
        assert db.execute("SELECT COUNT(*) FROM care_events").fetchone() == (1,)


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


# -- moodbot labels ------------------------------------------------------------------------------------------------


async def _corrected_database(path: Path) -> None:
    """Alice labelled two of her messages (one with a tab and line breaks), Bob one; one message only has the model's
    label."""
    async with await Store.open(path) as store:
        texts = ["a good\tday\nreally", "so-so", "not labelled by anyone", "bob's bad night\r\n\u2028end"]
        authors = [1, 1, 1, 2]
        stored = [
            await store.add_user_message(chat_id=user, user_id=user, text=text, telegram_message_id=None)
            for text, user in zip(texts, authors, strict=True)
        ]
        await store.add_sentiment(stored[2].id, SentimentRecord("positive", 0.5, {"positive": 0.75}, "m"))
        await store.set_label(message_id=stored[0].id, user_id=1, label="positive")
        await store.set_label(message_id=stored[1].id, user_id=1, label="neutral")
        await store.set_label(message_id=stored[3].id, user_id=2, label="negative")


def test_labels_writes_corrected_messages_as_an_owner_only_eval_file(tmp_path: Path, capsys) -> None:
    database = tmp_path / "data" / "moodbot.db"
    asyncio.run(_corrected_database(database))
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\npath = "{database}"\n', encoding="utf-8")
    out = tmp_path / "labels.tsv"
    out.write_text("old contents\n", encoding="utf-8")
    out.chmod(0o644)  # an existing file is made owner-only too

    assert main(["--config", str(config), "labels", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote 3 labelled messages to {out}\n"
    assert out.read_bytes().decode("utf-8") == (
        "text\tlabel\n"
        "a good day really\t1\n"
        "so-so\t2\n"
        "bob's bad night   end\t0\n"
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert read_examples(out) == [
        Example("a good day really", "positive"),
        Example("so-so", "neutral"),
        Example("bob's bad night   end", "negative"),
    ], "moodbot eval reads it back as written"

    only_bob = tmp_path / "bob.tsv"
    assert main(["--config", str(config), "labels", "--out", str(only_bob), "--user", "2"]) == 0
    assert capsys.readouterr().out == f"wrote 1 labelled message to {only_bob}\n"
    assert only_bob.read_text(encoding="utf-8") == "text\tlabel\nbob's bad night   end\t0\n"
    assert stat.S_IMODE(only_bob.stat().st_mode) == 0o600


def test_labels_without_a_database_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "nowhere.db"}"\n', encoding="utf-8")
    assert main(["--config", str(config), "labels", "--out", str(tmp_path / "labels.tsv")]) == 2
    assert capsys.readouterr().err == f"moodbot: error: no database at {tmp_path / 'nowhere.db'}\n"
    assert not (tmp_path / "labels.tsv").exists() and not (tmp_path / "nowhere.db").exists()
