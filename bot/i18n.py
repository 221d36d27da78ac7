"""The bot's languages: which one a person gets, and their texts from the gettext catalogues in ``bot/locale``.

Texts are written in English in the code, marked with ``_()`` (or ``translator(language).gettext``), extracted with
Babel (``pybabel extract -F babel.cfg``, see README) into ``bot/locale/messages.pot`` and translated in one ``.po``
file per language. The ``.po`` files are compiled in memory with Babel when first used, so there is no build step and
no compiled ``.mo`` file to drift from its source; a message missing from a catalogue falls back to English.

Placeholders are written ``{name}`` and filled with ``str.format`` after translation, so a translation may move
them; dates are formatted by Babel with a CLDR pattern that is itself a translatable message (``format_day``).
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "moodbot"
LANGUAGES = ("en", "zh")  # English (the source texts) and Simplified Chinese
DEFAULT_LANGUAGE = "en"
# The locale environment variables that name the language of messages, strongest first (POSIX).
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


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


def locale_language(environ: Mapping[str, str]) -> str | None:
    """The supported language the locale environment names (``LC_ALL``, else ``LC_MESSAGES``, else ``LANG``:
    ``zh_CN.UTF-8`` is Chinese), or None (unset, ``C``, ``POSIX`` or a language the bot doesn't speak)."""
    for name in LOCALE_VARIABLES:
        value = environ.get(name, "").strip()
        if value:  # the first one set decides, as for every program (LC_ALL=C means C, whatever LANG says)
            return normalise_language(value.split(".", 1)[0].split("@", 1)[0])
    return None


def compile_catalogue(path: Path, language: str) -> gettext.GNUTranslations:
    """The translations in the ``.po`` file at ``path``, compiled in memory; fuzzy and empty entries are left out,
    so their English text shows instead."""
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@cache
def translator(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` ('en', 'zh'); English (the source texts) for anything else."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LANGUAGE or not path.exists():
        return gettext.NullTranslations()
    return compile_catalogue(path, language)


def translate(language: str, message: str, /, **values: object) -> str:
    """``message`` in ``language`` with its ``{name}`` placeholders filled in from ``values``."""
    text = translator(language).gettext(message)
    return text.format(**values) if values else text


def ngettext_for(language: str, singular: str, plural: str, count: int, /, **values: object) -> str:
    """The form of ``singular``/``plural`` that ``count`` takes in ``language`` (English where missing), with
    ``{count}`` and the other placeholders filled in."""
    return translator(language).ngettext(singular, plural, count).format(count=count, **values)


def format_day(day: date, pattern: str, language: str) -> str:
    """``day`` written with the CLDR date ``pattern`` (an English msgid such as ``"EEE d MMM"``), translated first:
    each language orders day, month and weekday its own way (``Fri 20 Nov``, ``11月20日 周五``)."""
    return format_date(day, format=translate(language, pattern), locale=language)


def _(message: str) -> str:
    """Mark ``message`` for extraction where it is translated later (module-level constants); returns it as is."""
    return message
