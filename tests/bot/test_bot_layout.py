"""bot/'s rooms keep to their places: who may import whom, no import cycles, small modules, handlers that stay small,
and only the engine's public API."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from bot.telegram import access, checkins, commands, fix_mood, messages, settings

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "bot"
MAX_MODULE_LINES = 400

# What each room may import besides itself: the flow never sees Telegram, the views see nothing but storage's value
# types, the CLI may use everything.
ALLOWED = {
    "base": set(),  # bot.config, bot.logs
    "views": {"base"},
    "flow": {"base", "views"},
    "telegram": {"base", "views", "flow"},
    "cli": {"base", "views", "flow", "telegram"},
    "package": {"cli"},  # bot/__init__.py, bot/__main__.py
}
# Rooms that must not import python-telegram-bot at all.
WITHOUT_TELEGRAM = {"base", "views", "flow"}
# Engine modules bot/ may import besides the `engine` package's public API: none (script_of and ServerUnavailable
# are exported there now).
NOT_YET_PUBLIC: set[str] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(BOT.rglob("*.py"))}


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "package"
    return parts[1] if parts[1] in ALLOWED else "base"


def imported(module: str) -> set[str]:
    """Every module ``module`` imports anywhere in its source (``from a.b import c`` counts ``a.b.c`` when that is a
    module of its own)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def bot_imports(module: str) -> set[str]:
    return {name for name in imported(module) if name in MODULES and name != module}


def test_each_room_imports_only_the_rooms_it_may() -> None:
    wrong = [
        f"{module} -> {target}"
        for module in MODULES
        for target in bot_imports(module)
        if room(target) != room(module) and room(target) not in ALLOWED[room(module)]
    ]
    assert wrong == []


def test_config_views_and_flow_know_nothing_of_telegram() -> None:
    wrong = [
        f"{module} -> {name}"
        for module in MODULES
        if room(module) in WITHOUT_TELEGRAM
        for name in imported(module)
        if name == "telegram" or name.startswith("telegram.")
    ]
    assert wrong == []


def test_bot_has_no_import_cycles() -> None:
    graph = {module: bot_imports(module) for module in MODULES}
    done: set[str] = set()

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            cycle = cycle_from(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in MODULES:
        assert cycle_from(module, []) is None


def test_bot_uses_only_the_engines_public_api() -> None:
    below_the_api = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            below_the_api.update(f"{module} -> {name}" for name in names if name.startswith("engine."))
    assert {entry.split(" -> ")[1] for entry in below_the_api} <= NOT_YET_PUBLIC, sorted(below_the_api)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines: split it by what its parts hold"


HANDLERS = [
    access.check_access, commands.start, commands.help_command, commands.mood, commands.reset, commands.forget,
    commands.forget_answer, commands.export, commands.privacy, commands.stats, fix_mood.fix_list, fix_mood.fix_label,
    settings.open_settings, settings.settings_press, settings.typed_city, messages.text_message,
    messages.edited_text, messages.non_text, messages.error_handler, checkins.checkin_tap, checkins.offer_answer,
]


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda handler: handler.__name__)
def test_each_handler_is_a_small_typed_coroutine_with_a_one_line_docstring(handler: object) -> None:
    assert inspect.iscoroutinefunction(handler)
    doc = inspect.getdoc(handler) or ""
    assert doc and "\n" not in doc, "one line saying what the person gets"
    hints = inspect.get_annotations(handler)
    assert set(hints) == {"update", "context", "return"}
    assert len(inspect.getsource(handler).splitlines()) <= 30
