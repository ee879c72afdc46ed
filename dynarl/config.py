"""Typed configs, ``key=value`` overrides and validation before any work starts.

A config is a dataclass whose fields carry their constraint in ``metadata["check"]``. Nested configs
(e.g. ``learner``) are addressed with dotted keys: ``learner.actor_lr=1e-3``. Errors name the field,
the bad value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from dynarl.errors import ConfigError

Check = Callable[[Any], "str | None"]  # returns an error text ("must be > 0") or None


# --- constraints -------------------------------------------------------------------------------


def positive(x) -> str | None:
    return None if x > 0 else "must be > 0"


def non_negative(x) -> str | None:
    return None if x >= 0 else "must be >= 0"


def unit_interval_open_closed(x) -> str | None:
    return None if 0 < x <= 1 else "must be in (0, 1]"


def unit_interval(x) -> str | None:
    return None if 0 <= x <= 1 else "must be in [0, 1]"


def one_of(*choices: str) -> Check:
    def check(x) -> str | None:
        return None if x in choices else f"must be one of {', '.join(map(repr, choices))}"

    return check


def positive_sizes(x) -> str | None:
    return None if len(x) > 0 and all(h > 0 for h in x) else "must be a non-empty list of positive ints"


def param(default, check: Check | None = None, help: str = ""):
    """A config field with a default, a constraint and a one-line description."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata={"check": check, "help": help})


# --- generic dataclass machinery ----------------------------------------------------------------


def _is_config(obj) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flat_keys(cfg, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _is_config(value):
            keys += flat_keys(value, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert ``value`` (parsed JSON or a raw string) to ``typ`` or raise ConfigError."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}={value!r} is invalid")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}={value!r} is invalid: expected true or false")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is invalid: expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} is invalid: expected an integer")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} is invalid: expected a number")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}={value!r} is invalid: expected a string")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} is invalid: expected a list such as [256,256]")
        item = args[0] if args else Any
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, item, key) for v in value)
    if origin is dict or typ is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{key}={value!r} is invalid: expected a JSON object")
    return value


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def set_key(cfg, key: str, value: Any, *, raw: bool = False) -> None:
    """Set a (dotted) key on a config in place, coercing the value to the field's type."""
    parts = key.split(".")
    target = cfg
    for depth, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(target)}
        if part not in names:
            raise _unknown_key(cfg, key)
        if depth < len(parts) - 1:
            target = getattr(target, part)
            if not _is_config(target):
                raise _unknown_key(cfg, key)
    typ = _field_types(type(target))[parts[-1]]
    if _is_config(getattr(target, parts[-1])):
        raise ConfigError(f"{key} is a group of settings; set one of its fields, e.g. {flat_keys(getattr(target, parts[-1]), key + '.')[0]}=...")
    parsed = _parse_literal(value) if raw and isinstance(value, str) else value
    if raw and typ is str:
        parsed = value  # keep strings such as "1e3" verbatim for str fields
    setattr(target, parts[-1], _coerce(parsed, typ, key))


def _unknown_key(cfg, key: str) -> ConfigError:
    keys = flat_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    short = [k for k in keys if k.split(".")[-1] == key.split(".")[-1]]
    hint = close or short
    msg = f"unknown config key '{key}'."
    if hint:
        msg += f" Did you mean: {', '.join(hint)}?"
    msg += f" Valid keys: {', '.join(keys)}"
    return ConfigError(msg)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["a.b=v", ...]`` (CLI words) -> ``{"a.b": "v"}``; values are parsed later, against field types."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. learner.actor_lr=1e-3)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def apply_overrides(cfg, overrides: dict[str, Any], *, raw: bool = False) -> None:
    """Apply ``{"a.b": v}``; with ``raw`` the values are CLI strings, parsed as JSON where they parse."""
    for k, v in overrides.items():
        set_key(cfg, k, v, raw=raw)


