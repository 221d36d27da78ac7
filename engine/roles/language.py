"""Which script a message is written in: the analyst calibrates per language, the bot answers in it."""

from __future__ import annotations

from typing import Literal

Script = Literal["en", "zh"]


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def script_of(text: str) -> Script:
    """"zh" when Chinese characters carry the message, else "en" (the fallback for every other language).

    One Chinese character carries about as much as a short Latin word, so three Latin letters weigh as one.
    """
    cjk = sum(1 for char in text if _is_cjk(char))
    latin = sum(1 for char in text if char.isascii() and char.isalpha())
    return "zh" if cjk and cjk * 3 >= latin else "en"
