"""Search spaces shared by ``dynarl sweep`` and ``dynarl tune``: TOML tables of dotted config keys, checked
against the algorithm's config before any trial starts.

A distribution is a one-entry inline table (the forms Optuna's ``suggest_*`` take):

    "learner.actor_lr" = { loguniform = [1e-4, 1e-2] }   # log-uniform on [a, b], 0 < a < b
    "learner.tau"      = { uniform = [0.001, 0.05] }     # uniform on [a, b]
    batch_size         = { int = [32, 256] }             # integer uniform on {a, ..., b}
    "learner.gamma"    = { choice = [0.98, 0.99] }       # one of the values (lists allowed: [[64,64],[256,256]])

Tables may be written with dotted keys (``learner.actor_lr = ...``) or quoted ones; both name the same key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynarl.algos.registry import build_config, get_algorithm
from dynarl.config import flat_keys, set_key
from dynarl.errors import ConfigError

KINDS = ("loguniform", "uniform", "int", "choice")
FORMS = "{ loguniform = [a, b] }, { uniform = [a, b] }, { int = [a, b] } or { choice = [v1, v2, ...] }"


def read_table(path: str | Path, what: str) -> dict:
    """A TOML (or, by suffix, JSON) file as a dict; a missing or malformed file is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist (or is not a file)")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{what} '{path}' is not valid JSON: {e}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ConfigError(f"reading {what} '{path}' needs Python >= 3.11 or `pip install tomli`") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{what} '{path}' is not valid TOML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a table (key = value lines)")
    return data


def _is_distribution(value) -> bool:
    return isinstance(value, dict) and len(value) >= 1 and set(value) <= set(KINDS)


def flatten(table: dict, algo: str, where: str, leaf=lambda v: False) -> dict[str, Any]:
    """``{"learner": {"actor_lr": x}}`` or ``{"learner.actor_lr": x}`` -> ``{"learner.actor_lr": x}``, every key
    checked against ``algo``'s config: an unknown key raises the config's own ConfigError ("Did you mean ...")."""
    cfg = get_algorithm(algo).config_cls()
    keys = set(flat_keys(cfg))
    out: dict[str, Any] = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            key = prefix + k
            if key in keys:
                out[key] = v
            elif isinstance(v, dict) and not leaf(v):
                walk(v, key + ".")
            else:
                try:
                    set_key(cfg, key, None)  # raises the "unknown config key" (or "is a group") error with hints
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
                raise ConfigError(f"{where}: '{key}' cannot be set here")

    walk(table, "")
    return out


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@dataclass(frozen=True)
class Distribution:
    """One searched key: ``kind`` in KINDS and its ``args`` (bounds, or the choices)."""

    kind: str
    args: tuple

    @classmethod
    def parse(cls, key: str, spec, where: str, default=None) -> "Distribution":
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{where}: {key} = {json.dumps(spec)} is not a distribution; write {FORMS}")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: {key} = {{ {kind} = {json.dumps(args)} }} needs a non-empty list")
        if kind == "choice":
            return cls(kind, tuple(args))
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}: {key} = {{ {kind} = {json.dumps(args)} }} needs two numbers [low, high]")
        low, high = args
        if kind == "int" and not all(float(a).is_integer() for a in args):
            raise ConfigError(f"{where}: {key} = {{ int = {json.dumps(args)} }} needs two integers")
        if not (low < high if kind != "int" else low <= high):
            raise ConfigError(f"{where}: {key} = {{ {kind} = {json.dumps(args)} }} is empty: needs low < high")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(f"{where}: {key} = {{ loguniform = {json.dumps(args)} }} needs 0 < low")
        if kind in ("uniform", "loguniform") and isinstance(default, int) and not isinstance(default, bool):
            raise ConfigError(f"{where}: {key} is an integer key; write {{ int = [{int(low)}, {int(high)}] }} instead of {kind}")
        if kind == "int":
            return cls(kind, (int(low), int(high)))
        return cls(kind, (float(low), float(high)))

    def sample(self, rng: np.random.Generator):
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.args[0]), math.log(self.args[1]))))
        if self.kind == "uniform":
            return float(rng.uniform(*self.args))
        if self.kind == "int":
            return int(rng.integers(self.args[0], self.args[1] + 1))
        return self.args[int(rng.integers(len(self.args)))]

    def suggest(self, trial, key: str):
        """The value an Optuna trial suggests for ``key`` (choices that are lists go through their JSON text)."""
        if self.kind in ("loguniform", "uniform"):
            return trial.suggest_float(key, *self.args, log=self.kind == "loguniform")
        if self.kind == "int":
            return trial.suggest_int(key, *self.args)
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in self.args):
            return trial.suggest_categorical(key, list(self.args))
        return json.loads(trial.suggest_categorical(key, [json.dumps(v) for v in self.args]))

    def extremes(self) -> tuple:
        """Values that bound what ``sample`` can return (to validate the config before any trial runs)."""
        return self.args

    def as_json(self) -> dict:
        return {self.kind: list(self.args)}


def parse_distributions(table: dict, algo: str, where: str) -> dict[str, Distribution]:
    """A TOML table of distributions -> ``{dotted key: Distribution}``, keys and value types checked."""
    cfg = get_algorithm(algo).config_cls()
    return {key: Distribution.parse(key, spec, where, default=_get(cfg, key)) for key, spec in flatten(table, algo, where, leaf=_is_distribution).items()}


def check_values(algo: str, env: str | None, base: dict, values: dict[str, list], where: str) -> None:
    """Build the config once per listed value of each key (with ``base`` for the rest): a value the config
    refuses (wrong type, out of range) is reported, naming the key, before anything runs."""
    for key, options in values.items():
        for v in options:
            try:
                build_config(algo, env, {**base, key: v})
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
