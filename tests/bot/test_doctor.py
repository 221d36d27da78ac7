"""``moodbot doctor``: one line per check against the fake Bot API, a real database and the tiny model."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from bot.cli import main
from bot.cli.doctor import PROBE_TABLE, check_allowlists, doctor
from bot.config import OPEN_BOT_WARNING, TOKEN_ENV_VAR, Config, TelegramConfig
from engine.kernels import native
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi

WRONG_TOKEN = "777:AAWrongTokenThatTheServerRejects-0123456"


def write_config(tmp_path: Path, base_url: str, model: Path, database: Path, precision: str = "fp32") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[telegram]\nbase_url = "{base_url}"\n'
        f'[engine]\nmodel = "{model}"\nprecision = "{precision}"\nthreads = 1\n'
        f'[storage]\npath = "{database}"\n',
        encoding="utf-8",
    )
    return path


async def run_doctor(config: Path | None, token: str = TEST_TOKEN) -> tuple[int, list[str]]:
    """Doctor in a thread (it runs its own event loop) while the fake Bot API serves on this one."""
    out = io.StringIO()
    code = await asyncio.to_thread(doctor, config, out, {TOKEN_ENV_VAR: token})
    return code, out.getvalue().splitlines()


@pytest.fixture
async def strict_api():
    """A fake Bot API that accepts only TEST_TOKEN (others get 401 Unauthorized, like Telegram)."""
    async with FakeBotApi(token=TEST_TOKEN) as api:
        yield api


async def test_all_checks_pass(strict_api: FakeBotApi, tiny_model_dir: Path, tmp_path: Path) -> None:
    database = tmp_path / "data" / "moodbot.db"
    code, lines = await run_doctor(write_config(tmp_path, strict_api.base_url, tiny_model_dir, database))
    assert code == 0, lines  # an open bot is a warning, not a failure
    assert [line.split(":")[0] for line in lines] == [
        "ok  config", "warn access", "ok  token", "ok  database", "ok  prepared weights", "ok  model"
    ]
    assert lines[1] == f"warn access: {OPEN_BOT_WARNING}"
    assert lines[4] == "ok  prepared weights: not used: fp32 weights load straight from the checkpoint"
    assert "@moodbot_test_bot (id 777)" in lines[2]
    assert strict_api.calls_of("getMe"), "the token is checked through the configured base_url"
    with sqlite3.connect(database) as db:  # created and migrated; the write probe left nothing behind
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "messages" in tables and PROBE_TABLE not in tables
    assert TEST_TOKEN not in "\n".join(lines)


async def test_rejected_token_is_one_fail_line(strict_api: FakeBotApi, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, strict_api.base_url, tiny_model_dir, tmp_path / "moodbot.db")
    code, lines = await run_doctor(config, token=WRONG_TOKEN)
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL")] == [
        f"FAIL token: getMe said Unauthorized (127.0.0.1:{strict_api.port})"
    ]
    assert WRONG_TOKEN not in "\n".join(lines) and "777:" not in "\n".join(lines)


async def test_unreachable_api_fails_the_token_check(tiny_model_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, f"http://127.0.0.1:{port}/bot", tiny_model_dir, tmp_path / "moodbot.db")
    code, lines = await run_doctor(config)
    assert code == 1
    [fail] = [line for line in lines if line.startswith("FAIL")]
    assert fail.startswith(f"FAIL token: getMe failed at 127.0.0.1:{port}: ")
    assert TEST_TOKEN not in fail


async def test_database_in_a_place_that_cannot_hold_one(
    strict_api: FakeBotApi, tiny_model_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be", encoding="utf-8")
    database = blocker / "moodbot.db"
    code, lines = await run_doctor(write_config(tmp_path, strict_api.base_url, tiny_model_dir, database))
    assert code == 1
    [fail] = [line for line in lines if line.startswith("FAIL")]
    assert fail.startswith(f"FAIL database: {database}: ")


async def test_a_file_that_is_not_a_database(strict_api: FakeBotApi, tiny_model_dir: Path, tmp_path: Path) -> None:
    database = tmp_path / "moodbot.db"
    database.write_bytes(b"this is not SQLite, " * 100)
    code, lines = await run_doctor(write_config(tmp_path, strict_api.base_url, tiny_model_dir, database))
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL")] == [
        f"FAIL database: {database}: file is not a database"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
async def test_unwritable_database_folder(strict_api: FakeBotApi, tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        database = folder / "moodbot.db"
        code, lines = await run_doctor(write_config(tmp_path, strict_api.base_url, tiny_model_dir, database))
    finally:
        folder.chmod(0o700)
    assert code == 1
    [fail] = [line for line in lines if line.startswith("FAIL")]
    assert fail.startswith(f"FAIL database: {database}: ")


async def test_missing_model_is_one_fail_line(strict_api: FakeBotApi, tmp_path: Path) -> None:
    model = tmp_path / "nowhere" / "model.gguf"
    code, lines = await run_doctor(write_config(tmp_path, strict_api.base_url, model, tmp_path / "moodbot.db"))
    assert code == 1
    assert [line.split(":")[0] for line in lines] == [
        "ok  config", "warn access", "ok  token", "ok  database", "ok  prepared weights", "FAIL model"
    ]
    assert "model file not found" in lines[5]


async def test_prepared_weights_line_says_whether_the_start_will_be_quick(
    strict_api: FakeBotApi, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, strict_api.base_url, tiny_model_dir, tmp_path / "moodbot.db", precision="int8")
    folder = tmp_path / "xdg-cache" / "moodbot" / "prepared"  # $XDG_CACHE_HOME (tests/conftest.py)
    code, lines = await run_doctor(config)
    assert code == 0, lines
    assert lines[4] == f"ok  prepared weights: not yet: the first start prepares them in {folder}"
    kernel = "AVX2 (" if native.wanted() and native.compiler() else "oneDNN"  # the AVX2 kernel is built here
    assert lines[5].startswith(f"ok  int8 kernel: {kernel}"), lines
    [prepared] = folder.glob("*.safetensors")  # the model check loaded the model, which prepared them
    code, lines = await run_doctor(config)
    size_mb = prepared.stat().st_size / 2**20
    assert lines[4] == f"ok  prepared weights: cached: {prepared} ({size_mb:.0f} MB)"


def test_access_line_warns_only_when_anyone_may_use_the_bot() -> None:
    assert check_allowlists(Config()).line() == f"warn access: {OPEN_BOT_WARNING}"
    closed = Config(telegram=TelegramConfig(allowed_user_ids=(1, 2), admin_user_ids=(9,)))
    assert check_allowlists(closed).line() == "ok  access: 2 allowed users, 0 allowed chats, 1 admins"
    assert check_allowlists(Config(telegram=TelegramConfig(allowed_chat_ids=(-100,)))).ok


async def test_bad_config_stops_at_the_config_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[engine]\nthreads = -1\n", encoding="utf-8")
    code, lines = await run_doctor(path)
    assert code == 1
    assert lines == ["FAIL config: engine.threads: must be 0 (all cores) or a positive number"]


async def test_webhook_mode_without_secret_fails_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[telegram]\nmode = "webhook"\nwebhook_url = "https://bot.example.org/hook"\n', encoding="utf-8")
    code, lines = await run_doctor(path)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("FAIL config: telegram.webhook_secret: required")


async def test_cli_wires_doctor_and_exits_1(
    strict_api: FakeBotApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV_VAR, WRONG_TOKEN)
    config = write_config(tmp_path, strict_api.base_url, tmp_path / "no-model", tmp_path / "moodbot.db")
    code = await asyncio.to_thread(main, ["--config", str(config), "doctor"])
    out = capsys.readouterr().out
    assert code == 1
    statuses = [line.split(":")[0] for line in out.splitlines()]
    assert statuses == ["ok  config", "warn access", "FAIL token", "ok  database", "ok  prepared weights", "FAIL model"]
    assert WRONG_TOKEN not in out
