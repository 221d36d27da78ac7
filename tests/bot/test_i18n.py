"""The language rules and the texts' formatting in each language, without Telegram: codes and locales, dates,
plurals, the /mood text, and `moodbot chat` in Chinese."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.cli.terminal import TERMINAL_HELP, chat, terminal_language
from bot.config import Config, StorageConfig
from bot.i18n import choose_language, locale_language, normalise_language, translate
from bot.views import texts
from bot.views.mood import mood_summary_text, short_date
from bot.views.weekly import WeekNumbers, weekly_summary_text
from storage import DayMood
from storage.mood import summarize
from tests.support.fakeengine import ScriptedEngine

TODAY = date(2026, 11, 22)  # a Sunday


@pytest.mark.parametrize(
    ("code", "language"),
    [("zh", "zh"), ("zh-hans", "zh"), ("zh-CN", "zh"), ("zh_SG", "zh"), ("zh-Hant-TW", "zh"), ("en-GB", "en"),
     ("fr", None), ("", None), (None, None)],
)
def test_telegram_codes(code: str | None, language: str | None) -> None:
    assert normalise_language(code) == language


def test_the_choice_then_telegram_then_the_default() -> None:
    assert choose_language("en", "zh-hans", "zh") == "en"
    assert choose_language(None, "zh-hans", "en") == "zh"
    assert choose_language(None, "fr", "zh") == "zh" and choose_language(None, None, "en") == "en"


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LC_MESSAGES": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LC_ALL": "en_GB.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "en"),
        ({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, None),  # LC_ALL decides, and C is no language
        ({"LANG": "de_DE@euro"}, None),
        ({}, None),
    ],
)
def test_the_terminals_locale(environ: dict[str, str], language: str | None) -> None:
    assert locale_language(environ) == language


def test_moodbot_chat_takes_lang_then_the_locale_then_the_default() -> None:
    assert terminal_language("en", {"LANG": "zh_CN.UTF-8"}, "zh") == "en"
    assert terminal_language(None, {"LANG": "zh_CN.UTF-8"}, "en") == "zh"
    assert terminal_language(None, {"LANG": "C.UTF-8"}, "zh") == "zh"
    assert build_parser().parse_args(["chat", "--lang", "zh"]).lang == "zh"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chat", "--lang", "fr"])


async def test_moodbot_chat_in_chinese(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(path=str(tmp_path / "moodbot.db")))
    out = io.StringIO()
    stdin = io.StringIO("a good day\n/mood\n/forget\n")
    await chat(config, engine=ScriptedEngine(), stdin=stdin, stdout=out, language="zh")
    lines = out.getvalue().splitlines()
    assert lines[0] == translate("zh", TERMINAL_HELP)
    assert "[心情：积极 +0.80]" in out.getvalue() and "你最近 7 天的心情 😄" in out.getvalue()
    assert lines[-2] == "you> " + texts.forget_text(2, "zh")  # the message and the reply
    assert "（2 条消息）" in lines[-2]


def test_dates_and_plurals_in_each_language() -> None:
    assert short_date(date(2026, 11, 20), TODAY) == "Fri 20 Nov"
    assert short_date(date(2026, 11, 20), TODAY, "zh") == "11月20日 周五"
    assert short_date(date(2025, 12, 20), TODAY, "zh") == "2025年12月20日 周六"
    assert texts.forget_text(1) == texts.forget_text(1, "en") and "(1 message)" in texts.forget_text(1)
    assert "(2 messages)" in texts.forget_text(2)


def test_the_weekly_summary_dates_in_chinese() -> None:
    week = WeekNumbers(date(2026, 11, 16), TODAY, 0, None, None, None, None)
    assert weekly_summary_text(week, "zh").splitlines()[0] == "🗓 你的一周 · 11月16日 周一 – 11月22日 周日"


def test_the_mood_text_in_chinese() -> None:
    days = [DayMood("2026-11-20", 2, 0.8, 2, 0, 0), DayMood("2026-11-22", 1, -0.6, 0, 0, 1)]
    text = mood_summary_text(summarize(days), 7, TODAY, language="zh")
    assert text.splitlines()[:2] == ["你最近 7 天的心情 🙂", "消息：3 条 · 平均分 +0.33（范围 −1 到 +1）"]
    assert "最好的一天：11月20日 周五 😄 +0.80 · 最差的一天：11月22日 周日 😢 -0.60" in text
    assert mood_summary_text(summarize([]), None, TODAY, language="zh").startswith("迄今为止还没有记录")
