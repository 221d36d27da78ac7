"""Keep the classifier's verdict and the system prompts out of what the companion says.

The reply prompt never contains the verdict, but a small model can still invent "Sentiment: negative" lines or
recite its instructions. :func:`visible_reply` drops such lines and holds back a trailing partial line while it
could still turn into one, so text already streamed to a user never has to be taken back.
"""

from __future__ import annotations

import re

from engine.roles.prompts import ANALYST_SYSTEM_PROMPT, COMPANION_SYSTEM_PROMPTS

VERDICT_WORDS = (
    "sentiment", "label", "score", "classification", "mood score", "emotion label",
    "情感", "情绪", "分类", "标签", "得分",
)
_VERDICT_LINE = re.compile(
    r"^[\s*_#>\-`\[(]*(" + "|".join(re.escape(w) for w in VERDICT_WORDS) + r")[^:：\n]{0,20}[:：]",
    re.IGNORECASE,
)
_DECORATION = " \t*_#>-`[("
_MIN_ECHO_CHARS = 20
_PROMPT_TEXT = "\n".join([ANALYST_SYSTEM_PROMPT, *COMPANION_SYSTEM_PROMPTS.values()]).lower()


def is_forbidden_line(line: str) -> bool:
    """True for a whole line that states a verdict or recites a system prompt."""
    if _VERDICT_LINE.match(line):
        return True
    normalized = line.strip(_DECORATION).strip().lower()
    return len(normalized) >= _MIN_ECHO_CHARS and normalized in _PROMPT_TEXT


def _might_become_forbidden(partial: str) -> bool:
    normalized = partial.lstrip(_DECORATION).lower()
    if not normalized.strip():
        return bool(partial)  # only decoration or spaces so far: wait for more
    if len(normalized) < 30 and any(w.startswith(normalized) or normalized.startswith(w) for w in VERDICT_WORDS):
        return True
    return normalized.strip() in _PROMPT_TEXT


def visible_reply(raw: str, *, final: bool) -> str:
    """The part of the model's raw text that may be shown now; with ``final`` the whole reply, cleaned."""
    *complete, partial = raw.split("\n")
    kept = [line for line in complete if not is_forbidden_line(line)]
    if final:
        if not is_forbidden_line(partial):
            kept.append(partial)
        return "\n".join(kept).strip()
    shown = "\n".join(kept)
    if complete:
        shown += "\n"
    if not _might_become_forbidden(partial):
        shown += partial
    return shown.lstrip()
