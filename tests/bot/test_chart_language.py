"""The /mood chart in the reader's language: Chinese words drawn with a font that has them (never empty boxes), and
English words, with a hint in the log, where no installed font has them."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import date, timedelta
from functools import partial

import pytest
from matplotlib import font_manager

from bot.views import chart_fonts, charts
from bot.views.charts import ChartWords, render_mood_chart
from bot.views.mood import chart_title
from storage import DayMood

TODAY = date(2026, 11, 22)
DAYS = [DayMood((TODAY - timedelta(days=offset)).isoformat(), 2, 0.6 - offset / 5, 1, 0, 1) for offset in range(5)]


def chart(language: str, period: int = 7) -> bytes:
    first = TODAY - timedelta(days=period - 1)
    return render_mood_chart(DAYS, first, TODAY, title=partial(chart_title, True, period), language=language)


@pytest.fixture
def fresh_fonts() -> Iterator[None]:
    """Font look-ups and the one-time hint start afresh, and leave no trace for other tests."""
    for cached in (chart_fonts._family_covering, chart_fonts.hint_missing_font):
        cached.cache_clear()
    yield
    for cached in (chart_fonts._family_covering, chart_fonts.hint_missing_font):
        cached.cache_clear()


@pytest.mark.parametrize("period", [7, 90])
def test_a_chinese_chart_draws_every_character_with_a_font_that_has_it(period: int, fresh_fonts: None) -> None:
    words, fonts = charts.readable_words("zh", TODAY, title=partial(chart_title, True, period), window=3)
    assert words.language == "zh" and words.title == "本群的心情 · 最近 7 天".replace("7", str(period))
    assert len(fonts) == 2, f"no font with Chinese characters found: install {chart_fonts.FONT_PACKAGE} (apt-get)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph … missing from font(s)" for every empty box
        chinese, english = chart("zh", period), chart("en", period)
    assert chinese != english


def test_the_chinese_words_are_really_drawn(monkeypatch: pytest.MonkeyPatch, fresh_fonts: None) -> None:
    drawn = chart("zh")
    blank = ChartWords("zh", *(" " for _ in fields(ChartWords)[1:]))
    monkeypatch.setattr(charts, "chart_words", lambda language, **_: replace(blank, language=language))
    assert chart("zh") != drawn


def test_without_a_chinese_font_the_chart_is_english_and_the_log_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_fonts: None
) -> None:
    base = font_manager.findfont(font_manager.FontProperties(family=chart_fonts.BASE_FONT))
    monkeypatch.setattr(chart_fonts, "font_files", lambda: {chart_fonts.BASE_FONT: base})  # every other font hidden
    with caplog.at_level(logging.WARNING, logger="bot.views.chart_fonts"), warnings.catch_warnings():
        warnings.simplefilter("error")
        hidden = [chart("zh"), chart("zh")]
    english = chart("en")
    assert hidden == [english, english], "English words, no empty boxes"
    hints = [record.getMessage() for record in caplog.records if "fonts-wqy-microhei" in record.getMessage()]
    assert len(hints) == 1, "said once, not on every chart"
    words, _ = charts.readable_words("zh", TODAY, title=partial(chart_title, False, 7), window=3)
    assert words.title == "Your mood · the last 7 days"


def test_english_needs_no_other_font(fresh_fonts: None) -> None:
    assert chart_fonts.families_for("Your mood · the last 7 days ▲▼ −1") == (chart_fonts.BASE_FONT,)
    assert chart_fonts.bold_weight((chart_fonts.BASE_FONT,)) == "bold"
