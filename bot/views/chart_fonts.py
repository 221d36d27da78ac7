"""Which fonts can draw a chart's text: matplotlib's own DejaVu Sans, plus, for characters it lacks (Chinese), an
installed font that has them.

Matplotlib falls back from one family to the next glyph by glyph, so a chart is drawn with ``("DejaVu Sans", CJK
font)``: Latin letters, digits and symbols look as in English, Chinese comes from the second font. The fonts below
are what Debian and Ubuntu servers get from their packages (``fonts-noto-cjk``, ``fonts-wqy-microhei``,
``fonts-wqy-zenhei``, ``fonts-droid-fallback``, ``fonts-arphic-uming``); any other installed font that has the
characters will do too. Matplotlib caches its list of fonts, so fonts installed after that cache was written are
looked for among the system's font files as well, and added.
"""

from __future__ import annotations

import logging
import threading
from functools import cache

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

logger = logging.getLogger(__name__)

BASE_FONT = "DejaVu Sans"  # ships with matplotlib: always there
# Preferred, in this order, when installed (family names as matplotlib reads them).
CJK_FONT_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
    "Noto Sans CJK JP", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN",
)
FONT_PACKAGE = "fonts-wqy-microhei"  # the smallest Debian/Ubuntu package with Simplified Chinese (about 5 MB)
_LOCK = threading.Lock()  # charts are drawn in worker threads; the font list is looked through once at a time


def families_for(text: str) -> tuple[str, ...] | None:
    """The font families to draw ``text`` with: DejaVu Sans, and a font for the characters it lacks when there are
    any; None when no installed font has them all."""
    missing = frozenset(char for char in text if not char.isspace() and ord(char) not in _charmap(_base_font_file()))
    if not missing:
        return (BASE_FONT,)
    with _LOCK:
        family = _family_covering(missing)
    return None if family is None else (BASE_FONT, family)


def bold_weight(families: tuple[str, ...]) -> str:
    """"bold" when every one of ``families`` has a bold face, else "normal": a title half bold (digits) and half
    regular (WenQuanYi Micro Hei has no bold) looks like a mistake."""
    bold = {entry.name for entry in font_manager.fontManager.ttflist if _is_bold(entry.weight)}
    return "bold" if all(family in bold for family in families) else "normal"


def _is_bold(weight: int | str) -> bool:
    return weight == "bold" or (isinstance(weight, int) and weight >= 600)


@cache
def hint_missing_font(language: str) -> None:
    """Log, once per language, that charts in ``language`` are drawn in English for want of a font."""
    logger.warning(
        "no installed font has the characters of the /mood chart in %r: it is drawn with English words instead. "
        "Install one, e.g. `apt-get install %s` (Debian/Ubuntu), and restart moodbot", language, FONT_PACKAGE,
    )


def font_files() -> dict[str, str]:
    """Installed fonts, family name → file: matplotlib's list, and system fonts it doesn't know yet."""
    files: dict[str, str] = {}
    for entry in font_manager.fontManager.ttflist:
        files.setdefault(entry.name, entry.fname)
    known = set(files.values())
    for path in font_manager.findSystemFonts():
        if path not in known:
            try:
                files.setdefault(FT2Font(path).family_name, path)
            except (OSError, RuntimeError, ValueError):  # a broken or unsupported file: not a candidate
                logger.debug("cannot read font file %s", path)
    return files


@cache
def _family_covering(characters: frozenset[str]) -> str | None:
    """An installed family with every one of ``characters`` (a preferred one first), made known to matplotlib."""
    files = font_files()
    preferred = [name for name in CJK_FONT_FAMILIES if name in files]
    others = sorted(name for name in files if name not in CJK_FONT_FAMILIES)
    for name in preferred + others:
        if all(ord(char) in _charmap(files[name]) for char in characters):
            if name not in {entry.name for entry in font_manager.fontManager.ttflist}:
                font_manager.fontManager.addfont(files[name])  # installed after matplotlib's font cache was written
            return name
    return None


@cache
def _charmap(path: str) -> frozenset[int]:
    """The code points a font file has glyphs for (its first face)."""
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@cache
def _base_font_file() -> str:
    return font_manager.findfont(font_manager.FontProperties(family=BASE_FONT), fallback_to_default=False)
