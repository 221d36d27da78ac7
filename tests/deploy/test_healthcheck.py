"""deploy/healthcheck.py, the container's HEALTHCHECK: healthy only while moodbot could store a message.

A read-only volume can't be tested here (root writes anyway); tests/e2e/test_container_image.py checks it in the image.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

from bot.config import DEFAULT_DATABASE
from storage import Store

ROOT = Path(__file__).resolve().parents[2]


def load_healthcheck() -> ModuleType:
    """deploy/healthcheck.py is a script copied into the image, not a package module: load it from its file."""
    spec = importlib.util.spec_from_file_location("moodbot_healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_healthcheck()


async def stored_database(tmp_path: Path) -> tuple[Path, Path]:
    """A database as moodbot leaves it (migrated, WAL), and a config naming it."""
    database = tmp_path / "data" / "moodbot.db"
    store = await Store.open(database)
    await store.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\npath = "{database}"\n', encoding="utf-8")
    return database, config


def tables(database: Path) -> list[str]:
    with sqlite3.connect(database) as db:
        return [name for (name,) in db.execute("SELECT name FROM sqlite_master ORDER BY name")]


async def test_writable_database_is_healthy_and_left_as_it_was(tmp_path: Path, capsys) -> None:
    database, config = await stored_database(tmp_path)
    before = tables(database)

    assert healthcheck.main(["--config", str(config)]) == 0

    assert capsys.readouterr().out == f"healthy: {database} is writable\n"
    assert tables(database) == before  # the probe table was rolled back


async def test_database_moodbot_has_not_created_is_unhealthy(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "moodbot.db"}"\n', encoding="utf-8")

    assert healthcheck.main(["--config", str(config)]) == 1

    assert "does not exist" in capsys.readouterr().out
    assert not (tmp_path / "moodbot.db").exists()  # the check never creates one


async def test_write_lock_held_past_the_timeout_is_unhealthy(tmp_path: Path) -> None:
    database, _ = await stored_database(tmp_path)
    stuck = sqlite3.connect(database, isolation_level=None)
    stuck.execute("BEGIN IMMEDIATE")
    try:
        problem = healthcheck.database_problem(database, lock_timeout_s=0.1)
    finally:
        stuck.execute("ROLLBACK")
        stuck.close()

    assert problem == f"{database}: database is locked"
    assert healthcheck.database_problem(database, lock_timeout_s=0.1) is None


async def test_volume_almost_full_is_unhealthy(tmp_path: Path) -> None:
    database, _ = await stored_database(tmp_path)

    problem = healthcheck.database_problem(database, min_free_bytes=1 << 62)

    assert problem is not None and problem.startswith(f"{database.parent} has only ")


def test_config_without_a_storage_path_means_moodbot_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "config.toml"
    config.write_text('[logging]\nlevel = "INFO"\n', encoding="utf-8")

    assert healthcheck.DEFAULT_DATABASE == DEFAULT_DATABASE  # the script can't import torch-heavy bot.config
    assert healthcheck.database_path(config) == Path(DEFAULT_DATABASE).expanduser()


@pytest.mark.parametrize("content", [None, "[storage\n"])
def test_unreadable_config_is_unhealthy(tmp_path: Path, content: str | None, capsys) -> None:
    config = tmp_path / "config.toml"
    if content is not None:
        config.write_text(content, encoding="utf-8")

    assert healthcheck.main(["--config", str(config)]) == 1

    assert capsys.readouterr().out.startswith(f"unhealthy: cannot read {config}: ")
