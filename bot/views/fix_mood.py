"""The "Fix a mood" list: a person's last messages, each shortened, with the mood /mood counts for it and whose it
is (theirs or the model's), and the faces of the buttons that set it. Pure and synchronous."""

from __future__ import annotations

from collections.abc import Sequence

from bot.views import texts
from bot.views.telegram_text import shorten
from storage import LabelledMessage

FIX_LIST_SIZE = 5  # messages offered at a time
PREVIEW_LIMIT = 48  # UTF-16 code units of a message shown in the list
FACES = {"positive": "🙂", "neutral": "😐", "negative": "🙁"}  # one per label of storage.LABELS


def preview(text: str, limit: int = PREVIEW_LIMIT) -> str:
    """A message on one line, cut to ``limit`` UTF-16 code units with an ellipsis (never half a character)."""
    return shorten(" ".join(text.split()), limit)


def mood_text(message: LabelledMessage) -> str:
    """``🙂 positive (set by you)``, ``🙁 negative (my guess)`` or ``not rated yet``."""
    if message.person_label is not None:
        return texts.FIX_MOOD_YOURS.format(face=FACES[message.person_label], label=message.person_label)
    if message.model_label is not None:
        return texts.FIX_MOOD_MODELS.format(face=FACES[message.model_label], label=message.model_label)
    return texts.FIX_MOOD_NONE


def fix_list_text(messages: Sequence[LabelledMessage]) -> str:
    """The list's text: a header naming the group the messages were written in (if any), then one numbered line per
    message, oldest first; the numbers match the buttons' (``face_button``)."""
    if not messages:
        return texts.FIX_LIST_EMPTY_TEXT
    title = messages[0].chat_title
    header = texts.FIX_LIST_GROUP_HEADER.format(chat=f"“{title}”") if title else texts.FIX_LIST_HEADER
    lines = [
        texts.FIX_LIST_LINE.format(number=number, preview=preview(message.text), mood=mood_text(message))
        for number, message in enumerate(messages, start=1)
    ]
    return "\n".join([header, "", *lines])


def face_button(number: int, label: str) -> str:
    """The text of the button that gives message ``number`` of the list ``label``: ``2 🙁``."""
    return f"{number} {FACES[label]}"


def saved_text(label: str) -> str:
    """The short answer to a press that set ``label``."""
    return texts.FIX_SAVED_TEXT.format(face=FACES[label], label=label)
