"""The "Fix a mood" list: a person's last messages, each shortened, with the mood /mood counts for it and whose it
is (theirs or the model's), and the faces of the buttons that set it; in the reader's language. Pure and
synchronous."""

from __future__ import annotations

from collections.abc import Sequence

from bot.i18n import DEFAULT_LANGUAGE, _, translate
from bot.views import texts
from bot.views.telegram_text import shorten
from storage import LabelledMessage

FIX_LIST_SIZE = 5  # messages offered at a time
PREVIEW_LIMIT = 48  # UTF-16 code units of a message shown in the list
FACES = {"positive": "🙂", "neutral": "😐", "negative": "🙁"}  # one per label of storage.LABELS
LABEL_WORDS = {"positive": _("positive"), "neutral": _("neutral"), "negative": _("negative")}  # the labels, said


def preview(text: str, limit: int = PREVIEW_LIMIT) -> str:
    """A message on one line, cut to ``limit`` UTF-16 code units with an ellipsis (never half a character)."""
    return shorten(" ".join(text.split()), limit)


def label_word(label: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A label of ``storage.LABELS`` as a word in ``language``."""
    return translate(language, LABEL_WORDS[label])


def mood_text(message: LabelledMessage, language: str = DEFAULT_LANGUAGE) -> str:
    """``🙂 positive (set by you)``, ``🙁 negative (my guess)`` or ``not rated yet``."""
    if message.person_label is not None:
        label = message.person_label
        return translate(language, texts.FIX_MOOD_YOURS, face=FACES[label], label=label_word(label, language))
    if message.model_label is not None:
        label = message.model_label
        return translate(language, texts.FIX_MOOD_MODELS, face=FACES[label], label=label_word(label, language))
    return translate(language, texts.FIX_MOOD_NONE)


def fix_list_text(messages: Sequence[LabelledMessage], language: str = DEFAULT_LANGUAGE) -> str:
    """The list's text: a header naming the group the messages were written in (if any), then one numbered line per
    message, oldest first; the numbers match the buttons' (``face_button``)."""
    if not messages:
        return translate(language, texts.FIX_LIST_EMPTY_TEXT)
    title = messages[0].chat_title
    if title:
        header = translate(language, texts.FIX_LIST_GROUP_HEADER, chat=texts.quoted_title(title, language))
    else:
        header = translate(language, texts.FIX_LIST_HEADER)
    lines = [
        translate(
            language, texts.FIX_LIST_LINE, number=number, preview=preview(message.text),
            mood=mood_text(message, language),
        )
        for number, message in enumerate(messages, start=1)
    ]
    return "\n".join([header, "", *lines])


def face_button(number: int, label: str) -> str:
    """The text of the button that gives message ``number`` of the list ``label``: ``2 🙁``."""
    return f"{number} {FACES[label]}"


def saved_text(label: str, language: str = DEFAULT_LANGUAGE) -> str:
    """The short answer to a press that set ``label``."""
    return translate(language, texts.FIX_SAVED_TEXT, face=FACES[label], label=label_word(label, language))
