"""Telegram's ``parse_mode=HTML``: the plain text and entities a message keeps, or the 400 Telegram answers."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

from tests.support.fakebotapi.wire import ApiError

# Telegram's HTML tags → entity types.
_HTML_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "code": "code", "pre": "pre",
    "a": "text_link", "tg-spoiler": "spoiler", "blockquote": "blockquote",
}


def _utf16_length(text: str) -> int:
    # Entity offsets and lengths count UTF-16 code units, as on Telegram.
    return len(text.encode("utf-16-le")) // 2


class _TelegramHtml(HTMLParser):
    """Text and entities of a ``parse_mode=HTML`` message; ``error`` says why Telegram would refuse it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.text = ""
        self.entities: list[dict[str, Any]] = []
        self.open: list[tuple[str, int, dict[str, Any]]] = []
        self.error: str | None = None

    def fail(self, why: str) -> None:
        self.error = self.error or why

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_ENTITY_TYPES:
            self.fail(f'Unsupported start tag "{tag}"')
            return
        entity: dict[str, Any] = {"type": _HTML_ENTITY_TYPES[tag]}
        if tag == "a":
            entity["url"] = dict(attrs).get("href") or ""
        self.open.append((tag, _utf16_length(self.text), entity))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1][0] != tag:
            self.fail(f'Unmatched end tag "{tag}"')
            return
        _, offset, entity = self.open.pop()
        length = _utf16_length(self.text) - offset
        if length:
            self.entities.append({**entity, "offset": offset, "length": length})

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self.fail("Unsupported start tag or bare '<'/'>': escape them as &lt; and &gt;")
        self.text += data

    def handle_entityref(self, name: str) -> None:
        self.text += html.unescape(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.text += html.unescape(f"&#{name};")


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """``(plain text, entities)`` of Telegram-HTML ``text``, or ApiError 400 "can't parse entities"."""
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    if parser.open:
        parser.fail(f"Can't find end tag corresponding to start tag \"{parser.open[-1][0]}\"")
    if parser.error:
        raise ApiError(400, f"Bad Request: can't parse entities: {parser.error}")
    parser.entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return parser.text, parser.entities
