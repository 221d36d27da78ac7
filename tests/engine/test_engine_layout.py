"""engine/'s rooms keep to their places: who may import whom, no import cycles, small modules, no torch where none
is needed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"

PUBLIC = {"engine", "engine.base", "engine.errors", "engine.settings", "engine.values"}

# What each room may import besides itself. The public modules take nothing from the rooms, but engine/__init__
# re-exports roles.language's script_of, imports the two backends lazily, when asked for one, and asks loading's
# prepared_files (no torch) whether prepared weights are cached, and kernels' native which int8 kernel this CPU uses.
ALLOWED = {
    "public": {"public"},
    "roles": {"public"},
    "kernels": {"public"},  # the settings' CPU checks
    "adapters": {"public", "roles"},
    "loading": {"public", "roles", "kernels"},
    "local": {"public", "roles", "kernels", "loading", "adapters"},
    "remote": {"public", "roles"},
    "tuning": {"public", "roles", "kernels", "loading", "adapters"},  # trains what local/ runs
}
PUBLIC_API_REACHES = {
    ("engine", "roles"), ("engine", "local"), ("engine", "remote"), ("engine", "tuning"), ("engine", "loading"),
    ("engine", "kernels"),
}

MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ENGINE.rglob("*.py"))}


def room(module: str) -> str:
    """The room a module lives in: public, or the folder under engine/."""
    return "public" if module in PUBLIC else module.split(".")[1]


def imports(module: str) -> set[str]:
    """The engine modules ``module`` imports anywhere in its source (lazy and type-checking imports included)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def test_each_room_imports_only_the_rooms_below_it() -> None:
    wrong = []
    for module in MODULES:
        for target in imports(module):
            source_room, target_room = room(module), room(target)
            if source_room == target_room or target_room in ALLOWED[source_room]:
                continue
            if (module, target_room) in PUBLIC_API_REACHES:
                continue
            wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_engine_has_no_import_cycles() -> None:
    graph = {module: imports(module) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in MODULES:
        assert visit(module, []) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines: split it by what its parts hold"


@pytest.mark.parametrize(
    "statement",
    [
        "import engine",
        "from engine import create_engine, EngineSettings",
        "import engine.roles.care_phrases, engine.roles.chat_format, engine.roles.guard, engine.roles.history, "
        "engine.roles.language, engine.roles.prompts, engine.roles.verdict",
        "import engine.remote.backend",
    ],
)
def test_public_api_roles_and_remote_backend_import_without_torch(statement: str) -> None:
    code = f"{statement}; import sys; assert 'torch' not in sys.modules, sorted(sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_every_engine_package_is_installed() -> None:
    """A wheel (the container image's ``pip install .``) holds only the packages pyproject names."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(path) for path in ENGINE.rglob("__init__.py")}
    assert packages <= listed
