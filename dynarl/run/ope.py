"""Off-policy evaluation: importance sampling, doubly robust and FQE estimates of a target policy's value
from episodes of a behaviour policy (seed 001; inventory V5, V6, T4).

Episodes are padded arrays [N episodes, T steps] with ``mask`` [N, T] (1 where the step exists). With
rho_t = pi_e(a_t|s_t) / pi_b(a_t|s_t) given as ``log_ratio`` and the cumulative weight
w_t = prod_{t' <= t} rho_t' (w_{-1} = 1), the estimators are

    trajectory IS        (prod_t rho_t) sum_t gamma^t r_t                                   per episode, then mean
    per-decision IS      sum_t gamma^t w_t r_t                                              per episode, then mean
                         (V5's recursion V^{T+1-t} = rho_t (r_t + gamma V^{T-t}))
    weighted IS          sum_n w_{n,T} G_n / sum_n w_{n,T}                                  (Precup et al. 2000)
    weighted PDIS        sum_t gamma^t sum_n w_{n,t} r_{n,t} / sum_n w_{n,t}
    doubly robust        V_DR^{T+1-t} = V^(s_t) + rho_t (r_t + gamma V_DR^{T-t} - Q^(s_t, a_t))   (V6; Jiang & Li 2016)
                         = sum_t gamma^t [w_t (r_t - Q^_t) + w_{t-1} V^_t]                     (its unrolled form)

Padded steps carry log ratio 0 and reward 0 (an absorbing state after the episode ends), so an episode that
ended keeps its final weight in the self-normalised sums. Trajectory IS, PDIS and DR are unbiased; the
weighted forms are biased but consistent and have far lower variance. T4: the weights w_T are products over
the horizon, so their variance grows exponentially with T; :func:`is_weight_diagnostics` reports the max
weight and the effective sample size (sum w)^2 / sum w^2 per step.

Every estimator also accepts leading batch dimensions ([..., N, T] -> [..., N] or [...]), which is what
:func:`bootstrap_interval` uses to evaluate all its resamples at once.
"""

from __future__ import annotations

import inspect
from typing import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch

from dynarl.data.batch import Batch
from dynarl.learners.fqe import FQEConfig, FQELearner

ESTIMATORS = ("IS", "PDIS", "WIS", "WPDIS", "DR", "FQE")


# --- weights ------------------------------------------------------------------------------------


def _discounts(T: int, gamma: float) -> np.ndarray:
    return gamma ** np.arange(T, dtype=np.float64)


