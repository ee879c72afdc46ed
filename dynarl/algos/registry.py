"""Algorithm names -> classes (registered where each is defined), and building a validated config:
defaults <- preset <- user overrides."""

from __future__ import annotations

import difflib

from dynarl.config import apply_overrides, set_key, validate
from dynarl.errors import ConfigError
from dynarl.presets import get_preset

ALGORITHMS: dict[str, type] = {}  # name -> class, filled by @register where each algorithm is defined


def register(cls):
    """Class decorator: make an algorithm known to ``dynarl train``, ``dynarl list``, ``dynarl.load`` and the tests."""
    if cls.name in ALGORITHMS and ALGORITHMS[cls.name] is not cls:
        raise ValueError(f"two algorithms are registered as {cls.name!r}: {ALGORITHMS[cls.name].__qualname__} and {cls.__qualname__}")
    ALGORITHMS[cls.name] = cls
    return cls


def get_algorithm(name: str):
    import dynarl.algos  # noqa: F401  (importing the package registers every algorithm)

    key = name.lower()
    if key not in ALGORITHMS:
        close = difflib.get_close_matches(key, ALGORITHMS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm '{name}'.{hint} Available: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[key]


def build_config(algo: str, env: str | None, overrides: dict | None = None, *, raw: bool = False):
    """The resolved config: the algorithm's defaults, then the (algo, env) preset (for offline runs, the one of the
    dataset's level where there is one), then ``overrides``.

    ``raw`` marks override values as CLI strings (``"1e-3"``, ``"[256,256]"``) to parse by field type.
    """
    cls = get_algorithm(algo)
    cfg = cls.config_cls()
    overrides = dict(overrides or {})
    cfg.env = env or overrides.pop("env", None) or cls.default_env(overrides) or cfg.env
    overrides.pop("algo", None)
    preset = get_preset(cls.name, cfg.env, str(overrides.get("dataset", getattr(cfg, "dataset", ""))))
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
