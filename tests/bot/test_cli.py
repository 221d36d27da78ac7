"""The ``moodbot`` command, run in-process: classify, the terminal chat, and one-line errors."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.terminal import chat


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


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
