"""Every block of the README works as written: the Python section's block runs verbatim (the offline one compiles:
it trains for 100k steps), every `dynarl` command line parses and (for `train`) builds a valid config with a
real env (offline ones on a small dataset of the id they name, made here), and `pip install` names real extras."""

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
    blocks = _blocks("python")
    (block,) = [b for b in blocks if "dynarl.SAC(" in b]
    for other in blocks:
        compile(other, "README.md", "exec")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["agent"].env_steps == 2_000 and scope["action"].shape == (1,)
    assert (tmp_path / "runs" / "pendulum" / "summary.json").is_file() and (tmp_path / "pendulum_sac.safetensors").is_file()


DATASET_ENVS = {"pendulum": "Pendulum-v1", "cartpole": "CartPole-v1", "halfcheetah": "HalfCheetah-v5"}


def _make_dataset(dataset_id: str) -> None:
    """A two-episode random dataset under the id a README line names, on the env its id names."""
    import gymnasium as gym
    import numpy as np

    from dynarl.data.datasets import write_dataset
    from dynarl.run.collect import random_behavior, rollout_episodes

    env = gym.make(DATASET_ENVS[dataset_id.split("/")[1]], max_episode_steps=20)
    write_dataset(dataset_id, rollout_episodes(env, random_behavior(env.action_space, np.random.default_rng(0)), 2, 0), env, algorithm_name="random")


@pytest.mark.parametrize("line", _commands("dynarl "))
def test_every_command_line_is_valid(line, tmp_path, monkeypatch):
    from dynarl.algos import build_config, get_algorithm
    from dynarl.cli import DEFAULT_ALGO, _parser
    from dynarl.config import parse_overrides

    words = [w for w in shlex.split(line)[1:] if not (w.startswith("[") or w in ("...", "|"))]
    if "RUN_DIR" in line or "ALGO" in line or " ID" in line:  # the synopsis lines: placeholders, checked by the parser's own help
        return
    args, extra = _parser().parse_known_args(words)
    if args.command != "train":
        return
    words = list(args.words) + extra
    algo = words.pop(0) if words and "=" not in words[0] else DEFAULT_ALGO
    overrides = parse_overrides(words)
    for key in ("steps", "seed", "device", "dataset"):
        if getattr(args, key) is not None:
            overrides[key] = str(getattr(args, key))
    if args.dataset:
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
        _make_dataset(args.dataset)
    cfg = build_config(get_algorithm(algo).name, args.env, overrides, raw=True)
    get_algorithm(algo)(config=cfg)  # the env exists and the algorithm can drive it


def test_pip_lines_name_real_extras():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for line in _commands("pip install -e"):
        named = re.search(r'\[(.*?)\]', line)
        assert named and set(named.group(1).split(",")) <= extras, line
