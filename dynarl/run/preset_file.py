"""Preset files: tuned hyper-parameters in a file, for ``dynarl train --preset FILE`` (``dynarl tune`` writes them).

The file (TOML, or JSON by suffix) mirrors :class:`dynarl.presets.Preset`::

    algo = "sac"                     # optional: the algorithm the preset is for (checked)
    env = "Pendulum-v1"              # optional: the env to train on when --env is not given
    source = "dynarl tune: ..."      # optional: where the numbers come from
    [overrides]                      # dotted config keys (or nested tables)
    "learner.actor_lr" = 0.00123

A file without ``[overrides]`` is read as the overrides themselves. ``dynarl train`` applies it between the
built-in preset of (algo, env) and the command line's ``key=value`` overrides.
"""

from __future__ import annotations

import json
from pathlib import Path

from dynarl.errors import ConfigError
from dynarl.run.space import flatten, read_table

META = ("algo", "env", "source")


def read_preset(path: str | Path, algo: str) -> tuple[str | None, dict, str]:
    """``(env or None, {dotted key: value}, source)`` of a preset file for ``algo``; bad keys raise ConfigError."""
    data = read_table(path, "preset file")
    where = f"preset file '{path}'"
    if data.get("algo") is not None and str(data["algo"]).lower() != algo:
        raise ConfigError(f"{where} is for {data['algo']!r}, not {algo!r}; train {data['algo']} with it or pick another preset")
    overrides = data["overrides"] if "overrides" in data else {k: v for k, v in data.items() if k not in META}
    extra = [k for k in data if k not in (*META, "overrides")] if "overrides" in data else []
    if extra:
        raise ConfigError(f"{where}: '{extra[0]}' belongs under [overrides] (top-level keys: algo, env, source, overrides)")
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: overrides must be a table of config keys")
    flat = flatten(overrides, algo, where)
    for key in ("algo", "seed"):
        if key in flat:
            raise ConfigError(f"{where}: '{key}' does not belong in a preset")
    env = data.get("env")
    if env is not None and not isinstance(env, str):
        raise ConfigError(f"{where}: env = {env!r} must be a string")
    return env, flat, str(data.get("source", path))


def as_cli_strings(overrides: dict) -> dict[str, str]:
    """Typed values as the ``key=value`` strings ``build_config(raw=True)`` parses (strings stay verbatim)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()}


def _toml_value(v) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # numbers, booleans and strings are written alike in JSON and TOML


def write_preset(path: str | Path, algo: str, env: str | None, overrides: dict, source: str) -> Path:
    """Write a preset file (TOML, or JSON when ``path`` ends in .json) that :func:`read_preset` reads back."""
    path = Path(path)
    clean = {k: v for k, v in overrides.items() if v is not None}  # TOML has no null: a None keeps the default
    if path.suffix.lower() == ".json":
        text = json.dumps({"algo": algo, "env": env, "source": source, "overrides": clean}, indent=2) + "\n"
    else:
        head = [f"algo = {json.dumps(algo)}"] + ([f"env = {json.dumps(env)}"] if env else []) + [f"source = {json.dumps(source)}", "", "[overrides]"]
        text = "\n".join(head + [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in clean.items()]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    from dynarl import checkpoint as ckpt

    ckpt.atomic_write_bytes(path, text.encode())
    return path
