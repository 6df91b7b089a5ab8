"""Typed settings from TOML tables and environment variables, with errors that name the key.

A settings class is a dataclass; :func:`build` converts a mapping into it, following the type
hints (str, int, float, bool, Path, lists, ``X | None``, nested dataclasses, lists of them and
``dict[str, str]``), refusing unknown keys (typos) and missing required ones.

Environment overrides: ``SUPERVIT_<PATH>`` where the path's parts are joined with ``__``, e.g.
``SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET`` overrides ``[supervisor.client] shared_secret``.
Lists from the environment are comma-separated.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

from supervit._exceptions import ConfigError

__all__ = ["ENV_PREFIX", "apply_env", "build", "read_toml"]

ENV_PREFIX = "SUPERVIT_"
T = TypeVar("T")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def read_toml(path: Path | str) -> dict[str, Any]:
    """Parse a TOML file; an unreadable or invalid file is a ConfigError naming it."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(p), "config file not found") from None
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), f"invalid TOML: {exc}") from None


def apply_env(
    data: dict[str, Any], environ: Mapping[str, str] | None = None, *, tables: Collection[str] | None = None
) -> dict[str, Any]:
    """Overlay ``SUPERVIT_A__B__C=value`` variables onto ``data['a']['b']['c']`` (as text).

    ``tables`` names the top-level tables this file owns; variables for other tables (another
    supervit program's file, sharing the environment) are left alone.
    """
    env = os.environ if environ is None else environ
    for name, value in env.items():
        # Only nested names (with "__") are overrides, so SUPERVIT_SHARED_SECRET & co. stay separate.
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path) or (tables is not None and path[0] not in tables):
            continue
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(name, f"cannot override: {'.'.join(path[:-1])} is not a table")
            node = child
        node[path[-1]] = _EnvText(value)
    return data


class _EnvText(str):
    """A value that came from the environment: text to be parsed into the field's type."""

    __slots__ = ()


def build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; errors name the full key (``prefix.field``)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "<root>", "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in names:
            raise ConfigError(_join(prefix, key), f"unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = _join(prefix, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "is required")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix or "<root>", str(exc)) from None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and (value is None or (isinstance(value, _EnvText) and value == "")):
            return None
        if len(options) == 1:
            return _convert(value, options[0], key)
        raise TypeError(f"unsupported union {hint!r} for {key}")
    if origin in (list, tuple):
        item = args[0]
        if isinstance(value, _EnvText):
            value = [_EnvText(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {_kind(value)}")
        items = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be a table, got {_kind(value)}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(key, f"must be a boolean (true/false), got {_shown(value)}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(key, "must be an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, _EnvText):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"must be an integer, got {_shown(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, _EnvText):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"must be a number, got {_shown(value)}")
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(key, f"must be a string, got {_kind(value)}")
    if hint is Path:
        if isinstance(value, str) and value:
            return Path(value).expanduser()
        raise ConfigError(key, f"must be a non-empty path string, got {_kind(value)}")
    raise TypeError(f"unsupported type {hint!r} for {key}")


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), "text" if isinstance(value, str) else type(value).__name__
    )


def _shown(value: Any) -> str:
    text = repr(str(value)) if isinstance(value, str) else _kind(value)
    return text if len(text) <= 40 else text[:37] + "..."
