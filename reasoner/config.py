"""Typed configuration: dataclasses loaded from YAML with `key=value` overrides.

Every stage (train, sft, eval, distill, demo) describes its settings as a tree of dataclasses. This module turns
a YAML file plus command-line overrides (`optim.lr=1e-5 rollout.group_size=8`) into that tree:

- unknown keys are an error that names the full dotted key and lists the valid ones; a key that was renamed
  (a config class's `RENAMED` table: old dotted key -> new) is an error naming the new one;
- a section whose class names a `SHORTHAND` field takes a plain value for it (`engine: vllm` is
  `engine: {name: vllm}`);
- values are coerced to the annotated type (YAML reads `1e-5` as a string; a `float` field accepts it);
- the resolved config is written next to each run's outputs (`save_config`), so a run can be reproduced from its
  folder alone.

Deliberately small: no interpolation, no instantiation of classes by name (components are swapped by the few
named slots each config exposes, e.g. `rollout.engine: hf | vllm`).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from reasoner.errors import ReasonerError

T = TypeVar("T")


class ConfigError(ReasonerError, ValueError):
    """A config file or override is invalid; the message names the key (and file) at fault."""


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "") -> T:
    """Build dataclass `cls` from a nested mapping, rejecting unknown keys and coercing types."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    _check_renamed(cls, data, where)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key '{key}'; valid keys{' of ' + where if where else ''}: "
                          f"{', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        default = _default_of(fields[name])
        shorthand = getattr(default, "SHORTHAND", None) if dataclasses.is_dataclass(default) else None
        if shorthand is not None and isinstance(value, (str, int, float, bool)):
            value = {shorthand: value}  # `engine: vllm` -> `engine: {name: vllm}`
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            value = _overlay(default, value)  # `optim.lr=...` keeps the section's other (non-class) defaults
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without default is missing
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def _check_renamed(cls: type, data: dict[str, Any], where: str) -> None:
    """An old key name (an entry of `cls.RENAMED`, dotted below `cls`) set in `data` is an error naming the new one."""
    prefix = f"{where}." if where else ""
    for old, new in getattr(cls, "RENAMED", {}).items():
        node: Any = data
        for part in old.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            raise ConfigError(f"config key '{prefix}{old}' was renamed: use '{prefix}{new}'")


def _default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _overlay(default: Any, value: dict[str, Any]) -> dict[str, Any]:
    """The fields of dataclass instance `default`, with `value`'s keys on top (recursively into sub-sections).

    A section whose default is not its class's default (the demo's `sft`, SFT's `optim`) keeps that default for
    every key the file or override does not set."""
    out = {f.name: getattr(default, f.name) for f in dataclasses.fields(default) if f.init}
    for key, item in value.items():
        current = out.get(key)
        out[key] = _overlay(current, item) if isinstance(item, dict) and dataclasses.is_dataclass(current) else item
    return out


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict/list/scalars (YAML-safe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


class _Dotted(dict):
    """A mapping made by a dotted override key (`a.b=1`): merged into the value it overrides, key by key, where a
    mapping written out in full (`a={b: 1}`) replaces it."""


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["a.b=1", "c=[1,2]"]` -> `{"a": {"b": 1}, "c": [1, 2]}`; values are parsed as YAML."""
    tree: dict[str, Any] = _Dotted()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, _Dotted())
            if not isinstance(child, _Dotted):
                raise ConfigError(f"override '{item}' conflicts with an earlier override of '{part}'")
            node = child
        node[parts[-1]] = value
    return tree


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `update` wins. Mappings under a `dict`-typed field are merged key by key too."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(resolved: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    """`resolved` (a whole config as plain data) with an override tree applied: dotted keys descend into what
    they override, full values replace it."""
    out = dict(resolved)
    for key, value in tree.items():
        if isinstance(value, _Dotted) and isinstance(out.get(key), dict):
            out[key] = apply_overrides(out[key], value)
        else:
            out[key] = dict(value) if isinstance(value, _Dotted) else value
    return out


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or the name of a config shipped in `reasoner/configs` (`grpo_gsm8k`)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.exists() and len(path.parts) == 1:
        return shipped
    choices = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file not found: {name} (shipped configs: {choices})")


def load_config(cls: type[T], path: str | Path | list[str | Path] | None = None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> T:
    """Defaults (dict) <- YAML file(s), merged in order <- `key=value` overrides, validated into `cls`."""
    data: dict[str, Any] = dict(defaults or {})
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    for item in paths:
        file = resolve_config_path(item)
        loaded = read_yaml(file)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: top level must be a mapping")
        try:
            from_dict(cls, merge(data, loaded))  # validate each file on its own, so errors name the right file
        except ConfigError as e:
            raise ConfigError(f"{file}: {e}") from None
        data = merge(data, loaded)
    cfg = from_dict(cls, data)
    if overrides:
        # Overrides apply to the resolved config (defaults and files), so a dotted key into a mapping field
        # (`reward.verifiers.format.weight=0.5`, `reward.verifiers.format=null`) edits that mapping in place.
        cfg = from_dict(cls, apply_overrides(to_dict(cfg), parse_overrides(overrides)))
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping "
                                  f"(first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(file: Path) -> Any:
    """A YAML file as plain data; unreadable, non-UTF-8, invalid YAML and repeated keys are one error naming it."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise ConfigError(f"{file}: cannot read it ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}, line {raw[:e.start].count(10) + 1}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except ConfigError as e:
        raise ConfigError(f"{file}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: invalid YAML: {' '.join(str(e).split())}") from None





def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


# ----------------------------------------------------------------------------------------------- coercion


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"'{key}': {value!r} matches none of {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"'{key}' must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        shorthand = getattr(tp, "SHORTHAND", None)
        if shorthand is not None and isinstance(value, (str, int, float, bool)):
            value = {shorthand: value}
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}")
        return from_dict(tp, value, where=key)
    if origin in (list, tuple, typing.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]  # a scalar where a list is expected: a one-element list (e.g. `eval.k=8`)
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}")
        args = get_args(tp)
        if not args:
            return dict(value)
        # In a mapping of sections (`reward.verifiers`), `name: null` removes the entry.
        sections = get_origin(args[1]) is dict or args[1] is dict or dataclasses.is_dataclass(args[1])
        return {k: _coerce(v, args[1], f"{key}.{k}") for k, v in value.items() if not (sections and v is None)}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"'{key}' must be true or false; got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be an integer; got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else _fail(key, "an integer", value)
            except ValueError:
                pass
        _fail(key, "an integer", value)
    if tp is float:
        if isinstance(value, bool):
            _fail(key, "a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        _fail(key, "a number", value)
    if tp is str:
        if isinstance(value, (dict, list)):
            _fail(key, "a string", value)
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        _fail(key, tp.__name__, value)
    return value


def _fail(key: str, what: str, value: Any) -> typing.NoReturn:
    raise ConfigError(f"'{key}' must be {what}; got {value!r}")
