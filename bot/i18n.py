"""The bot's languages: which one a person gets, and their texts from the gettext catalogues in ``bot/locale``.

Texts are written in English in the code, marked with ``_()`` (or ``translator(language).gettext``), extracted with
Babel (``pybabel extract``, see README) into ``bot/locale/messages.pot`` and translated in one ``.po`` file per
language. The ``.po`` files are compiled in memory with Babel when first used, so there is no build step and no
compiled ``.mo`` file to drift from its source; a message missing from a catalogue falls back to English.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "moodbot"
LANGUAGES = ("en", "zh")  # English (the source texts) and Simplified Chinese
DEFAULT_LANGUAGE = "en"


def normalise_language(code: str | None) -> str | None:
    """The supported language a Telegram ``language_code`` (or a stored choice) means, or None.

    ``zh``, ``zh-hans``, ``zh-CN``, ``zh_SG``, ... are Chinese; ``en``, ``en-GB``, ... English. Traditional
    Chinese codes are taken as Chinese too: Simplified is far closer for its readers than English.
    """
    if not code:
        return None
    primary = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return primary if primary in LANGUAGES else None


def choose_language(stored: str | None, telegram_code: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The person's language: their stored choice, else Telegram's ``language_code``, else ``default``."""
    return normalise_language(stored) or normalise_language(telegram_code) or normalise_language(default) or "en"


@cache
def translator(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` ('en', 'zh'); English (the source texts) for anything else."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LANGUAGE or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def gettext_for(language: str, message: str) -> str:
    """``message`` in ``language`` (English where the catalogue lacks it)."""
    return translator(language).gettext(message)


def _(message: str) -> str:
    """Mark ``message`` for extraction where it is translated later (module-level constants); returns it as is."""
    return message