def validate(cfg, prefix: str = "") -> None:
    """Check every field's type and constraint; raise ConfigError naming the first bad one."""
    hints = _field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        key = prefix + f.name
        value = getattr(cfg, f.name)
        if _is_config(value):
            validate(value, key + ".")
            continue
        coerced = _coerce(value, hints[f.name], key)
        if isinstance(coerced, float) and not math.isfinite(coerced):
            raise ConfigError(f"{key}={value!r} is invalid: must be finite")
        setattr(cfg, f.name, coerced)
        check = _declared_metadata(type(cfg), f.name).get("check")  # a subclass's bare default keeps its base's check
        if check is not None and coerced is not None:
            problem = check(coerced)
            if problem:
                raise ConfigError(f"{key}={value!r} is invalid: {problem}")
    post = getattr(cfg, "check", None)
    if callable(post):
        problem = post()
        if problem:
            raise ConfigError(problem)


def to_dict(cfg) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _is_config(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def describe(cfg, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` text rows for every flat key of a config, nested keys dotted, in field order.

    Types and defaults are written as a ``key=value`` override takes them (``true``, ``null``, ``[256,256]``).
    The help ends with what the field's check accepts, in the check's own words. A field that a subclass
    redeclares only to change its default (``algo: str = "sac"``) keeps the help and check of the base class.
    """
    rows = []
    hints = _field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _is_config(value):
            rows += describe(value, prefix + f.name + ".")
            continue
        meta = _declared_metadata(type(cfg), f.name)
        text = meta.get("help", "")
        accepts = _accepts(meta.get("check"), hints[f.name])
        if accepts and accepts.split(":")[0] not in text:  # "in [0, 1)" already said in the help
            text = f"{text} [{accepts}]" if text else f"[{accepts}]"
        rows.append((prefix + f.name, _type_text(hints[f.name]), _value_text(value), text))
    return rows


def _declared_metadata(cls, name: str) -> dict:
    """The metadata of the nearest declaration of field ``name`` that has any (walking up the bases)."""
    for base in cls.__mro__:
        if dataclasses.is_dataclass(base):
            for f in dataclasses.fields(base):
                if f.name == name and f.metadata:
                    return dict(f.metadata)
    return {}


def _accepts(check: Check | None, typ: Any) -> str:
    """What ``check`` accepts, from its complaint about NaN (or ``(NaN,)`` for lists): NaN fails every comparison."""
    if check is None:
        return ""
    args = [a for a in typing.get_args(typ) if a is not type(None)] if typing.get_origin(typ) in (typing.Union, types.UnionType) else [typ]
    probe = (math.nan,) if len(args) == 1 and typing.get_origin(args[0]) is tuple else math.nan
    try:
        problem = check(probe)
    except Exception:  # a check written for one kind of value only: say nothing rather than guess
        return ""
    return problem.removeprefix("must be ") if problem else ""


def _type_text(typ: Any) -> str:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if typ is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is tuple:
        return f"list[{_type_text(args[0]) if args else 'any'}]"
    return getattr(typ, "__name__", str(typ))


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (bool, type(None), tuple, list, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value, separators=(",", ":"))
    return repr(value)


# --- the run-level config shared by every algorithm -----------------------------------------------


@dataclass
class RunConfig:
    """What every training run shares: task, budget, seed, device, logging, evaluation, checkpoints."""

    algo: str = param("sac", help="algorithm name (see `dynarl list`)")
    env: str = param("Pendulum-v1", help="Gymnasium environment id")
    steps: int = param(20_000, positive, "total environment steps")
    seed: int = param(0, non_negative, "seeds python, numpy, torch and the environments")
    device: str = param("auto", one_of("auto", "cpu", "cuda"), "auto picks cuda when available")
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default, one per core); one suits small networks on a shared CPU")
    keep_freed_memory: bool = param(True, help="keep freed CPU memory in the process instead of returning it to the OS each update (glibc; avoids page faults on large tensors; the memory stays at its peak)")
    eval_every: int = param(5_000, positive, "env steps between evaluations")
    eval_episodes: int = param(10, positive, "deterministic episodes per evaluation")
    checkpoint_every: int = param(10_000, positive, "env steps between checkpoints (one is also written at the end)")
    keep_checkpoints: int = param(2, positive, "checkpoints kept in all, newest first (older ones are deleted)")
    log_every: int = param(1_000, positive, "env steps between metric rows / console lines")
    quiet: bool = param(False, help="no console progress")
