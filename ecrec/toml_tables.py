"""Typed TOML tables: one frozen dataclass from a kebab-case table, every value checked
against its field's annotation, unknown keys refused with the file and key named."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from ecrec.errors import ConfigError


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Coerce/validate one TOML value against a dataclass field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {_shown(value)}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: must be one of {choices}, got {_shown(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: must be a list of strings, got {_shown(value)}")
        return tuple(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {_shown(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be an integer, got {_shown(value)}")
        if abs(value) > MAX_CONFIG_INT:
            raise ConfigError(f"{where}: must be an integer of at most 2^63-1 in size")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number, got {_shown(value)}")
        if not _finite(value):
            raise ConfigError(f"{where}: must be a finite number, got {_shown(value)}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {_shown(value)}")
        return _text(value, where)
    return value


#: Largest integer a config value may hold (what the libraries it reaches take).
MAX_CONFIG_INT = 2**63 - 1


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut short: an error line never carries a whole huge field."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _text(value: str, where: str) -> str:
    """A config string: no NUL or other control character (they are never meant, and a
    NUL in a path surfaces later as a traceback)."""
    bad = next((ch for ch in value if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise ConfigError(f"{where}: control character {bad!r} in {_shown(value)}")
    return value


def section_from_mapping(cls: type, table: dict[str, Any], *, where: str) -> Any:
    """Build one config dataclass from a kebab-case table, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if "_" in key and name in known:
            kebab = key.replace("_", "-")
            raise ConfigError(f"{where}.{key}: keys are kebab-case: write {kebab}")
        if name not in known:
            options = ", ".join(sorted(k.replace("_", "-") for k in known))
            raise ConfigError(f"{where}.{key}: unknown key (known: {options})")
        kwargs[name] = _check_type(value, hints[name], f"{where}.{key}")
    return cls(**kwargs)
