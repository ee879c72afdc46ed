import pytest

from dynarl.algos import build_config
from dynarl.config import parse_overrides, to_dict
from dynarl.errors import ConfigError
from dynarl.presets import all_presets, get_preset


def test_defaults_preset_then_overrides():
    cfg = build_config("sac", "Pendulum-v1", {})
    preset = get_preset("sac", "Pendulum-v1")
    assert cfg.learner.actor_lr == preset.overrides["learner.actor_lr"] == 1e-3
    cfg = build_config("sac", "Pendulum-v1", parse_overrides(["learner.actor_lr=5e-4", "learner.hidden_sizes=[64,64]", "seed=3", "quiet=true"]), raw=True)
    assert cfg.learner.actor_lr == 5e-4 and cfg.learner.hidden_sizes == (64, 64) and cfg.seed == 3 and cfg.quiet is True
    # the resolved config has every default filled in
    d = to_dict(cfg)
    assert d["learner"]["gamma"] == 0.99 and d["buffer_size"] > 0 and d["algo"] == "sac"


PRESET_CASES = sorted((algo, env, level) for (algo, env), preset in all_presets().items() for level in ["", *preset.levels])


@pytest.mark.parametrize("algo,env,level", PRESET_CASES)
def test_every_preset_builds_a_valid_config_with_its_values(algo, env, level):
    """Each preset names real keys with valid values, and a run on its task gets them (offline ones: on a dataset
    of that task, whose env picks the preset, and whose level picks the level's variant)."""
    from dynarl.algos import get_algorithm
    from dynarl.config import flat_keys

    dataset = f"local/any/{level or 'medium'}-v0"
    extra = {"dataset": dataset} if "dataset" in flat_keys(get_algorithm(algo).config_cls()) else {}
    cfg = to_dict(build_config(algo, env, extra))
    preset = get_preset(algo, env, dataset)
    assert preset is (get_preset(algo, env).levels[level] if level else get_preset(algo, env))
    for key, value in preset.overrides.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == (list(value) if isinstance(value, tuple) else value), (algo, env, level, key)


def test_a_dataset_id_picks_its_levels_preset_and_overrides_still_win():
    """OfflineRL-Kit's MOPO lambda is 5 on hopper-medium and 2.5 on hopper-medium-replay; CORL's Hopper CQL
    normalises rewards on medium only. Minari, D4RL and CORL spellings of a level all name it."""
    from dynarl.presets.common import dataset_level

    levels = ("medium-replay", "medium-expert", "expert", "random")
    for dataset, level in [("local/hopper/medium-replay-v0", "medium-replay"), ("hopper-medium-replay-v2", "medium-replay"),
                           ("x/hopper/medium_expert-v1", "medium-expert"), ("mujoco/hopper/expert-v0", "expert"),
                           ("local/hopper/medium-v0", None), ("mujoco/hopper/simple-v0", None), ("local/hopper/not-random-enough-v0", None)]:
        assert dataset_level(dataset, levels) == level, dataset
    assert build_config("mopo", "Hopper-v5", {"dataset": "local/hopper/medium-v0"}).penalty_coef == 5.0
    assert build_config("mopo", "Hopper-v5", {"dataset": "local/hopper/medium-replay-v0"}).penalty_coef == 2.5
    assert build_config("mopo", "Hopper-v5", parse_overrides(["dataset=local/hopper/medium-replay-v0", "penalty_coef=1"]), raw=True).penalty_coef == 1.0
    assert build_config("combo", "Walker2d-v5", {"dataset": "d/walker2d/medium-replay-v0"}).learner.cql_alpha == 0.5
    assert build_config("cql", "Hopper-v5", {"dataset": "local/hopper/medium-v0"}).normalize_reward is True
    assert build_config("cql", "Hopper-v5", {"dataset": "local/hopper/medium-replay-v0"}).normalize_reward is False
    iql = build_config("iql", "Hopper-v5", {"dataset": "local/hopper/medium-expert-v0"})
    assert (iql.learner.beta, iql.learner.expectile, iql.learner.actor) == (6.0, 0.5, "gaussian")


def test_unknown_key_suggests_close_matches():
    with pytest.raises(ConfigError, match=r"unknown config key 'learner.actor_lrr'.*Did you mean: learner.actor_lr"):
        build_config("sac", "Pendulum-v1", {"learner.actor_lrr": 1e-3})


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("learner.actor_lr", "-0.001", r"learner.actor_lr=.*must be > 0"),
        ("learner.gamma", "1.5", r"learner.gamma=.*must be in \(0, 1\]"),
        ("learner.gamma", "0", r"learner.gamma=.*must be in \(0, 1\]"),
        ("batch_size", "abc", r"batch_size='abc' is invalid: expected an integer"),
        ("batch_size", "2.5", r"expected an integer"),
        ("device", "tpu", r"device=.*must be one of"),
        ("learner.hidden_sizes", "[0,3]", r"positive ints"),
        ("quiet", "maybe", r"expected true or false"),
    ],
)
def test_bad_values_name_field_value_and_rule(key, value, message):
    with pytest.raises(ConfigError, match=message):
        build_config("sac", "Pendulum-v1", {key: value}, raw=True)


def test_unknown_algorithm_suggests():
    with pytest.raises(ConfigError, match="Did you mean: sac"):
        build_config("sacc", "Pendulum-v1", {})


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["learner.actor_lr"])


def test_cross_field_check():
    with pytest.raises(ConfigError, match="batch_size=512 is larger than buffer_size=100"):
        build_config("td3", "Pendulum-v1", {"batch_size": 512, "buffer_size": 100})


def test_a_field_redeclared_with_a_bare_default_keeps_its_base_check():
    import pytest

    import dynarl
    from dynarl.errors import ConfigError

    with pytest.raises(ConfigError, match="steps=0 is invalid: must be > 0"):
        dynarl.DQN(steps=0)  # DQNConfig redeclares steps = 50_000 without a check
    with pytest.raises(ConfigError, match="n_steps=0 is invalid: must be > 0"):
        dynarl.PPO(n_steps=0)
