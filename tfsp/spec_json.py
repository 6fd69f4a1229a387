"""Strict JSON (de)serialisation of frozen dataclasses, for ``tfsp.spec.ModelSpec``.

Every field must be present (an unknown or missing field is an error naming the
field path), except a field declared with :func:`added_field`: one added after specs
were first written, whose default reproduces what older tfsp versions did, so that a
spec written before it existed still loads and behaves as it did. Enums are stored by
member name, tuples as lists. Device-safe: the standard library only.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any


ADDED_IN = "tfsp_added_in"
"""Field metadata key: the tfsp version that added the field (see :func:`added_field`)."""


class SpecError(ValueError):
    """A spec file or dict that does not describe a valid ``ModelSpec``."""


def added_field(default: Any, added_in: str) -> Any:
    """A dataclass field that specs written before tfsp ``added_in`` lack: they get ``default``.

    ``default`` must be the behaviour of the versions before ``added_in``.
    """
    return dataclasses.field(default=default, metadata={ADDED_IN: added_in})


def to_jsonable(value: Any) -> Any:
    """JSON-ready value: dataclasses as dicts, enums by name, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    return value


def from_jsonable(cls: type, data: Any, where: str) -> Any:
    """Builds dataclass ``cls`` from a JSON object; every field must be present but added ones."""
    if not isinstance(data, dict):
        raise SpecError(f"{where or 'top level'}: expected an object, got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    added = {f.name for f in fields if ADDED_IN in f.metadata}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SpecError(f"{_join(where, unknown[0])}: unknown field (known: {', '.join(names)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name in names:
        if name not in data and name in added:
            continue  # written before the field existed: its default
        if name not in data:
            raise SpecError(f"{_join(where, name)}: missing field")
        values[name] = _convert(hints[name], data[name], _join(where, name))
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{where or cls.__name__}: {error}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Converts a JSON value to the annotated type (dataclass, Enum, tuple, scalar)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise SpecError(f"{where}: must not be null")
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if dataclasses.is_dataclass(hint):
        return from_jsonable(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if value not in hint.__members__:
            raise SpecError(f"{where}: {value!r} is not one of {', '.join(hint.__members__)}")
        return hint[value]
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(f"{where}: expected {len(args)} entries, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is not hint:
        raise SpecError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
