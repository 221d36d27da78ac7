"""Explicit crisis phrases, English and Chinese: a floor under the care question's answer.

A 0.5B model's yes/no answer to "is this person thinking of suicide or self-harm?" is a weak signal (see README,
Care), so a message that says it in so many words is flagged whatever the model answers. The phrases are specific
on purpose: figures of speech ("dying to see it", "累死了", "笑死我了") must not match.
"""

from __future__ import annotations

import re

_ENGLISH = (
    r"\b(kill|killing|hurt|hurting|harm|harming|cut|cutting) myself\b",
    r"\bsuicid(e|al)\b",
    r"\bend (my|it all|my own) li(fe|ves)\b",
    r"\bend it all\b",
    r"\b(want|wanted|wanna|going) to die\b(?! of)",
    r"\bdon'?t want to (live|be alive|exist)\b",
    r"\b(no|any) (reason|point) (to|in) (live|living|going on)\b",
    r"\bbetter off (if i were |)dead\b",
    r"\bself[- ]harm\b",
    r"\bgoodbye (letter|note)\b",
    r"\boverdose\b",
)
_CHINESE = (
    "自杀", "自殺", "不想活", "活不下去", "想死", "去死吧我", "结束生命", "結束生命", "结束自己", "轻生", "輕生",
    "割腕", "割伤了自己", "割傷了自己", "伤害自己", "傷害自己", "跳楼", "跳樓", "安眠药", "安眠藥", "遗书", "遺書",
    "没有活下去", "沒有活下去", "如果我死了",
)
_PATTERN = re.compile("|".join(_ENGLISH) + "|" + "|".join(map(re.escape, _CHINESE)), re.IGNORECASE)

FLOOR = 0.99  # the care probability given to a message with an explicit phrase


def has_crisis_phrase(text: str) -> bool:
    """True when ``text`` says in so many words that the writer may hurt or kill themselves."""
    return _PATTERN.search(text) is not None


def with_phrase_floor(text: str, care: float) -> float:
    """The model's care probability, raised to :data:`FLOOR` when the message has an explicit crisis phrase."""
    return max(care, FLOOR) if has_crisis_phrase(text) else care