def _masked(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # np.where, not x * mask: a padded log ratio may be -inf (a deterministic target policy), and -inf * 0 = nan
    return np.where(mask > 0, np.asarray(x, dtype=np.float64), 0.0)


def log_cumulative_weights(log_ratio: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """log w_t = sum_{t' <= t} log rho_t' [..., N, T]; padded steps add 0."""
    return np.cumsum(_masked(log_ratio, mask), axis=-1)


def cumulative_weights(log_ratio: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """w_t = prod_{t' <= t} rho_t' [..., N, T]."""
    return np.exp(log_cumulative_weights(log_ratio, mask))


def _normalised(log_w: np.ndarray) -> np.ndarray:
    """w / max_n w along the episode axis (-2): self-normalised sums do not change and nothing overflows."""
    top = log_w.max(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.exp(log_w - np.where(np.isfinite(top), top, 0.0))


# --- estimators ---------------------------------------------------------------------------------


def discounted_returns(rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """G = sum_t gamma^t r_t [..., N] (the on-policy Monte-Carlo estimate when pi_e = pi_b)."""
    return (_masked(rewards, mask) * _discounts(rewards.shape[-1], gamma)).sum(-1)


def trajectory_is(rewards: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """Trajectory-wise IS, per episode [..., N]: (prod_t rho_t) sum_t gamma^t r_t. The estimate is the mean."""
    w_T = np.exp(_masked(log_ratio, mask).sum(-1))
    return w_T * discounted_returns(rewards, mask, gamma)


def per_decision_is(rewards: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """Per-decision IS, per episode [..., N]: sum_t gamma^t (prod_{t' <= t} rho_t') r_t (seed V5's recursion
    V^{T+1-t} = rho_t (r_t + gamma V^{T-t}) unrolled). The estimate is the mean."""
    w = cumulative_weights(log_ratio, mask)
    return (w * _masked(rewards, mask) * _discounts(rewards.shape[-1], gamma)).sum(-1)


def weighted_is(rewards: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """Weighted (self-normalised) IS [...]: sum_n w_{n,T} G_n / sum_n w_{n,T}. nan when every weight is 0."""
    log_w_T = _masked(log_ratio, mask).sum(-1)[..., None]  # [..., N, 1]
    w = _normalised(log_w_T)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * discounted_returns(rewards, mask, gamma)).sum(-1) / w.sum(-1)


def weighted_per_decision_is(rewards: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """Weighted per-decision IS [...]: sum_t gamma^t sum_n w_{n,t} r_{n,t} / sum_n w_{n,t}
    (each step self-normalised; ended episodes keep their final weight and add reward 0)."""
    w = _normalised(log_cumulative_weights(log_ratio, mask))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_step = (w * _masked(rewards, mask)).sum(-2) / w.sum(-2)  # [..., T]
    return (per_step * _discounts(rewards.shape[-1], gamma)).sum(-1)


def doubly_robust(rewards: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, gamma: float, q_hat: np.ndarray, v_hat: np.ndarray) -> np.ndarray:
    """Doubly robust estimate per episode [..., N] (seed V6; Jiang & Li 2016, eq. 10):

        V_DR^{T+1-t} = V^(s_t) + rho_t (r_t + gamma V_DR^{T-t} - Q^(s_t, a_t)),  V_DR^0 = 0,

    computed in its unrolled form sum_t gamma^t [w_t (r_t - Q^_t) + w_{t-1} V^_t] with w_{-1} = 1.
    ``q_hat[n, t] = Q^(s_t, a_t)``, ``v_hat[n, t] = E_{a ~ pi_e} Q^(s_t, a)``. Unbiased when the ratios are
    exact, whatever Q^ is; its variance falls as Q^ approaches Q^{pi_e}. The estimate is the mean.
    """
    log_w = log_cumulative_weights(log_ratio, mask)
    w = np.exp(log_w)
    w_prev = np.exp(np.concatenate([np.zeros_like(log_w[..., :1]), log_w[..., :-1]], axis=-1))
    terms = w * (_masked(rewards, mask) - _masked(q_hat, mask)) + w_prev * _masked(v_hat, mask)
    return (terms * _discounts(rewards.shape[-1], gamma)).sum(-1)


def doubly_robust_recursive(rewards: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, gamma: float, q_hat: np.ndarray, v_hat: np.ndarray) -> np.ndarray:
    """Seed V6's backward recursion written out (a loop over t; for checking :func:`doubly_robust`)."""
    rho, r, q, v = (_masked(x, mask) for x in (np.exp(_masked(log_ratio, mask)), rewards, q_hat, v_hat))
    v_dr = np.zeros(rewards.shape[:-1])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        step = v[..., t] + rho[..., t] * (r[..., t] + gamma * v_dr - q[..., t])
        v_dr = np.where(mask[..., t] > 0, step, 0.0)
    return v_dr


# --- diagnostics (T4) ---------------------------------------------------------------------------


def is_weight_diagnostics(log_ratio: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """IS-weight statistics per horizon t (arrays [T]) of w_t = prod_{t' <= t} rho_t' over the N episodes:

    - ``max_weight``: max_n w_{n,t};  ``mean_weight``: mean_n w_{n,t} (1 in expectation);
    - ``ess``: (sum_n w_{n,t})^2 / sum_n w_{n,t}^2 (Kong 1992), in [1, N]; ``ess_fraction`` = ess / N;
    - ``max_share``: max_n w_{n,t} / sum_n w_{n,t}, the share of the heaviest episode.

    Seed T4: w_T is a product over the horizon, so its variance grows (and the ESS falls) exponentially in T.
    """
    log_w = log_cumulative_weights(log_ratio, mask)
    w = np.exp(log_w)
    wn = _normalised(log_w)
    n = log_w.shape[-2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = wn.sum(-2) ** 2 / (wn**2).sum(-2)
        max_share = wn.max(-2) / wn.sum(-2)
    return {"max_weight": w.max(-2), "mean_weight": w.mean(-2), "ess": ess, "ess_fraction": ess / n, "max_share": max_share}


# --- bootstrap ----------------------------------------------------------------------------------


def bootstrap_interval(
    estimator: Callable[..., np.ndarray],
    arrays: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
    max_elements: int = 1 << 23,
    **fixed,
) -> tuple[float, float, float]:
    """(estimate, low, high): the estimate on all episodes and a percentile bootstrap interval (Efron 1979).

    ``arrays`` maps the estimator's argument names to per-episode arrays [N, ...]; each resample draws N
    episode rows with replacement from all of them together, ``fixed`` (e.g. ``gamma``) is passed unchanged.
    Entries the estimator does not take are ignored, so one dict from :func:`episodes_to_arrays` serves all.
    An estimator may return per-episode values [N] (their mean is the estimate) or a scalar. Resamples are
    evaluated as one batch, in chunks of at most ``max_elements`` array elements.
    """
    names = inspect.signature(estimator).parameters
    data = {k: np.asarray(v) for k, v in arrays.items() if k in names}
    n = len(next(iter(data.values())))
    rng = np.random.default_rng(rng)

    def evaluate(d: Mapping[str, np.ndarray], batch_dims: int) -> np.ndarray:
        out = np.asarray(estimator(**d, **fixed), dtype=np.float64)
        return out.mean(-1) if out.ndim > batch_dims else out

    estimate = float(evaluate(data, 0))
    per_resample = max(sum(v[0].size for v in data.values()) * n, 1)
    chunk = max(1, max_elements // per_resample)
    stats = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        stats.append(evaluate({k: v[idx] for k, v in data.items()}, 1))
    stats = np.concatenate(stats)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(stats, [alpha, 1.0 - alpha]) if np.isfinite(stats).any() else (np.nan, np.nan)
    return estimate, float(low), float(high)


# --- episodes -----------------------------------------------------------------------------------


def episodes_to_arrays(episodes: Sequence[Mapping[str, np.ndarray]], keys: Sequence[str] = ("reward", "log_ratio", "q_hat", "v_hat")) -> dict[str, np.ndarray]:
    """Pad per-episode 1-D arrays into [N, T_max] float64 arrays plus ``mask`` [N, T_max].

    Each episode is a dict with ``reward`` [T_n] and ``log_ratio`` [T_n] (optionally ``q_hat``, ``v_hat``).
    The result uses the estimators' argument names: ``rewards``, ``log_ratio``, ``mask`` (and ``q_hat``,
    ``v_hat`` when every episode has them), so it can be passed to :func:`bootstrap_interval` directly.
    """
    if not episodes:
        raise ValueError("episodes_to_arrays needs at least one episode")
    lengths = np.array([len(ep["reward"]) for ep in episodes])
    n, t_max = len(episodes), int(lengths.max())
    mask = (np.arange(t_max)[None, :] < lengths[:, None]).astype(np.float64)
    out = {"mask": mask}
    for key in keys:
        if not all(key in ep for ep in episodes):
            continue
        arr = np.zeros((n, t_max), dtype=np.float64)
        for i, ep in enumerate(episodes):
            values = np.asarray(ep[key], dtype=np.float64).reshape(-1)
            if len(values) != lengths[i]:
                raise ValueError(f"episode {i}: {key} has {len(values)} steps, reward has {lengths[i]}")
            arr[i, : lengths[i]] = values
        out["rewards" if key == "reward" else key] = arr
    return out


def importance_sampling_report(arrays: Mapping[str, np.ndarray], gamma: float, n_boot: int = 1000, confidence: float = 0.95,
                               rng: np.random.Generator | int | None = None) -> dict[str, tuple[float, float, float]]:
    """name -> (estimate, low, high) for IS, PDIS, WIS, WPDIS, and DR when ``arrays`` has q_hat and v_hat."""
    rng = np.random.default_rng(rng)
    estimators = {"IS": trajectory_is, "PDIS": per_decision_is, "WIS": weighted_is, "WPDIS": weighted_per_decision_is}
    if "q_hat" in arrays and "v_hat" in arrays:
        estimators["DR"] = doubly_robust
    return {name: bootstrap_interval(fn, arrays, n_boot, confidence, rng, gamma=gamma) for name, fn in estimators.items()}


# --- the whole pipeline: FQE, then every estimator ----------------------------------------------


def _transitions(episodes: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Flat (s, a, r, s', terminated, truncated) from Minari-style episodes (obs has T+1 rows)."""
    cols = {k: [] for k in ("obs", "act", "reward", "next_obs", "terminated", "truncated")}
    for ep in episodes:
        obs = np.asarray(ep["obs"])
        T = len(ep["reward"])
        if len(obs) != T + 1:
            raise ValueError(f"an episode has {len(obs)} observations for {T} steps; Minari episodes have T+1")
        cols["obs"].append(obs[:-1])
        cols["next_obs"].append(obs[1:])
        cols["act"].append(np.asarray(ep["act"]))
        cols["reward"].append(np.asarray(ep["reward"], dtype=np.float32))
        cols["terminated"].append(np.asarray(ep["terminated"], dtype=np.float32))
        cols["truncated"].append(np.asarray(ep.get("truncated", np.zeros(T)), dtype=np.float32))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _in_chunks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i : i + chunk])) for i in range(0, len(x), chunk)])


def off_policy_evaluation(
    episodes: Sequence[Mapping[str, np.ndarray]],
    observation_space: gym.Space,
    action_space: gym.Space,
    target_policy: Callable[[np.ndarray], np.ndarray],
    target_log_prob: Callable[[np.ndarray, np.ndarray], np.ndarray],
    gamma: float = 0.99,
    fqe_steps: int = 10_000,
    device: str | torch.device = "cpu",
    seed: int = 0,
    n_boot: int = 1000,
    confidence: float = 0.95,
    n_action_samples: int = 10,
    fqe_cfg: FQEConfig | None = None,
    on_fqe_update: Callable[[int, dict], None] | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Estimate the target policy's value V^{pi_e}(s_0) (discounted by ``gamma``) from behaviour episodes.

    ``episodes``: dicts of numpy arrays ``obs`` [T+1, ...] (Minari: one more observation than steps), ``act``
    [T, ...], ``reward`` [T], ``terminated`` [T], ``truncated`` [T], ``behavior_log_prob`` [T] (log pi_b(a_t|s_t)).
    ``target_policy(obs [B, ...]) -> actions [B, ...]`` samples pi_e; ``target_log_prob(obs, act) -> [B]``.

    1. FQE (:class:`FQELearner`, ``fqe_steps`` updates on all transitions) fits Q^ ~ Q^{pi_e}; a' for its
       targets comes from ``n_action_samples`` actions per state drawn once from pi_e (Box), or from the
       exact probabilities pi_e(.|s') = exp(target_log_prob(s', a)) for every a (Discrete).
    2. q_hat[n, t] = Q^(s_t, a_t); v_hat[n, t] = E_{a ~ pi_e} Q^(s_t, a), the average over the samples (Box)
       or exact (Discrete).
    3. log_ratio = target_log_prob - behavior_log_prob; IS, PDIS, WIS, WPDIS, DR with percentile bootstrap
       intervals over episodes (:func:`bootstrap_interval`).

    Returns name -> (estimate, low, high) for ``ESTIMATORS``. FQE's estimate is mean_n V^(s_0^n); its
    interval resamples episodes (the spread of initial states) with Q^ held fixed, so it leaves out the
    uncertainty of the fit itself.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = torch.device(device)
    cfg = fqe_cfg if fqe_cfg is not None else FQEConfig(gamma=gamma)
    if cfg.gamma != gamma:
        raise ValueError(f"fqe_cfg.gamma={cfg.gamma} differs from gamma={gamma}")
    discrete = isinstance(action_space, gym.spaces.Discrete)
    lengths = np.array([len(ep["reward"]) for ep in episodes])
    # every observation of every episode, in order: episode i's obs t sits at obs_offset[i] + t
    all_obs = np.concatenate([np.asarray(ep["obs"]) for ep in episodes])
    obs_offset = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])

    # pi_e at every observation, once: probabilities [M, |A|] (Discrete) or K sampled actions [M, K, ...] (Box)
    if discrete:
        n, start = int(action_space.n), int(action_space.start)
        probs = np.stack([np.exp(_in_chunks(lambda o, a=a: target_log_prob(o, np.full(len(o), a, dtype=np.int64)), all_obs)) for a in range(start, start + n)], axis=1)
        pi_e = torch.as_tensor(probs, dtype=torch.float32, device=device)
    else:
        samples = np.stack([_in_chunks(target_policy, all_obs) for _ in range(n_action_samples)], axis=1)
        pi_e = torch.as_tensor(samples, dtype=torch.float32, device=device)

    # 1. FQE on every transition; a' indexes the observation after s
    tr = _transitions(episodes)
    next_index = np.concatenate([obs_offset[i] + 1 + np.arange(T) for i, T in enumerate(lengths)])
    to_t = lambda x, dtype=torch.float32: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
    act_dtype = torch.long if discrete else torch.float32
    data = Batch(obs=to_t(tr["obs"]), act=to_t(tr["act"], act_dtype), reward=to_t(tr["reward"]), next_obs=to_t(tr["next_obs"]),
                 terminated=to_t(tr["terminated"]), truncated=to_t(tr["truncated"]))
    next_index_t = torch.as_tensor(next_index, device=device)
    fqe = FQELearner(cfg, observation_space, action_space, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    m = len(data)
    for step in range(fqe_steps):
        rows = torch.randint(0, m, (cfg.batch_size,), device=device, generator=gen)
        batch = Batch(**{k: getattr(data, k)[rows] for k in ("obs", "act", "reward", "next_obs", "terminated", "truncated")})
        if discrete:
            next_act = pi_e[next_index_t[rows]]
        else:
            pick = torch.randint(0, n_action_samples, (len(rows),), device=device, generator=gen)
            next_act = pi_e[next_index_t[rows], pick]
        metrics = fqe.update(batch, next_act=next_act)
        if on_fqe_update is not None:
            on_fqe_update(step, metrics)
    if not fqe.all_finite():
        raise FloatingPointError("FQE diverged: a loss or parameter is not finite (lower fqe_cfg.lr)")

    # 2. q_hat, v_hat at every (s_t, a_t) and s_t, in chunks (a Minari dataset has ~1M steps)
    def values(obs_t: torch.Tensor, act_t: torch.Tensor, chunk: int = 16384) -> np.ndarray:
        return torch.cat([fqe.value(obs_t[i : i + chunk], act_t[i : i + chunk]) for i in range(0, len(obs_t), chunk)]).cpu().numpy()

    q_sa = values(data.obs, data.act)
    obs_all_t = to_t(all_obs, torch.long if isinstance(observation_space, gym.spaces.Discrete) else torch.float32)
    if discrete:
        v_all = values(obs_all_t, pi_e)
    else:  # the mean of Q^(s, a_k) over the K samples a_k ~ pi_e(.|s)
        v_all = np.mean([values(obs_all_t, pi_e[:, j]) for j in range(n_action_samples)], axis=0)
    splits = np.cumsum(lengths)[:-1]
    state_index = [obs_offset[i] + np.arange(T) for i, T in enumerate(lengths)]

    # 3. every estimator
    enriched = []
    for i, (ep, q_i) in enumerate(zip(episodes, np.split(q_sa, splits))):
        log_pi_e = np.asarray(target_log_prob(np.asarray(ep["obs"])[:-1], np.asarray(ep["act"])), dtype=np.float64).reshape(-1)
        enriched.append({"reward": ep["reward"], "log_ratio": log_pi_e - np.asarray(ep["behavior_log_prob"], dtype=np.float64).reshape(-1),
                         "q_hat": q_i, "v_hat": v_all[state_index[i]]})
    arrays = episodes_to_arrays(enriched)
    report = importance_sampling_report(arrays, gamma, n_boot, confidence, rng)
    v0 = v_all[obs_offset]
    report["FQE"] = bootstrap_interval(lambda values: values, {"values": v0}, n_boot, confidence, rng)
    return report


def evaluate_agent_off_policy(agent, dataset_id: str, gamma: float = 0.99, fqe_steps: int = 5_000, n_boot: int = 1000, episodes: int = 10, seed: int = 0) -> dict:
    """``dynarl ope``: every estimate of ``agent``'s value on ``dataset_id``'s episodes, with bootstrap intervals,
    beside the truth: the mean discounted return of the same (stochastic) policy in the env over ``episodes`` runs.

    The target policy is the agent's own stochastic policy (IS needs its density: SAC, BC with ``loss=nll``,
    IQL, AWAC, CQL ...); the dataset must store the behaviour policy's log-probabilities (``dynarl collect``
    does where the behaviour policy has a density)."""
    from dynarl.data.datasets import DatasetError, load_episodes
    from dynarl.envs.spaces import require_agent_fits
    from dynarl.errors import DynarlError
    from dynarl.run.evaluate import evaluate

    data = load_episodes(dataset_id)
    require_agent_fits(f"the agent ({agent.name.upper()} on {agent.cfg.env})", (agent.observation_space, agent.action_space), f"dataset {dataset_id!r}",
                       (data.observation_space, data.action_space), "evaluate it on a dataset of the task it was trained on")
    if data.behavior_log_prob is None:
        raise DatasetError(f"dataset {dataset_id!r} stores no behaviour log-probabilities (infos/behavior_log_prob); importance sampling needs them: collect it with `dynarl collect` from an agent with a stochastic policy")
    if data.rewards is None:
        raise DatasetError(f"dataset {dataset_id!r} has no rewards; off-policy evaluation needs them")
    probe = agent.action_log_prob(data.observations[:1], data.actions[:1])
    if probe is None:
        raise DynarlError(f"{agent.name.upper()}'s policy has no density, so importance weights pi_e/pi_b do not exist; evaluate a stochastic policy (sac, iql, awac, cql, bc with learner.loss=nll)")
    if not 0 < gamma <= 1:
        raise DynarlError(f"--gamma {gamma} is invalid: must be in (0, 1]")
    estimates = off_policy_evaluation(
        data.split(), data.observation_space, data.action_space,
        target_policy=lambda obs: agent.policy_action(obs, deterministic=False),
        target_log_prob=lambda obs, act: agent.action_log_prob(obs, act),
        gamma=gamma, fqe_steps=fqe_steps, device=agent.device, seed=seed, n_boot=n_boot,
    )  # fmt: skip
    true = evaluate(agent.eval_env, lambda obs: agent.policy_action(obs, deterministic=False), episodes, seed, gamma=gamma)
    return {
        "algo": agent.name,
        "dataset": dataset_id,
        "gamma": gamma,
        "dataset_episodes": len(data.episode_lengths),
        "estimates": {name: {"estimate": est, "low": lo, "high": hi} for name, (est, lo, hi) in estimates.items()},
        "true_value": float(true.mean()),
        "true_value_stderr": float(true.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else None,
        "true_value_episodes": episodes,
    }
