"""`dynarl list ALGO`: every config key of the algorithm with its type, default and help, and its presets."""

from dataclasses import dataclass, field

from dynarl.algos import get_algorithm
from dynarl.cli import main
from dynarl.config import describe, flat_keys, non_negative, one_of, param, positive, positive_sizes
from dynarl.presets import all_presets


@dataclass
class _Inner:
    lr: float = param(3e-4, positive, "Adam learning rate")
    sizes: tuple[int, ...] = param((64, 32), positive_sizes, "hidden widths")
    clip: float | None = param(None, help="clip to +- this (null: no clipping)")


@dataclass
class _Base:
    name: str = param("a", one_of("a", "b"), "which one")
    steps: int = param(10, non_negative, "budget")


@dataclass
class _Child(_Base):
    steps: int = 5  # a new default only: the help and check of _Base still describe it
    quiet: bool = param(False, help="")
    inner: _Inner = field(default_factory=_Inner)


def test_describe_rows():
    assert describe(_Child()) == [
        ("name", "str", "a", "which one [one of 'a', 'b']"),
        ("steps", "int", "5", "budget [>= 0]"),
        ("quiet", "bool", "false", ""),
        ("inner.lr", "float", "0.0003", "Adam learning rate [> 0]"),
        ("inner.sizes", "list[int]", "[64,32]", "hidden widths [a non-empty list of positive ints]"),
        ("inner.clip", "float | null", "null", "clip to +- this (null: no clipping)"),
    ]


def _default_text(cfg, key: str) -> str:
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def test_list_sac_shows_every_key_with_its_default(capsys):
    assert main(["list", "sac"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    cfg = get_algorithm("sac").config_cls()
    keys = flat_keys(cfg)
    assert any(k.startswith("learner.") for k in keys) and any("." not in k for k in keys)
    where = {}
    for key in keys:
        found = [i for i, line in enumerate(lines) if line.split()[:3] == [key, "=", _default_text(cfg, key)]]
        assert len(found) == 1, (key, _default_text(cfg, key), out)
        where[key] = found[0]
    # groups: the run keys, then the learner section, then the presets
    run_rows = [where[k] for k in keys if "." not in k]
    learner_rows = [where[k] for k in keys if k.startswith("learner.")]
    assert lines.index("run:") < min(run_rows) and max(run_rows) < lines.index("learner:") < min(learner_rows)
    assert len(where) == len(keys) == sum(1 for line in lines if " = " in line)  # nothing listed twice or extra
    # type and help text, with what the check accepts
    by_key = {line.split()[0]: line for line in lines if " = " in line}
    assert by_key["device"].split()[3] == "str" and "auto picks cuda when available" in by_key["device"] and "one of 'auto', 'cpu', 'cuda'" in by_key["device"]
    assert by_key["learner.actor_lr"].split()[3] == "float" and by_key["learner.actor_lr"].endswith("[> 0]")
    assert by_key["learner.hidden_sizes"].split()[3] == "list[int]"
    assert "algorithm name" in by_key["algo"]  # redeclared in SACConfig without help: the base field's help
    presets = sorted(env for algo, env in all_presets() if algo == "sac")
    header = lines.index("presets (task: source; the keys they set; a dataset of another level picks that level's):")
    assert presets and header > max(where.values())
    for env in presets:
        assert any(line.startswith(f"  {env}: ") for line in lines[header:]), env


def test_list_unknown_algorithm_is_the_train_error(capsys):
    assert main(["list", "sacc"]) == 2
    listed = capsys.readouterr()
    assert listed.out == "" and "Traceback" not in listed.err
    assert "unknown algorithm 'sacc'" in listed.err and "Did you mean: sac" in listed.err and listed.err.count("\n") == 1
    assert main(["train", "sacc"]) == 2
    assert capsys.readouterr().err == listed.err


def test_list_without_algorithm_is_unchanged(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("algorithms:\n") and "presets (algorithm, task: source):" in out and " = " not in out


def test_every_algorithm_lists(capsys):
    from dynarl.algos import ALGORITHMS

    for name in ALGORITHMS:
        assert main(["list", name]) == 0
        listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if " = " in line]
        assert listed == [k for k in flat_keys(get_algorithm(name).config_cls()) if "." not in k] + [k for k in flat_keys(get_algorithm(name).config_cls()) if "." in k], name
