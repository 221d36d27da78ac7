#!/usr/bin/env python3
"""The container's HEALTHCHECK: can moodbot still store messages? Exit 0 when yes, else 1 with one line saying why.

moodbot stores every message before it does anything else with it, so a database it can no longer write (a volume
gone read-only or full, a write lock never released) fails every message. This checks that, cheaply enough to run
every minute: the Python standard library only, no torch and no second copy of the model (`moodbot doctor` loads
one, so it is the check to run by hand). It doesn't see a hung event loop; that needs a heartbeat from the bot.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tomllib
from pathlib import Path

CONFIG = Path("/etc/moodbot/config.toml")  # the config the image's entrypoint runs moodbot with
DEFAULT_DATABASE = "~/.local/share/moodbot/moodbot.db"  # bot.config.DEFAULT_DATABASE (a test keeps them equal)
LOCK_TIMEOUT_S = 10.0  # moodbot's own writes are short transactions; a lock held this long is stuck
MIN_FREE_BYTES = 32 * 1024 * 1024  # below this a commit (and its WAL growth) may fail any moment
PROBE_TABLE = "moodbot_healthcheck_probe"  # created inside a transaction that is always rolled back


def database_path(config: Path) -> Path:
    """The database path moodbot uses with ``config``: ``[storage] path``, else moodbot's default."""
    with config.open("rb") as file:
        storage = tomllib.load(file).get("storage", {})
    return Path(storage.get("path", DEFAULT_DATABASE)).expanduser()


def database_problem(
    path: Path, *, lock_timeout_s: float = LOCK_TIMEOUT_S, min_free_bytes: int = MIN_FREE_BYTES
) -> str | None:
    """Why moodbot could not write ``path`` now, or None when it could. Leaves the database as it was."""
    if not path.is_file():
        return f"{path} does not exist (moodbot creates it when it starts)"
    volume = os.statvfs(path.parent)
    free = volume.f_bavail * volume.f_frsize
    if free < min_free_bytes:
        return f"{path.parent} has only {free // 1024} KiB free"
    try:
        # mode=rw never creates a file (a read-only one opens read-only). BEGIN IMMEDIATE waits for the write lock;
        # the write is one SQLite really attempts, so a read-only database fails it (BEGIN alone passes), and the
        # rollback discards it before anything reaches the file.
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=lock_timeout_s, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"CREATE TABLE {PROBE_TABLE} (x INTEGER)")
            finally:
                db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Check the database of ``--config`` (the image's config by default); print the outcome; 0 when healthy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help=f"moodbot's config file (default {CONFIG})")
    args = parser.parse_args(argv)
    try:
        path = database_path(args.config)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"unhealthy: cannot read {args.config}: {exc}")
        return 1
    problem = database_problem(path)
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    print(f"healthy: {path} is writable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
