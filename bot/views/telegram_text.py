"""Telegram's rules for text, in one place: how long a message or a caption may be, and the fallback from HTML.

Telegram counts lengths in UTF-16 code units, not in characters: an emoji outside the Basic Multilingual Plane (😄,
🌱) counts twice. Every length here is measured that way, so a text of 3,000 emoji is split, not refused.
"""

from __future__ import annotations

import html
import re

TELEGRAM_TEXT_LIMIT = 4096  # a message's text
TELEGRAM_CAPTION_LIMIT = 1024  # a photo's or a document's caption
ELLIPSIS = "…"

_TAG = re.compile(r"<[^>]*>")


def telegram_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: most emoji count twice)."""
    return len(text.encode("utf-16-le")) // 2


def fitting_prefix(text: str, limit: int) -> str:
    """The longest beginning of ``text`` that is at most ``limit`` UTF-16 code units long (never half a character)."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


def shorten(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` when it fits in ``limit``; else its beginning with ``ellipsis`` appended, together within ``limit``."""
    if telegram_length(text) <= limit:
        return text
    return fitting_prefix(text, limit - telegram_length(ellipsis)) + ellipsis


def split_for_telegram(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into pieces Telegram accepts, preferring paragraph, line and word boundaries."""
    pieces: list[str] = []
    rest = text
    while telegram_length(rest) > limit:
        window = fitting_prefix(rest, limit)
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < len(window) // 2:  # no boundary in the second half: cut mid-word rather than make tiny pieces
            cut = len(window)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def photo_caption(text: str, limit: int = TELEGRAM_CAPTION_LIMIT) -> tuple[str, str | None]:
    """``(caption, text to send separately)``: the whole text as the caption when it fits, else its first line
    (shortened if need be) as the caption and the whole text as a message of its own."""
    if telegram_length(text) <= limit:
        return text, None
    return shorten(text.split("\n", 1)[0], limit), text


def html_to_plain(text: str) -> str:
    """The words of Telegram-HTML ``text`` without markup (tags dropped, entities such as ``&lt;`` decoded)."""
    return html.unescape(_TAG.sub("", text))
