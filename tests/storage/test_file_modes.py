"""Files that hold people's messages or secrets are owner-only from the moment they are created: the database, its
folder, its -wal and -shm files, and the config.toml that scripts/install.sh copies."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import Store

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common default umask (022), under which files are created readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def test_a_new_database_its_folder_wal_and_shm_are_owner_only(tmp_path: Path, usual_umask: None) -> None:
    database = tmp_path / "state" / "moodbot" / "moodbot.db"
    async with await Store.open(database) as store:
        await store.add_user_message(chat_id=1, user_id=1, text="hello", telegram_message_id=None)
        modes = {path.name: mode(path) for path in database.parent.iterdir()}
    assert modes == {"moodbot.db": 0o600, "moodbot.db-wal": 0o600, "moodbot.db-shm": 0o600}
    assert mode(database.parent) == 0o700
    assert mode(database.parent.parent) == 0o755, "folders above the database's own keep the usual mode"


async def test_an_existing_folder_keeps_its_mode(tmp_path: Path, usual_umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    async with await Store.open(shared / "moodbot.db"):
        pass
    assert mode(shared) == 0o755
    assert mode(shared / "moodbot.db") == 0o600


def test_install_script_copies_the_config_owner_only(tmp_path: Path, usual_umask: None) -> None:
    """The real scripts/install.sh, in a copy of the repository whose .venv's python is a stand-in that succeeds."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.example.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    python.chmod(0o755)

    subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh")], check=True, capture_output=True)
    config = tmp_path / "config.toml"
    assert config.read_bytes() == (ROOT / "config.example.toml").read_bytes()
    assert mode(config) == 0o600
