"""``moodbot labels``: the messages people gave a mood themselves ("Fix a mood"), as a ``text<TAB>label`` file that
``moodbot eval`` reads, for improving the mood analysis.

The file holds people's own words: it is created owner-only (0600), and what is done with it is the responsibility
of whoever runs the bot (``/privacy`` tells people their corrections may be used this way; ``/forget`` deletes them
from the database, not from files written before).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bot.cli.evaluation import GOLD_LABELS
from bot.config import Config
from storage import CorrectedExample, Store

HEADER = "text\tlabel"
CODES = {label: code for code, label in GOLD_LABELS.items()}  # positive 1, negative 0, neutral 2
# Tabs and every character Python reads as a line break (``str.splitlines``): each would break a row.
_ROW_BREAKERS = re.compile(r"[\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def tsv_row(example: CorrectedExample) -> str:
    """``text<TAB>code`` on one line: the text's tabs and line breaks become spaces."""
    return f"{_ROW_BREAKERS.sub(' ', example.text)}\t{CODES[example.label]}"


def write_private(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` readable by its owner only (0600), an existing file's mode included."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # the mode given to os.open only applies to a file it creates
    with open(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(content)


async def write_labels(config: Config, out: Path, user_id: int | None = None) -> int:
    """Write every corrected message (only ``user_id``'s unless None) to ``out``; print and return how many."""
    database = config.storage.database
    if not database.exists():
        raise FileNotFoundError(f"no database at {database}")
    async with await Store.open(database) as store:
        examples = await store.corrected_examples(user_id=user_id)
    write_private(out, "".join(f"{line}\n" for line in [HEADER, *map(tsv_row, examples)]))
    print(f"wrote {len(examples)} labelled message{'s' if len(examples) != 1 else ''} to {out}")
    return len(examples)
