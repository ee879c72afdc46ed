"""Algorithm names -> classes, and building a validated config: defaults <- preset <- user overrides."""

from __future__ import annotations

import difflib
import importlib

from dynarl.config import apply_overrides, set_key, validate
from dynarl.errors import ConfigError
from dynarl.presets import get_preset

# name -> "module:Class"; imported on first use so the CLI starts fast and families stay independent
ALGORITHMS = {
    "sac": "dynarl.algos.sac:SAC",
    "td3": "dynarl.algos.td3:TD3",
    "ddpg": "dynarl.algos.ddpg:DDPG",
    "ppo": "dynarl.algos.on_policy:PPO",
    "a2c": "dynarl.algos.on_policy:A2C",
    "trpo": "dynarl.algos.on_policy:TRPO",
    "reinforce": "dynarl.algos.on_policy:REINFORCE",
    "slbo": "dynarl.algos.slbo:SLBO",
    "pets": "dynarl.algos.pets:PETS",
    "poplin_a": "dynarl.algos.poplin:POPLINA",
    "poplin_p": "dynarl.algos.poplin:POPLINP",
    "mbpo": "dynarl.algos.mbpo:MBPO",
    "dyna_td3": "dynarl.algos.mbpo:DynaTD3",
    "dyna_ddpg": "dynarl.algos.mbpo:DynaDDPG",
}


def get_algorithm(name: str):
    key = name.lower()
    if key not in ALGORITHMS:
        close = difflib.get_close_matches(key, ALGORITHMS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm '{name}'.{hint} Available: {', '.join(sorted(ALGORITHMS))}")
    module, cls = ALGORITHMS[key].split(":")
    return getattr(importlib.import_module(module), cls)


def build_config(algo: str, env: str | None, overrides: dict | None = None, *, raw: bool = False):
    """The resolved config: the algorithm's defaults, then the (algo, env) preset, then ``overrides``.

    ``raw`` marks override values as CLI strings (``"1e-3"``, ``"[256,256]"``) to parse by field type.
    """
    cls = get_algorithm(algo)
    cfg = cls.config_cls()
    overrides = dict(overrides or {})
    cfg.env = env or overrides.pop("env", None) or cfg.env
    overrides.pop("algo", None)
    preset = get_preset(cls.name, cfg.env)
    if preset is not None:
        apply_overrides(cfg, preset.overrides)
    apply_overrides(cfg, overrides, raw=raw)
    validate(cfg)
    return cfg


def config_from_dict(algo: str, saved: dict, run_overrides: dict | None = None):
    """Rebuild a saved (resolved) config, then apply run-level changes such as ``steps``."""
    cls = get_algorithm(algo)
    cfg = cls.config_cls()

    def walk(d: dict, prefix: str = ""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "env_kwargs":
                walk(v, prefix + k + ".")
            else:
                set_key(cfg, prefix + k, v)

    walk(saved)
    apply_overrides(cfg, run_overrides or {})
    validate(cfg)
    return cfg
