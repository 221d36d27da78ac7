"""The ``/mood`` chart: a PNG of the daily mood over a period, drawn with matplotlib.

``render_mood_chart`` is pure and synchronous (data in, PNG bytes out) and CPU-bound (~0.1–0.3 s), so the bot
calls it off the event loop with ``await asyncio.to_thread(render_mood_chart, ...)``. It builds a
``matplotlib.figure.Figure`` and an Agg canvas directly and never touches ``pyplot``: no global figure registry,
no GUI backend, no shared state between calls, so charts can be drawn from several threads at once.

What the chart shows, over every day from ``first_day`` to ``last_day``:

* the daily average mood score (−1 … +1) as points, coloured by mood, with a smoothed line through them
  (a rolling mean over the days that have data: 3 days, 7 when there are more than 31 such days);
* the number of messages per day as light bars on a secondary axis (right);
* a green band above 0 (positive) and a red band below 0 (negative) as background;
* the moods the person reported themselves (check-ins) as diamonds, beside the model's points.

Its words (title, legend, axes, dates) are in the reader's language, drawn with a font that has their characters
(``bot.views.chart_fonts``); where no installed font has them, the chart is drawn in English rather than with
empty boxes, and a hint names the package to install.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from datetime import date, timedelta

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import Formatter, MaxNLocator

from bot.i18n import DEFAULT_LANGUAGE, _, format_day, ngettext_for, translate
from bot.views import chart_fonts
from storage import DayMood, SelfReport

WIDTH_PX, HEIGHT_PX, DPI = 1000, 560, 100

POSITIVE_COLOUR = "#2e9d5b"
NEGATIVE_COLOUR = "#d1495b"
NEUTRAL_COLOUR = "#8a8f98"
LINE_COLOUR = "#3d5a80"
BAR_COLOUR = "#7fa7c9"
TEXT_COLOUR = "#33373d"
SELF_REPORT_EDGE = "#1f2933"
SCORE_LIMIT = 1.08  # the score axis runs from -SCORE_LIMIT to +SCORE_LIMIT, a little room around ±1
SHORT_PERIOD_DAYS = 10  # up to this many days on the axis, every day gets a labelled tick
# Translators: CLDR date patterns for the chart's date axis (d day, MMM month, y year, EEE weekday).
DAY_MONTH = _("d MMM")
# Translators: a CLDR date pattern, DAY_MONTH with the year.
DAY_MONTH_YEAR = _("d MMM y")
# Translators: a CLDR date pattern for a tick at the start of a month: the month and its year.
MONTH_YEAR = _("MMM y")
WEEKDAY = "EEE"


# A chart's title: a function of the language (so an English chart gets an English title), or a text drawn as given.
ChartTitle = str | Callable[[str], str]


@dataclass(frozen=True)
class ChartWords:
    """Every word on a chart, in one language."""

    language: str
    title: str
    daily_average: str
    trend: str
    messages_per_day: str
    you_said: str
    positive: str
    negative: str
    score_axis: str
    count_axis: str


def chart_words(language: str, *, title: ChartTitle, window: int) -> ChartWords:
    """The chart's words in ``language``: its ``title``, the legend for a trend averaged over ``window`` days and
    for the person's check-ins, the mood bands and the axes."""
    return ChartWords(
        language=language,
        title=title if isinstance(title, str) else title(language),
        daily_average=translate(language, _("daily average")),
        trend=ngettext_for(
            language, "{count}-day trend (days with messages)", "{count}-day trend (days with messages)", window
        ),
        messages_per_day=translate(language, _("messages per day")),
        you_said=translate(language, _("you said (check-in)")),
        positive=translate(language, _("positive ▲")),
        negative=translate(language, _("negative ▼")),
        score_axis=translate(language, _("mood score")),
        count_axis=translate(language, _("messages")),
    )


def rolling_mean(values: Sequence[float], window: int = 3) -> list[float]:
    """Centred rolling mean: each value averaged with its neighbours, ``window`` values wide (fewer at the ends)."""
    if window < 1:
        raise ValueError("window must be at least 1")
    before = (window - 1) // 2
    after = window - 1 - before
    smoothed = []
    for index in range(len(values)):
        neighbours = values[max(0, index - before) : index + after + 1]
        smoothed.append(sum(neighbours) / len(neighbours))
    return smoothed


def smoothing_window(days_with_data: int) -> int:
    """How many days with data the smoothed line averages over."""
    return 3 if days_with_data <= 31 else 7


