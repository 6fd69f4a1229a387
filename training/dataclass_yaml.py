"""Plain-data conversion of (nested) frozen dataclasses, for YAML configs.

`to_plain` turns a dataclass into YAML-safe values; `merge_dataclass` reads such
values back over a default instance, checking keys and types against the field
annotations and naming the source file and dotted key in every error.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUGGESTION_CUTOFF = 0.6
MAX_SUGGESTIONS = 3


class ConfigError(ValueError):
    """A configuration file or value that does not fit its dataclass."""


def to_plain(value: Any) -> Any:
    """Converts dataclasses, enums, tuples and paths to dicts, values, lists and strs."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def merge_dataclass(default: Any, data: Any, source: str, prefix: str = "") -> Any:
    """Returns `default` (a dataclass instance) with the keys of `data` replaced.

    Args:
        default: Frozen dataclass instance supplying every value not in `data`.
        data: Mapping of field name to plain value (nested mappings for nested
            dataclasses, lists for tuples, enum values as their `.value`).
        source: File name used in error messages.
        prefix: Dotted key prefix of `default` within the file (e.g. "data.").

    Returns:
        A new instance of the same type.

    Raises:
        ConfigError: Unknown key (with close-match suggestions) or ill-typed value.
    """
    if not isinstance(data, Mapping):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: '{where}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(type(default))
    valid = [f.name for f in dataclasses.fields(default)]
    updates = {}
    for key, value in data.items():
        if key not in valid:
            raise _unknown_key(source, str(key), prefix, valid)
        updates[key] = _coerce(getattr(default, key), hints[key], value, source, prefix + key)
    try:
        return dataclasses.replace(default, **updates)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: invalid '{prefix.rstrip('.') or 'config'}': {error}") from None


def _unknown_key(source: str, key: str, prefix: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=MAX_SUGGESTIONS, cutoff=SUGGESTION_CUTOFF)
    hint = f"; did you mean {', '.join(repr(prefix + c) for c in close)}?" if close else ""
    return ConfigError(
        f"{source}: unknown key '{prefix}{key}'{hint} (valid keys here: {', '.join(valid)})"
    )


def _build(cls: type, data: Any, source: str, key: str) -> Any:
    """Builds a dataclass that has no default instance from a full mapping."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{key}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for name, value in data.items():
        if name not in valid:
            raise _unknown_key(source, str(name), key + ".", valid)
        kwargs[name] = _coerce(None, hints[name], value, source, f"{key}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: invalid '{key}': {error}") from None


def _coerce(current: Any, tp: Any, value: Any, source: str, key: str) -> Any:
    """Converts a YAML value to the annotated type `tp` of field `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(current, options[0], value, source, key)
        return value
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            return merge_dataclass(current, value, source, key + ".")
        return _build(tp, value, source, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _coerce_enum(tp, value, source, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(None, args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{source}: '{key}' must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(None, a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    return _coerce_scalar(tp, value, source, key)


def _coerce_enum(tp: type[enum.Enum], value: Any, source: str, key: str) -> enum.Enum:
    by_value = {str(member.value): member for member in tp}
    by_name = {member.name.lower(): member for member in tp}
    text = str(value)
    if text in by_value or text.lower() in by_name:
        return by_value.get(text) or by_name[text.lower()]
    close = difflib.get_close_matches(text, list(by_value), n=MAX_SUGGESTIONS, cutoff=SUGGESTION_CUTOFF)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(
        f"{source}: '{key}' has unknown value {value!r}{hint} (choices: {', '.join(by_value)})"
    )


def _coerce_scalar(tp: Any, value: Any, source: str, key: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        try:  # PyYAML reads exponent-only literals such as 1e-3 as strings.
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value
