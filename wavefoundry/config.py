"""Strict dataclass configs: build from dicts, dump to dicts/JSON, apply ``a.b=x`` overrides.

Every config in wavefoundry is a ``@dataclass(kw_only=True)`` that validates itself in ``__post_init__``.
Trees of them form a run config. This module is the only place that turns untyped input (JSON, command-line
strings) into those dataclasses, and it is strict: an unknown key is an error that names the key and the
valid ones, and a value that does not fit its field's type is an error that names the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null", "~"}


class ConfigError(ValueError):
    """A config could not be built: unknown key, bad value or failed validation."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _unknown(key: str, where: str, valid: typing.Iterable[str]) -> ConfigError:
    return ConfigError(f"unknown config key '{key}'{where}; valid keys: {', '.join(sorted(valid))}")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    """Return (allows None, the type without None)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
    return False, tp


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert a JSON-like value (or a command-line string) to the annotated type ``tp``."""
    if tp is Any:
        return value
    optional, inner = _is_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE):
        if optional:
            return None
        raise ConfigError(f"{path}: None is not allowed (expected {_type_name(tp)})")
    tp = inner
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a section (mapping), got {value!r}")
        return _build(tp, value, path)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, choices))}")
    if origin in (tuple, list):
        items = _as_sequence(value, path)
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(items)}")
            out = [_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(items, args))]
        else:
            elem = args[0] if args else Any
            out = [_coerce(v, elem, f"{path}[{i}]") for i, v in enumerate(items)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if isinstance(value, str):
            value = _parse_json(value, path)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_t, val_t = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, key_t, path): _coerce(v, val_t, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                as_float = None
            if as_float is not None and as_float.is_integer():
                return int(as_float)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: cannot convert {value!r} to {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _parse_json(text: str, path: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: cannot parse {text!r} as JSON ({exc.msg})") from None


def _as_sequence(value: Any, path: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = _parse_json(text, path)
            if not isinstance(parsed, list):
                raise ConfigError(f"{path}: expected a list, got {value!r}")
            return parsed
        return [] if not text else [part.strip() for part in text.split(",")]
    raise ConfigError(f"{path}: expected a list, got {value!r}")


def _build(cls: type[T], data: dict, path: str) -> T:
    fields = _fields(cls)
    hints = _hints(cls)
    where = f" in section '{path}'" if path else ""
    for key in data:
        if key not in fields:
            raise _unknown(key, where, fields)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from None


def from_dict(cls: type[T], data: dict) -> T:
    """Build the dataclass ``cls`` from a nested dict, rejecting unknown keys and ill-typed values.

    Fields left out take their defaults; required fields (no default) must be present.

    Raises:
        ConfigError: on an unknown key (the message lists the valid keys), a bad value, or failed validation.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping to build {cls.__name__}, got {type(data).__name__}")
    try:
        return _build(cls, data, "")
    except ConfigError:
        raise
    except (ValueError, AssertionError) as exc:  # __post_init__ validation
        raise ConfigError(str(exc)) from None


def to_dict(cfg: Any) -> dict:
    """A JSON-ready nested dict of a config tree (tuples become lists)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(cfg)


def parse_override(text: str) -> tuple[list[str], str]:
    """Split ``"a.b.c=value"`` into (``["a", "b", "c"]``, ``"value"``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {text!r}; expected key.path=value, e.g. optim.lr=3e-4")
    return key.split("."), value


def apply_overrides(cfg: T, overrides: typing.Iterable[str]) -> T:
    """Return a copy of ``cfg`` with ``a.b=x`` overrides applied, each value cast by its field's type.

    The whole tree is rebuilt through :func:`from_dict`, so validation runs again.
    """
    data = to_dict(cfg)
    for text in overrides:
        parts, value = parse_override(text)
        node_cls: Any = type(cfg)
        node = data
        for depth, part in enumerate(parts):
            fields = _fields(node_cls)
            where = f" in section '{'.'.join(parts[:depth])}'" if depth else ""
            if part not in fields:
                raise _unknown(part, where, fields)
            _, field_t = _is_optional(_hints(node_cls)[part])
            last = depth == len(parts) - 1
            if dataclasses.is_dataclass(field_t):
                if last:
                    if value.strip().startswith("{"):  # a whole section as JSON, validated by from_dict below
                        node[part] = _parse_json(value, ".".join(parts))
                        continue
                    sub = ", ".join(sorted(_fields(field_t)))
                    raise ConfigError(f"'{'.'.join(parts)}' is a section; set one of its keys: {sub}")
                if node.get(part) is None:
                    try:
                        node[part] = to_dict(field_t())
                    except TypeError:
                        raise ConfigError(
                            f"'{'.'.join(parts[: depth + 1])}' is empty and has required keys; set the whole section "
                            f"as JSON, e.g. --set '{'.'.join(parts[: depth + 1])}={{...}}'"
                        ) from None
                node_cls, node = field_t, node[part]
            elif last:
                node[part] = _coerce(value, _hints(node_cls)[part], ".".join(parts))
            else:
                raise ConfigError(f"'{'.'.join(parts[: depth + 1])}' is a value, not a section")
    return from_dict(type(cfg), data)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(cfg: Any, path: str | Path) -> None:
    """Save a config tree as indented JSON (atomically)."""
    atomic_write_bytes(path, (json.dumps(to_dict(cfg), indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises :class:`ConfigError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_json(cls: type[T], path: str | Path) -> T:
    """Load a config saved by :func:`save_json`, strictly (unknown keys are an error)."""
    return from_dict(cls, read_json(path))