def score_colour(score: float) -> str:
    """Green for a positive day, red for a negative one, grey in between (same thresholds as the 😐 face)."""
    if score >= 0.15:
        return POSITIVE_COLOUR
    if score <= -0.15:
        return NEGATIVE_COLOUR
    return NEUTRAL_COLOUR


def render_mood_chart(
    days: Sequence[DayMood], first_day: date, last_day: date, *, title: ChartTitle,
    self_reports: Sequence[SelfReport] = (), language: str = DEFAULT_LANGUAGE,
) -> bytes:
    """PNG bytes (1000×560 px) of the mood from ``first_day`` to ``last_day``; ``days`` holds the days with data,
    ``self_reports`` the person's check-ins (drawn as diamonds). Its words are in ``language``, the ``title`` too
    when it is a function of the language (a plain text is drawn as given).

    Raises ValueError when both are empty: an empty period gets the "nothing yet" text, never an empty chart.
    """
    if not days and not self_reports:
        raise ValueError("no days with data to draw")
    moods = sorted(days, key=lambda d: d.day)
    reports = sorted(self_reports, key=lambda r: r.day)
    when = [date.fromisoformat(d.day) for d in moods]
    said_when = [date.fromisoformat(r.day) for r in reports]
    x = mdates.date2num(when)
    scores = [d.average_score for d in moods]
    counts = [d.messages for d in moods]
    start, end = min([first_day, *when, *said_when]), max([last_day, *when, *said_when])
    window = smoothing_window(len(moods))
    words, fonts = readable_words(language, start, title=title, window=window)

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.075, right=0.925, top=0.83, bottom=0.13)
    scores_axis = figure.add_subplot()
    counts_axis = scores_axis.twinx()
    # Scores (points, line) in front of the bars: raise their axis and let the bars show through its background.
    scores_axis.set_zorder(counts_axis.get_zorder() + 1)
    scores_axis.patch.set_visible(False)

    span = (end - start).days + 1
    _draw_counts(counts_axis, x, counts, bar_width=0.8 * min(1.0, span / 7), words=words, fonts=fonts)
    _draw_scores(scores_axis, x, scores, words=words, fonts=fonts)
    _draw_self_reports(scores_axis, mdates.date2num(said_when), [r.score for r in reports])
    _format_date_axis(scores_axis, start, end, words.language, fonts)

    figure.suptitle(words.title, x=0.075, y=0.965, ha="left", fontsize=16, fontweight=chart_fonts.bold_weight(fonts),
                    color=TEXT_COLOUR, fontfamily=fonts)
    legend = [
        Line2D([], [], marker="o", linestyle="", markersize=8, markerfacecolor=NEUTRAL_COLOUR,
               markeredgecolor="white", label=words.daily_average),
        Line2D([], [], color=LINE_COLOUR, linewidth=2.5, label=words.trend),
        Patch(facecolor=BAR_COLOUR, alpha=0.6, label=words.messages_per_day),
    ]
    if len(moods) < 2:
        del legend[1]  # one point draws no line
    if not moods:
        legend = []
    if reports:
        legend.append(Line2D([], [], marker="D", linestyle="", markersize=7, markerfacecolor=NEUTRAL_COLOUR,
                             markeredgecolor=SELF_REPORT_EDGE, label=words.you_said))
    figure.legend(handles=legend, loc="upper left", bbox_to_anchor=(0.07, 0.915), ncols=len(legend), frameon=False,
                  prop={"family": list(fonts), "size": 10}, labelcolor=TEXT_COLOUR)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def readable_words(language: str, start: date, *, title: ChartTitle, window: int) -> tuple[ChartWords, tuple[str, ...]]:
    """The chart's words in ``language`` and the fonts that draw them; English (with a hint, once, in the log) when
    no installed font has their characters."""
    words = chart_words(language, title=title, window=window)
    week = [start + timedelta(days=offset) for offset in range(7)]  # every weekday's name, and the months' words
    dates = [format_day(day, pattern, language) for day in week for pattern in (WEEKDAY, DAY_MONTH, MONTH_YEAR)]
    fonts = chart_fonts.families_for("".join(map(str, astuple(words))) + "".join(dates))
    if fonts is None:
        chart_fonts.hint_missing_font(language)
        return chart_words(DEFAULT_LANGUAGE, title=title, window=window), (chart_fonts.BASE_FONT,)
    return words, fonts


def _draw_self_reports(axis: Axes, x: Sequence[float], scores: list[float]) -> None:
    """The person's own answers: diamonds with a dark edge, so they stand apart from the model's round points."""
    if not scores:
        return
    axis.scatter(x, scores, s=70, marker="D", c=[score_colour(s) for s in scores], edgecolors=SELF_REPORT_EDGE,
                 linewidths=1.4, zorder=6)


