"""What a config section's keys accept from TOML, read from the type hints of its dataclass's fields: one
``TomlKey`` per field, so a key and its type are declared once (``bot.config``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class TomlKey:
    """One key of a section: the TOML values it accepts, said in words for the error message."""

    accepts: Callable[[Any], bool]
    expected: str
    secret: bool  # kept out of repr: never echoed in an error message


def _is(kind: type) -> Callable[[Any], bool]:
    """A TOML value of ``kind``: bools are not ints, and an int is a fine float."""
    if kind is bool:
        return lambda value: isinstance(value, bool)
    kinds = (int, float) if kind is float else (kind,)
    return lambda value: isinstance(value, kinds) and not isinstance(value, bool)


def key_for(hint: Any, secret: bool) -> TomlKey:
    """What a field's type hint accepts from TOML: ``int | None`` as an int (TOML has no null), ``tuple[int, ...]``
    as an array of ints."""
    args = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) in (Union, UnionType) and len(args) == 1:
        return key_for(args[0], secret)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _is(args[0])

        def accepts(value: Any) -> bool:
            return isinstance(value, list) and all(item(element) for element in value)

        return TomlKey(accepts, f"a list of {args[0].__name__}s", secret)
    if hint in (bool, int, float, str):
        word = "number" if hint is float else hint.__name__
        return TomlKey(_is(hint), f"an {word}" if word[0] in "aeiou" else f"a {word}", secret)
    raise TypeError(f"no TOML type for {hint!r}")


def keys_of(cls: type) -> dict[str, TomlKey]:
    """Each field of the dataclass ``cls`` as a key, by name; fields kept out of ``repr`` are secret."""
    hints = get_type_hints(cls)
    return {f.name: key_for(hints[f.name], secret=not f.repr) for f in fields(cls)}
