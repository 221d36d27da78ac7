"""/settings: the menu's pages (text and buttons), what each button carries and what pressing it changes. Pure and
synchronous: a button is a (label, callback data) pair that ``bot.telegram.settings`` turns into an inline keyboard.

Callback data is ``set:<owner>:<action>:<value>``: the id of the person who opened the menu (only they may press
it), a short action and its value, e.g. ``set:42:tz:Europe/Berlin``, ``set:42:cit:07``, ``set:42:page:wk``. It
holds no state beyond that, so a menu keeps working across restarts; anything else is refused by ``parse_press``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from bot.i18n import _, translator
from bot.views.telegram_text import shorten
from bot.zones import CITY_ZONES, OFFSET_HOURS, city_of, is_zone, offset_zone, utc_offset_text
from storage import PersonSettings

PREFIX = "set:"
CALLBACK_DATA_LIMIT = 64  # bytes Telegram keeps of a button's callback data
Button = tuple[str, str]  # (label, callback data)

PAGES = ("home", "lang", "tz", "off", "city", "ci", "quiet", "wk", "len", "mood")
HOURS = tuple(f"{hour:02d}" for hour in range(24))
QUIET_PRESETS = ("22-07", "23-08", "21-06", "00-08")  # start and end hour, local
WEEKLY_TIMES = ("09", "12", "18", "19", "20", "21")
QUERY_SHOWN = 40  # UTF-16 code units of a typed city repeated in the answer
DAY_NAMES = (_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday"))
DAY_BUTTONS = (_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun"))
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}  # each in its own language, never translated

_ON_OFF = ("on", "off")
# What each action accepts; the value of a press is checked here before anything is read from it.
_VALID: dict[str, Callable[[str], bool]] = {
    "page": lambda value: value in PAGES,
    "lang": lambda value: value in ("en", "zh", "tg"),
    "tz": is_zone,
    "ci": lambda value: value in _ON_OFF,
    "cit": lambda value: value in HOURS,
    "quiet": lambda value: value in QUIET_PRESETS or value == "off",
    "wk": lambda value: value in _ON_OFF,
    "wkd": lambda value: value in ("0", "1", "2", "3", "4", "5", "6"),
    "wkt": lambda value: value in WEEKLY_TIMES,
    "len": lambda value: value in ("short", "normal"),
    "mood": lambda value: value in _ON_OFF,
    "done": lambda value: value == "",
}
# After a press of these the menu shows this page; any other press stays on the page it was made on.
_PAGE_AFTER = {"lang": "home", "tz": "home", "quiet": "home", "len": "home", "mood": "home"}
_PAGE_OF_ACTION = {"ci": "ci", "cit": "ci", "wk": "wk", "wkd": "wk", "wkt": "wk"}

TITLE = _("⚙️ Your settings")
HOME_HINT = _("Tap what you'd like to change.")
DONE_TEXT = _("Saved ✓ Send /settings to change them again.")
BACK = _("« Back")
ON, OFF = _("On"), _("Off")
SAVED_TOAST = _("Saved ✓")
NOT_YOURS_TEXT = _("These are someone else's settings. Send /settings for your own.")
STALE_TEXT = _("This button no longer works. Send /settings for a fresh menu.")
OPEN_PRIVATELY_TEXT = _("Your settings are personal, so I show them in our private chat.")
OPEN_PRIVATELY_BUTTON = _("⚙️ Open my settings")
CITY_PROMPT = _("Type the name of a city in your time zone, in English (for example Lisbon or Chicago).")
CITY_CHOOSE = _("Which one is yours?")
CITY_NOT_FOUND = _("I couldn't find “{query}”. Try a bigger city nearby, in English – or pick one below.")
ANALYSIS_OFF_NOTE = _(
    "Mood analysis is off for you: I don't estimate the mood of your new messages. To turn it back on: "
    "/settings → Analyse my mood."
)
# The home page: one button per page, and one line per setting.
LANGUAGE_LABEL, ZONE_LABEL, CHECKIN_LABEL = _("🌐 Language"), _("🕰 Time zone"), _("📝 Daily check-in")
QUIET_LABEL, WEEKLY_LABEL, REPLIES_LABEL = _("🌙 Quiet hours"), _("📊 Weekly summary"), _("💬 Replies")
LENGTH_BUTTON, ANALYSIS_LABEL, DONE_BUTTON = _("💬 Reply length"), _("🔍 Analyse my mood"), _("✅ Done")
FOLLOWS_TELEGRAM = _("follows Telegram ({language})")
ZONE_LINE = _("{zone} · {offset}")
DEFAULT_ZONE_LINE = _("not set · {offset} (the default)")
CHECKIN_LINE = _("every day at {time}")
WEEKLY_LINE = _("{day}s at {time}")
# The other pages.
LANGUAGE_QUESTION = _("Which language should I use?")
FOLLOW_TELEGRAM = _("Follow Telegram")
ZONE_QUESTION = _("Where are you? /mood counts your days in your time zone, and check-ins follow it.")
OFFSET_BUTTON, OTHER_CITY_BUTTON = _("UTC offset"), _("Other city…")
OFFSET_QUESTION = _("Your offset from UTC (fixed, without daylight saving time: for that, pick a city).")
CHECKIN_TEXT = _("A short daily message asking how you are, at the hour you choose (your time).")
QUIET_TEXT = _("During quiet hours I send nothing on my own: check-ins and summaries wait until they end.")
WEEKLY_TEXT = _("Once a week, a summary of how your week went: pick the day and the time.")
LENGTH_QUESTION = _("How long should my replies be?")
SHORT, NORMAL = _("Short"), _("Normal")
ANALYSIS_TEXT = _(
    "When this is on, I estimate the mood of each message you send, for /mood. When it is off, your messages are "
    "still kept and answered, but no mood is estimated or stored for them (turning it back on does not analyse "
    "what you wrote meanwhile). Clear crisis messages still get help resources."
)


@dataclass(frozen=True)
class Press:
    """A settings button pressed: whose menu it was, the action and its value."""

    owner: int
    action: str
    value: str = ""


@dataclass(frozen=True)
class Menu:
    """One page of the menu: its text and its rows of buttons."""

    text: str
    rows: list[list[Button]]


def press_data(owner: int, action: str, value: str = "") -> str:
    """The callback data of a button: ``set:<owner>:<action>:<value>`` (ValueError past Telegram's 64 bytes)."""
    data = f"{PREFIX}{owner}:{action}:{value}"
    if len(data.encode("utf-8")) > CALLBACK_DATA_LIMIT:
        raise ValueError(f"callback data longer than {CALLBACK_DATA_LIMIT} bytes: {data!r}")
    return data


def parse_press(data: str | None) -> Press | None:
    """The press ``data`` describes; None for anything not made by ``press_data`` with a valid value."""
    parts = (data or "").split(":", 3)
    if len(parts) != 4 or f"{parts[0]}:" != PREFIX or not parts[1].lstrip("-").isdigit():
        return None
    owner, action, value = int(parts[1]), parts[2], parts[3]
    check = _VALID.get(action)
    return Press(owner, action, value) if check is not None and check(value) else None


def changes_for(press: Press) -> dict[str, Any]:
    """The settings a press changes (none for navigation), as ``Store.update_settings`` takes them."""
    value = press.value
    match press.action:
        case "lang":
            return {"language": None if value == "tg" else value}
        case "tz":
            return {"time_zone": value}
        case "ci" | "wk" | "mood":
            name = {"ci": "checkin_enabled", "wk": "weekly_enabled", "mood": "analyse_mood"}[press.action]
            return {name: value == "on"}
        case "cit":
            return {"checkin_time": f"{value}:00", "checkin_enabled": True}
        case "quiet":
            start, _sep, end = value.partition("-")
            return {"quiet_start": None, "quiet_end": None} if value == "off" else {
                "quiet_start": f"{start}:00", "quiet_end": f"{end}:00"
            }
        case "wkd":
            return {"weekly_day": int(value), "weekly_enabled": True}
        case "wkt":
            return {"weekly_time": f"{value}:00", "weekly_enabled": True}
        case "len":
            return {"reply_length": value}
    return {}


def page_after(press: Press) -> str:
    """The page the menu shows after ``press`` ("done": the menu closes)."""
    if press.action in ("page", "done"):
        return press.value or press.action
    return _PAGE_AFTER.get(press.action) or _PAGE_OF_ACTION.get(press.action, "home")


# -- the pages ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Page:
    """What a page is drawn from: the person's settings and the gettext of their language."""

    settings: PersonSettings
    t: Callable[[str], str]

    def button(self, label: str, action: str, value: str = "", chosen: bool = False) -> Button:
        """A button of this person's menu; ``chosen`` marks the current value with a tick."""
        return (f"✓ {label}" if chosen else label), press_data(self.settings.user_id, action, value)

    def on_off(self, action: str, enabled: bool) -> list[Button]:
        """The On / Off row of a setting."""
        return [self.button(self.t(ON), action, "on", enabled), self.button(self.t(OFF), action, "off", not enabled)]


def _language_page(page: _Page) -> tuple[str, list[list[Button]]]:
    chosen = page.settings.language
    names = [page.button(name, "lang", code, chosen == code) for code, name in LANGUAGE_NAMES.items()]
    follow = page.button(page.t(FOLLOW_TELEGRAM), "lang", "tg", chosen is None)
    return page.t(LANGUAGE_QUESTION), [names, [follow]]


def _zone_page(page: _Page) -> tuple[str, list[list[Button]]]:
    chosen = page.settings.time_zone
    cities = [page.button(page.t(city), "tz", name, chosen == name) for city, name in CITY_ZONES]
    more = [page.button(page.t(OFFSET_BUTTON), "page", "off"), page.button(page.t(OTHER_CITY_BUTTON), "page", "city")]
    text = page.t(ZONE_QUESTION)
    return text, [*_grid(cities, 2), more]


def _offset_page(page: _Page) -> tuple[str, list[list[Button]]]:
    chosen = page.settings.time_zone
    offsets = [
        page.button(f"{hours:+d}" if hours else "0", "tz", offset_zone(hours), chosen == offset_zone(hours))
        for hours in OFFSET_HOURS
    ]
    text = page.t(OFFSET_QUESTION)
    return text, _grid(offsets, 6)


def _city_page(page: _Page) -> tuple[str, list[list[Button]]]:
    return page.t(CITY_PROMPT), []


def _checkin_page(page: _Page) -> tuple[str, list[list[Button]]]:
    settings = page.settings
    hours = [page.button(f"{hour}:00", "cit", hour, settings.checkin_time == f"{hour}:00") for hour in HOURS]
    text = page.t(CHECKIN_TEXT)
    return text, [page.on_off("ci", settings.checkin_enabled), *_grid(hours, 6)]


def _quiet_page(page: _Page) -> tuple[str, list[list[Button]]]:
    current = _quiet_value(page.settings)
    presets = [page.button(_quiet_label(preset), "quiet", preset, current == preset) for preset in QUIET_PRESETS]
    text = page.t(QUIET_TEXT)
    return text, [*_grid(presets, 2), [page.button(page.t(OFF), "quiet", "off", current is None)]]


def _weekly_page(page: _Page) -> tuple[str, list[list[Button]]]:
    settings = page.settings
    days = [page.button(page.t(name), "wkd", str(day), settings.weekly_day == day)
            for day, name in enumerate(DAY_BUTTONS)]
    times = [page.button(f"{time}:00", "wkt", time, settings.weekly_time == f"{time}:00") for time in WEEKLY_TIMES]
    text = page.t(WEEKLY_TEXT)
    return text, [page.on_off("wk", settings.weekly_enabled), days[:4], days[4:], *_grid(times, 3)]


def _length_page(page: _Page) -> tuple[str, list[list[Button]]]:
    length = page.settings.reply_length
    choices = [page.button(page.t(SHORT), "len", "short", length == "short"),
               page.button(page.t(NORMAL), "len", "normal", length == "normal")]
    return page.t(LENGTH_QUESTION), [choices]


def _analysis_page(page: _Page) -> tuple[str, list[list[Button]]]:
    return page.t(ANALYSIS_TEXT), [page.on_off("mood", page.settings.analyse_mood)]


_PAGES: dict[str, Callable[[_Page], tuple[str, list[list[Button]]]]] = {
    "lang": _language_page, "tz": _zone_page, "off": _offset_page, "city": _city_page, "ci": _checkin_page,
    "quiet": _quiet_page, "wk": _weekly_page, "len": _length_page, "mood": _analysis_page,
}


def settings_menu(page: str, settings: PersonSettings, language: str, zone: tzinfo, now: datetime) -> Menu:
    """The page ``page`` of ``settings``' menu in ``language`` (the home page for "home" or an unknown page);
    ``zone`` is the person's zone (their own or the default) and ``now`` the time it shows."""
    drawn = _Page(settings, translator(language).gettext)
    t = drawn.t
    if page not in _PAGES:
        text = f"{t(TITLE)}\n\n{summary_text(settings, language, zone, now)}\n\n{t(HOME_HINT)}"
        return Menu(text, _home(drawn))
    text, rows = _PAGES[page](drawn)
    back = drawn.button(t(BACK), "page", "tz" if page in ("off", "city") else "home")
    return Menu(text, [*rows, [back]])


def settings_done(settings: PersonSettings, language: str, zone: tzinfo, now: datetime) -> Menu:
    """What the menu turns into after "Done": the settings as they are now, no buttons."""
    t = translator(language).gettext
    return Menu(f"{t(TITLE)}\n\n{summary_text(settings, language, zone, now)}\n\n{t(DONE_TEXT)}", [])


def summary_text(settings: PersonSettings, language: str, zone: tzinfo, now: datetime) -> str:
    """One line per setting with its current value."""
    t = translator(language).gettext
    on_off = {True: t(ON), False: t(OFF)}
    if settings.language in LANGUAGE_NAMES:
        language_line = LANGUAGE_NAMES[settings.language]
    else:
        language_line = t(FOLLOWS_TELEGRAM).format(language=LANGUAGE_NAMES.get(language, language))
    offset = utc_offset_text(zone, now)
    if settings.time_zone:
        zone_line = t(ZONE_LINE).format(zone=zone_name(settings.time_zone, language), offset=offset)
    else:
        zone_line = t(DEFAULT_ZONE_LINE).format(offset=offset)
    checkin = t(CHECKIN_LINE).format(time=settings.checkin_time) if settings.checkin_enabled else t(OFF)
    quiet = t(OFF) if settings.quiet_start is None else f"{settings.quiet_start}–{settings.quiet_end}"
    weekly = t(OFF)
    if settings.weekly_enabled:
        weekly = t(WEEKLY_LINE).format(day=t(DAY_NAMES[settings.weekly_day]), time=settings.weekly_time)
    length = t(SHORT) if settings.reply_length == "short" else t(NORMAL)
    lines = [
        (t(LANGUAGE_LABEL), language_line), (t(ZONE_LABEL), zone_line), (t(CHECKIN_LABEL), checkin),
        (t(QUIET_LABEL), quiet), (t(WEEKLY_LABEL), weekly), (t(REPLIES_LABEL), length),
        (t(ANALYSIS_LABEL), on_off[settings.analyse_mood]),
    ]
    return "\n".join(f"{name}: {value}" for name, value in lines)


def zone_name(name: str, language: str) -> str:
    """How a stored zone is shown: a city button's name (translated), ``UTC+8`` for an offset, else its city."""
    t = translator(language).gettext
    for city, zone in CITY_ZONES:
        if zone == name:
            return t(city)
    for hours in OFFSET_HOURS:
        if offset_zone(hours) == name:
            return f"UTC{hours:+d}" if hours else "UTC"
    return city_of(name)


def city_matches(owner: int, query: str, names: list[str], language: str) -> Menu:
    """The answer to a typed city: the zones it may mean as buttons, or that none was found (with the city
    buttons)."""
    t = translator(language).gettext
    back = [(t(BACK), press_data(owner, "page", "tz"))]
    buttons = [(name.replace("_", " "), press_data(owner, "tz", name)) for name in names if _fits(owner, name)]
    if buttons:
        return Menu(t(CITY_CHOOSE), [*_grid(buttons, 1), back])
    cities = [(t(city), press_data(owner, "tz", name)) for city, name in CITY_ZONES]
    typed = shorten(" ".join(query.split()), QUERY_SHOWN)  # whatever was typed, it fits in one message
    return Menu(t(CITY_NOT_FOUND).format(query=typed), [*_grid(cities, 2), back])


def _home(page: _Page) -> list[list[Button]]:
    t, button = page.t, page.button
    return [
        [button(t(LANGUAGE_LABEL), "page", "lang"), button(t(ZONE_LABEL), "page", "tz")],
        [button(t(CHECKIN_LABEL), "page", "ci"), button(t(QUIET_LABEL), "page", "quiet")],
        [button(t(WEEKLY_LABEL), "page", "wk"), button(t(LENGTH_BUTTON), "page", "len")],
        [button(t(ANALYSIS_LABEL), "page", "mood")],
        [button(t(DONE_BUTTON), "done")],
    ]


def _grid(buttons: list[Button], width: int) -> list[list[Button]]:
    return [buttons[start : start + width] for start in range(0, len(buttons), width)]


def _quiet_label(preset: str) -> str:
    start, _sep, end = preset.partition("-")
    return f"{start}:00–{end}:00"


def _quiet_value(settings: PersonSettings) -> str | None:
    if settings.quiet_start is None or settings.quiet_end is None:
        return None
    return f"{settings.quiet_start[:2]}-{settings.quiet_end[:2]}"


def _fits(owner: int, name: str) -> bool:
    return len(f"{PREFIX}{owner}:tz:{name}".encode()) <= CALLBACK_DATA_LIMIT
