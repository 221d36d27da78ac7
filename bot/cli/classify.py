"""``moodbot classify TEXT``: the label and score of one message."""

from __future__ import annotations

from bot.config import Config
from engine import create_engine


async def classify_text(config: Config, text: str) -> None:
    """Print ``label score`` for one message."""
    engine = create_engine(config.engine)
    await engine.start()
    try:
        sentiment = await engine.classify(text)
    finally:
        await engine.close()
    print(f"{sentiment.label} {sentiment.score:+.3f}")
