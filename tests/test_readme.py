"""Every block of the README works as written: the Python block runs verbatim, every `dynarl` command
line parses and (for `train`) builds a valid config with a real env, and `pip install` names real extras."""

import re
import shlex
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands(prefix: str) -> list[str]:
    lines = [line.split("#")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    return [part.strip() for line in lines for part in line.split("&&") if part.strip().startswith(prefix)]


def test_the_python_block_runs_as_written(tmp_path, monkeypatch):
    (block,) = _blocks("python")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["agent"].env_steps == 2_000 and scope["action"].shape == (1,)
    assert (tmp_path / "runs" / "pendulum" / "summary.json").is_file() and (tmp_path / "pendulum_sac.safetensors").is_file()


@pytest.mark.parametrize("line", _commands("dynarl "))
def test_every_command_line_is_valid(line):
    from dynarl.algos import build_config, get_algorithm
    from dynarl.cli import DEFAULT_ALGO, _parser
    from dynarl.config import parse_overrides

    words = [w for w in shlex.split(line)[1:] if not (w.startswith("[") or w in ("...", "|"))]
    if "RUN_DIR" in line or "ALGO" in line:  # the synopsis lines: placeholders, checked by the parser's own help
        return
    args, extra = _parser().parse_known_args(words)
    if args.command != "train":
        return
    words = list(args.words) + extra
    algo = words.pop(0) if words and "=" not in words[0] else DEFAULT_ALGO
    overrides = parse_overrides(words)
    for key in ("steps", "seed", "device"):
        if getattr(args, key) is not None:
            overrides[key] = str(getattr(args, key))
    cfg = build_config(get_algorithm(algo).name, args.env, overrides, raw=True)
    get_algorithm(algo)(config=cfg)  # the env exists and the algorithm can drive it


def test_pip_lines_name_real_extras():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for line in _commands("pip install -e"):
        named = re.search(r'\[(.*?)\]', line)
        assert named and set(named.group(1).split(",")) <= extras, line
