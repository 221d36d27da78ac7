"""The message catalogues against the code: every text the bot says is translated, with the same placeholders and
tags, and ``bot/locale/messages.pot`` is what ``pybabel extract`` makes of the code today. Extracted here with Babel's
own API and ``babel.cfg``, the same configuration ``pybabel extract -F babel.cfg`` reads."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES, LOCALE_DIR, compile_catalogue, ngettext_for, translator

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [language for language in LANGUAGES if language != DEFAULT_LANGUAGE]
# {name} and {name!r:>4} (str.format), %(name)s (printf style).
_BRACES = re.compile(r"\{(\w*)(?:![rsa])?(?::[^{}]*)?\}")
_PERCENT = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
_TAG = re.compile(r"</?(\w+)[^>]*>")


def extracted() -> dict[str | tuple[str, str], list[str]]:
    """Every message marked in bot/, as ``pybabel extract -F babel.cfg bot`` finds it (plural ones as (singular,
    plural)), with the files it is in."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config, "babel.cfg")
    found: dict[str | tuple[str, str], list[str]] = {}
    for filename, _, message, _, _ in extract_from_dir(ROOT / "bot", method_map, options_map):
        key = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(key, []).append(filename)
    return found


EXTRACTED = extracted()


def catalogue(language: str) -> Catalog:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "moodbot.po").open("rb") as po:
        return read_po(po, locale=language)


def translations(message: Message) -> Iterator[str]:
    yield from (message.string if isinstance(message.string, tuple | list) else (message.string,))


def placeholders(text: str) -> Counter[str]:
    braces = [f"{{{name}}}" for name in _BRACES.findall(text)]
    return Counter(braces + [f"%({name})" for name in _PERCENT.findall(text)])


def tags(text: str) -> Counter[str]:
    return Counter(_TAG.findall(text))


def test_extraction_finds_the_bots_texts() -> None:
    assert len(EXTRACTED) > 100
    assert EXTRACTED["Cancel"] == ["views/texts.py"]
    assert ("{count} msg", "{count} msgs") in EXTRACTED  # ngettext_for's 2nd and 3rd arguments
    assert "EEE d MMM" in EXTRACTED and "daily average" in EXTRACTED  # the date patterns and the chart's words


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_text_is_translated(language: str) -> None:
    messages = catalogue(language)
    problems = []
    for key in EXTRACTED:
        msgid = key[0] if isinstance(key, tuple) else key
        message = messages.get(msgid)
        if message is None:
            problems.append(("missing", msgid))
        elif message.fuzzy or not all(translations(message)):
            problems.append(("fuzzy or empty", msgid))
        elif message.pluralizable != isinstance(key, tuple):
            problems.append(("plural forms differ from the code's", msgid))
    assert problems == [], f"bot/locale/{language}: translate these (pybabel update, see README)"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_placeholders_and_tags(language: str) -> None:
    wrong = []
    for message in catalogue(language):
        if not message.id:
            continue
        # Plural forms carry the count the plural msgid has (a singular msgid may leave it out: "the day before").
        source = message.id[1] if message.pluralizable else message.id
        for text in translations(message):
            if text and (placeholders(text) != placeholders(source) or tags(text) != tags(source)):
                wrong.append((source, text))
    assert wrong == []


def test_the_template_is_what_the_code_holds_today() -> None:
    with (LOCALE_DIR / "messages.pot").open("rb") as pot:
        template = {message.id if isinstance(message.id, str) else tuple(message.id) for message in read_po(pot)}
    template.discard("")
    assert template == set(EXTRACTED), "stale: run pybabel extract (README, Languages)"


def test_the_checks_catch_what_they_are_for() -> None:
    assert placeholders("Hi {name}, %(count)d {x!r:>4}") == Counter({"{name}": 1, "%(count)": 1, "{x}": 1})
    assert placeholders("你好，{name}") != placeholders("Hi {nam}") and tags("<b>x</b>") != tags("<i>x</i>")


def test_a_missing_or_unfinished_translation_falls_back_to_english(tmp_path: Path) -> None:
    assert translator("zh").gettext("A text no catalogue has") == "A text no catalogue has"
    assert ngettext_for("zh", "{count} unknown thing", "{count} unknown things", 2) == "2 unknown things"
    assert translator("xx").gettext("Cancel") == "Cancel"  # a language without a catalogue
    po = tmp_path / "moodbot.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        '"Plural-Forms: nplurals=1; plural=0;\\n"\n\n'
        'msgid "Cancel"\nmsgstr "取消"\n\nmsgid "Nothing was deleted."\nmsgstr ""\n\n'
        '#, fuzzy\nmsgid "Say hello"\nmsgstr "你好"\n',
        encoding="utf-8",
    )
    compiled = compile_catalogue(po, "zh")
    assert compiled.gettext("Cancel") == "取消"
    assert compiled.gettext("Nothing was deleted.") == "Nothing was deleted."  # empty
    assert compiled.gettext("Say hello") == "Say hello"  # fuzzy: not trusted yet