def _draw_scores(
    axis: Axes, x: Sequence[float], scores: list[float], *, words: ChartWords, fonts: tuple[str, ...]
) -> None:
    axis.set_ylim(-SCORE_LIMIT, SCORE_LIMIT)
    axis.axhline(0, color=NEUTRAL_COLOUR, linewidth=0.8, zorder=1)
    label_box = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}
    bands = ((0.975, "top", words.positive, POSITIVE_COLOUR), (0.025, "bottom", words.negative, NEGATIVE_COLOUR))
    for y, va, word, colour in bands:
        axis.text(0.008, y, word, transform=axis.transAxes, va=va, fontsize=9, color=colour, bbox=label_box,
                  zorder=5, fontfamily=fonts)
    if len(scores) > 1:
        trend = rolling_mean(scores, smoothing_window(len(scores)))
        axis.plot(x, trend, color=LINE_COLOUR, linewidth=2.5, alpha=0.9, solid_capstyle="round", zorder=3)
    size = 60 if len(scores) <= 31 else 28
    axis.scatter(x, scores, s=size, c=[score_colour(s) for s in scores], edgecolors="white", linewidths=1.2,
                 zorder=4)
    axis.set_yticks([-1, -0.5, 0, 0.5, 1])
    axis.set_ylabel(words.score_axis, color=TEXT_COLOUR, fontfamily=fonts)
    axis.grid(axis="y", color="#d0d4da", linewidth=0.6, alpha=0.7)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)


def _draw_counts(
    axis: Axes, x: Sequence[float], counts: list[int], bar_width: float, *, words: ChartWords,
    fonts: tuple[str, ...],
) -> None:
    # The mood bands live on this, the lowest axis, so the bars sit on them and the scores above both.
    # The score axis is symmetric around 0, so its 0 is this axis' middle.
    for bottom, colour in ((0.5, POSITIVE_COLOUR), (0.0, NEGATIVE_COLOUR)):
        axis.add_patch(Rectangle((0, bottom), 1, 0.5, transform=axis.transAxes, facecolor=colour, alpha=0.08,
                                 linewidth=0, zorder=0))
    axis.bar(x, counts, width=bar_width, color=BAR_COLOUR, alpha=0.6, linewidth=0, zorder=1)
    # Bars fill the lower ~40 % of the plot, so they stay a backdrop to the scores.
    axis.set_ylim(0, max(counts, default=1) * 2.5)
    axis.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True, min_n_ticks=1))
    axis.set_ylabel(words.count_axis, color=TEXT_COLOUR, fontfamily=fonts)
    axis.tick_params(axis="y", colors=NEUTRAL_COLOUR)
    for side in ("top", "left"):
        axis.spines[side].set_visible(False)


def _format_date_axis(axis: Axes, start: date, end: date, language: str, fonts: tuple[str, ...]) -> None:
    span = (end - start).days + 1
    axis.set_xlim(mdates.date2num(start) - 0.6, mdates.date2num(end) + 0.6)
    if span <= SHORT_PERIOD_DAYS:
        axis.xaxis.set_major_locator(mdates.DayLocator())
    else:
        axis.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=9))
    axis.xaxis.set_major_formatter(DayTicks(language, with_weekday=span <= SHORT_PERIOD_DAYS))
    axis.tick_params(axis="x", colors=TEXT_COLOUR, labelfontfamily=list(fonts))


class DayTicks(Formatter):
    """Date-axis labels in ``language``: weekday over day and month for a short period; otherwise day and month,
    with the year when the ticks span years, or month and year when every tick is the 1st of a month."""

    def __init__(self, language: str, *, with_weekday: bool) -> None:
        self.language, self.with_weekday = language, with_weekday

    def __call__(self, x: float, pos: int | None = None) -> str:
        """One tick's label, seen alone."""
        return self.format_ticks([x])[0]

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        """Every tick's label, chosen together."""
        days = [mdates.num2date(value).date() for value in values]
        if self.with_weekday:
            return [f"{format_day(d, WEEKDAY, self.language)}\n{format_day(d, DAY_MONTH, self.language)}" for d in days]
        if days and all(d.day == 1 for d in days) and len(days) > 1:
            pattern = MONTH_YEAR
        else:
            pattern = DAY_MONTH_YEAR if len({d.year for d in days}) > 1 else DAY_MONTH
        return [format_day(d, pattern, self.language) for d in days]
