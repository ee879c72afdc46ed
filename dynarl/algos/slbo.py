"""SLBO: Stochastic Lower Bound Optimisation, 000 section 3.2, Algorithm 2 (inventory B7, M6, T11).

    initialise phi (model), theta (policy); D <- {}
    for n_outer iterations (one ``train_step``):
        D <- D u {n_collect real samples using pi_theta with noise}
        for n_inner iterations:
            for n_model iterations:  one Adam step on L^(H)_phi (eq. 5) over H-step segments from D
            for n_policy iterations: D' <- {n_trpo samples using M_phi as dynamics}; TRPO on D'

Eq. 5 is the H-step loss on state deltas of the model's own rollout,
``1/H sum_i ||(s^_{t+i} - s^_{t+i-1}) - (s_{t+i} - s_{t+i-1})||_2`` (norm not squared), computed by
:meth:`dynarl.models.DynamicsModel.h_step_loss`; the model is one deterministic delta network
(SLBO's 2 x 500 ReLU, Adam 1e-3, L2 1e-5). The discrepancy's action argument (Appendix A erratum 3:
``M(S_t)`` should read ``M(S_t, a_t)``) is what the model takes: it predicts from the state and the
action the real policy took. The policy step is *the* TRPO learner of :mod:`dynarl.learners.trpo`,
fed rollouts of the model env (:class:`dynarl.models.model_env.ModelEnv`) with the task's exact reward
and termination functions. "With noise" is SLBO's code's Ornstein-Uhlenbeck noise (theta 0.15,
sigma 0.3, in the policy's [-1, 1] action units) added to the policy's sampled action.

Observation (ours, following SLBO's code): SLBO runs, acts and is evaluated on the model observation,
``make_env(env, model_obs=True)``, not the standard one. SLBO plans with the task's *known* reward, and
its code (facebookresearch/slbo, ``slbo/envs/mujoco/*.py``) makes that possible by augmenting each env's
observation (full ``qpos`` with the x position, ``qvel``, torso position and velocity) so that
``mb_step(states, actions, next_states)`` computes the reward and ``done`` from the model's states.
dynarl's model observation is the same idea, built for Gymnasium's v5 envs:
:attr:`dynarl.envs.TaskSpec.reward_fn` and ``termination_fn`` reproduce the env's reward and
``terminated`` exactly on it for all 12 registered tasks (``tests/test_task_functions.py``), so the
model env's rewards are the real env's rewards of the model's states. Keeping the standard observation
instead would leave the forward-velocity rewards uncomputable (x is not observed; Ant and Humanoid
reward a torso / mass-centre position that is not a function of the observation), so it would need a
learned reward head, an extra source of model error the paper's analysis does not have. The cost: the
policy also sees x, as in SLBO's code, and ``predict`` takes that observation (``agent.env`` makes it).
Returns are the env's own (the wrappers change only the observation), so they compare directly with
TRPO's on the standard observation. Every outer iteration logs :meth:`SLBO.reward_check` on the new real
transitions: the reward function's largest error against the env's reward (0 up to float32), the
termination's agreement with ``terminated`` (1), and the model env's one-step reward error.

Choices the seed leaves open (ours, stated): model rollouts start from the initial states of real
episodes (``model_start="reset"``, SLBO's default, without calling the simulator) or from any real state
(``"buffer"``); they last ``model_horizon`` steps and bootstrap V(s_T) at the end; a model state that meets
the task's termination rule restarts from a new start state, like a vector env's autoreset. Real
episodes use the base's single env and its replayable-episode checkpoints (exact resume); every model
rollout is deterministic given the torch RNG, which the checkpoint saves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dynarl.algos.base import Algorithm, Attributes
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, one_of, param, positive, positive_sizes
from dynarl.data.rollout import RolloutBuffer
from dynarl.envs import get_task
from dynarl.errors import EnvError
from dynarl.learners.base import flat_dim
from dynarl.learners.trpo import TRPOLearner, TRPOLearnerConfig
from dynarl.models.diagnostics import fresh_data_row
from dynarl.models.dynamics import DynamicsModel, DynamicsModelConfig
from dynarl.models.model_env import ModelEnv


def _slbo_trpo() -> TRPOLearnerConfig:
    # SLBO's code (facebookresearch/slbo, slbo.yml + flags.py): policy 2 x 32 tanh, init std 1,
    # max_kl 0.01, 10 CG iterations, damping 0.1, value Adam 1e-3 x 5 epochs, entropy 0.005
    return TRPOLearnerConfig(hidden_sizes=(32, 32), ent_coef=0.005, vf_iters=5, lr=1e-3, max_kl=0.01, cg_iters=10, cg_damping=0.1)


@dataclass
class SLBOConfig(RunConfig):
    algo: str = "slbo"
    env: str = "Pendulum-v1"
    steps: int = param(20_000, positive, "total real environment steps (n_outer = steps / n_collect)")
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default); one suits these small networks on a shared CPU")
    eval_every: int = param(2_000, positive, "env steps between evaluations")
    checkpoint_every: int = param(2_000, positive, "env steps between checkpoints")
    n_collect: int = param(1_000, positive, "real samples per outer iteration")
    n_inner: int = param(5, positive, "inner iterations per outer iteration (SLBO: 20)")
    n_model: int = param(100, positive, "Adam steps of the H-step model loss per inner iteration (SLBO: 100)")
    n_policy: int = param(5, positive, "TRPO updates per inner iteration (SLBO: 40)")
    H: int = param(2, positive, "horizon of the multi-step model loss, eq. 5 (SLBO: 2)")
    model_batch_size: int = param(128, positive, "H-step segments per model Adam step (SLBO: 128)")
    model_lr: float = param(1e-3, positive, "model Adam learning rate")
    model_weight_decay: float = param(1e-5, non_negative, "L2 on the model's weights")
    model_hidden_sizes: tuple[int, ...] = param((500, 500), positive_sizes, "model hidden widths (SLBO: 2 x 500 ReLU)")
    model_envs: int = param(20, positive, "parallel model rollouts per TRPO update")
    model_horizon: int = param(200, positive, "steps per model rollout; n_trpo = model_envs * model_horizon (SLBO: 8 x 500 = 4000)")
    model_start: str = param("reset", one_of("reset", "buffer"), "model rollouts start from real episode starts or from any real state")
    noise_theta: float = param(0.15, non_negative, "Ornstein-Uhlenbeck mean reversion of the collection noise")
    noise_sigma: float = param(0.3, non_negative, "Ornstein-Uhlenbeck scale of the collection noise (0: no noise)")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")
    learner: TRPOLearnerConfig = field(default_factory=_slbo_trpo)

    def check(self) -> str | None:
        if self.n_collect <= self.H:
            return f"n_collect={self.n_collect} is invalid: must be larger than H={self.H}"
        return None


@register
class SLBO(Algorithm):
    """SLBO (Luo et al. 2019, Algorithm 2): TRPO inside a learned model trained with the H-step delta loss."""

    name = "slbo"
    config_cls = SLBOConfig

    run_parts = ("data",)

    def _env_options(self) -> dict:
        # the observation the task's reward/termination functions are exact on (a task without them is refused in _setup)
        return {"model_obs": get_task(self.cfg.env) is not None}

    def _setup(self) -> None:
        cfg = self.cfg
        self.collector = self.env_collector(1)
        self.task = get_task(self.env_name)
        if self.task is None:
            from dynarl.envs import registered_tasks

            raise EnvError(f"SLBO plans with the task's reward function, and dynarl has none for {self.env_name!r}. Tasks with one: {', '.join(registered_tasks())}")
        self.actions.clip = True
        self.obs_dim, self.act_dim = flat_dim(self.observation_space), flat_dim(self.action_space)
        self.learner = TRPOLearner(cfg.learner, self.observation_space, self.action_space, self.device)
        n_layers = len(cfg.model_hidden_sizes) + 1
        mcfg = DynamicsModelConfig(kind="deterministic", members=1, hidden_sizes=cfg.model_hidden_sizes, activation="relu", weight_decay=(cfg.model_weight_decay,) * n_layers)
        self.model = DynamicsModel(mcfg, self.obs_dim, self.act_dim, self.device)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=cfg.model_lr)
        self.model_env = ModelEnv(self.model, reward_fn=self.task.reward_fn, termination_fn=self.task.termination_fn, propagation="expectation", deterministic=True)
        self.model_rollout = RolloutBuffer(cfg.model_horizon, cfg.model_envs, self.obs_dim, (self.act_dim,), self.device, discrete=False)
        self._low_t = torch.as_tensor(self.actions.low, device=self.device)
        self._scale_t = torch.as_tensor(self.actions.scale, device=self.device)
        cap = cfg.steps + cfg.n_collect
        z = lambda *s: torch.zeros(cap, *s, device=self.device)  # noqa: E731
        # real data D: transitions in time order, with episode boundaries for H-step segments
        # (reward and terminated are kept to check the model env's task functions on real data, never trained on)
        self.data = {"obs": z(self.obs_dim), "act": z(self.act_dim), "next_obs": z(self.obs_dim), "ended": z(), "first": z(), "reward": z(), "terminated": z()}
        self.size = 0
        self.noise = np.zeros(self.act_dim)
        self._last_metrics: dict[str, float] = {}

    # --- acting -----------------------------------------------------------------------------------------

    def _to_env_action(self, act: torch.Tensor) -> torch.Tensor:
        """The model env's actions: the policy's clipped to [-1, 1] and scaled as the adapter does for the real env."""
        return self._low_t + (act.clamp(-1.0, 1.0) + 1.0) * self._scale_t

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = obs_t.dim() == 1
        act = self.learner.act(obs_t[None] if single else obs_t, deterministic).cpu().numpy()
        return self.actions.to_env(act[0] if single else act)

    def collect(self) -> None:
        """D <- D u {n_collect real samples with pi_theta + Ornstein-Uhlenbeck noise}."""
        cfg = self.cfg
        self._reserve(self.size + cfg.n_collect)
        envs = self.collector
        envs.observe()
        for _ in range(cfg.n_collect):
            first = envs.episode_lengths[0] == 0
            if first:
                self.noise[:] = 0.0
            obs_t = torch.as_tensor(envs.obs, dtype=torch.float32, device=self.device)
            act = self.learner.act(obs_t, deterministic=False)[0].cpu().numpy()
            self.noise += cfg.noise_theta * -self.noise + cfg.noise_sigma * self.np_rng.standard_normal(self.act_dim)
            env_act = self.actions.to_env(act + self.noise)
            t = envs.step(env_act[None])
            i, d = self.size, self.data
            d["obs"][i] = torch.as_tensor(t.obs[0])
            d["act"][i] = torch.as_tensor(env_act)
            d["next_obs"][i] = torch.as_tensor(t.next_obs[0])
            d["ended"][i] = float(t.ended[0])
            d["first"][i] = float(first)
            d["reward"][i] = float(t.reward[0])
            d["terminated"][i] = float(t.terminated[0])
            self.size += 1

    def _reserve(self, n: int) -> None:
        """Grow the real-data storage to hold n transitions (a run may continue past ``steps``)."""
        cap = self.data["obs"].shape[0]
        if n > cap:
            extra = max(n, 2 * cap) - cap
            self.data = {k: torch.cat([v, v.new_zeros(extra, *v.shape[1:])]) for k, v in self.data.items()}

    # --- model ------------------------------------------------------------------------------------------

    def _segment_starts(self) -> torch.Tensor:
        """Indices t whose H transitions t .. t+H-1 lie in one episode (no end before the last one)."""
        H, n = self.cfg.H, self.size
        ended = self.data["ended"][:n]
        # ends among transitions t .. t+H-2 (an end at t+H-1 is fine: its next_obs is the true last state)
        csum = torch.cat([torch.zeros(1, device=self.device), ended.cumsum(0)])
        t = torch.arange(n - H + 1, device=self.device)
        return t[(csum[t + H - 1] - csum[t]) == 0]

    def model_step(self, starts: torch.Tensor) -> torch.Tensor:
        """One Adam step on eq. 5 over a batch of real H-step segments (s_{t:t+H}, a_{t:t+H})."""
        cfg, d = self.cfg, self.data
        t = starts[torch.randint(len(starts), (cfg.model_batch_size,), device=self.device)]
        idx = t[:, None] + torch.arange(cfg.H, device=self.device)  # [B, H]
        obs_seq = torch.cat([d["obs"][idx], d["next_obs"][idx[:, -1:]]], dim=1)  # [B, H + 1, obs]
        loss = self.model.h_step_loss(obs_seq, d["act"][idx]).sum() + self.model.net.weight_decay_loss()
        self.model_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.model_opt.step()
        return loss.detach()

    # --- policy in the model --------------------------------------------------------------------------------

    def _start_states(self, n: int) -> torch.Tensor:
        pool = self.data["obs"][: self.size]
        if self.cfg.model_start == "reset":
            pool = pool[self.data["first"][: self.size] > 0]
        return pool[torch.randint(len(pool), (n,), device=self.device)]

    @torch.no_grad()
    def model_rollout_data(self):
        """D' <- n_trpo = model_envs x model_horizon samples with M_phi as the dynamics."""
        cfg, learner, env, buf = self.cfg, self.learner, self.model_env, self.model_rollout
        obs = env.reset(self._start_states(cfg.model_envs))
        returns = torch.zeros(cfg.model_envs, device=self.device)
        for _ in range(cfg.model_horizon):
            act, log_prob, value = learner.step(obs)
            next_obs, reward, terminated, _ = env.step(self._to_env_action(act))
            term = terminated.float()
            final_value = torch.zeros_like(value)  # terminal: no bootstrap
            buf.add(obs, act, log_prob, value, reward, term, term, final_value)
            returns += reward
            if terminated.any():  # restart terminated rows from fresh start states (autoreset)
                fresh = self._start_states(cfg.model_envs)
                env.obs = torch.where(terminated[:, None], fresh, next_obs)
                env.done = torch.zeros_like(env.done)
            obs = env.obs
        return buf.finish(learner.value_of(obs)), returns

    # --- Algorithm 2 --------------------------------------------------------------------------------------

    @torch.no_grad()
    def reward_check(self, start: int = 0) -> dict[str, float]:
        """The model env's rewards against the real env's on the real transitions ``start:size``.

        ``reward_fn_max_error``: max |r_fn(s, a, s') - r| with the real s' (0 up to float32 storage when the
        task functions match SLBO's observation); ``termination_fn_agreement``: the fraction of steps where
        the termination function agrees with the env's ``terminated``; ``model_reward_error``: mean
        |r_fn(s, a, M(s, a)) - r|, the one-step reward of the model env itself (called before the model
        is fitted on these transitions, so it is measured on data the model has not seen)."""
        d, sl = self.data, slice(start, self.size)
        obs, act, next_obs = d["obs"][sl], d["act"][sl], d["next_obs"][sl]
        self.model_env.reset(obs)
        model_reward = self.model_env.step(act)[1]
        return {
            "reward_fn_max_error": float((self.model_env.reward_fn(obs, act, next_obs) - d["reward"][sl]).abs().max()),
            "termination_fn_agreement": float((self.model_env.termination_fn(obs, act, next_obs) == (d["terminated"][sl] > 0)).float().mean()),
            "model_reward_error": float((model_reward - d["reward"][sl]).abs().mean()),
        }

    def train_step(self) -> None:
        cfg = self.cfg
        start = self.size
        self.collect()
        check = self.reward_check(start)
        d, n = self.data, self.size
        # the model's errors on the new real transitions, before it is fitted on them (none before the first fit)
        fit_row = fresh_data_row(self.model, d["obs"][start:n], d["act"][start:n], d["next_obs"][start:n], d["ended"][start:n] > 0) if start > 0 else {}
        self.model.fit_normalizers(d["obs"][:n], d["act"][:n], d["next_obs"][:n])
        starts = self._segment_starts()
        model_loss = trpo = None
        for _ in range(cfg.n_inner):
            for _ in range(cfg.n_model):
                model_loss = self.model_step(starts)
            for _ in range(cfg.n_policy):
                rollout, returns = self.model_rollout_data()
                trpo = self.learner.update(rollout)
        self._last_metrics = {
            **{f"model/{k}": v for k, v in check.items()},
            "model/h_step_loss": float(model_loss),
            "model/model_return": float(returns.mean()),
            **{f"train/{k}": float(v) for k, v in trpo.items()},
        }
        self.log_model_fit({"model_h_step_loss": float(model_loss), **fit_row})  # the run's model_diagnostics.csv

    def all_finite(self) -> bool:
        return self.learner.all_finite() and self.model.all_finite()

    def parts(self) -> dict:
        return {"learner": self.learner, "model": self.model, "model_opt": self.model_opt, "noise": Attributes(self, "noise"), "data": RealData(self)}

    def summary(self) -> dict:
        return {**super().summary(), "trpo_updates": self.learner.num_updates}


class RealData:
    """SLBO's real transitions D (in time order) as a checkpoint part."""

    def __init__(self, algo: SLBO):
        self.algo = algo

    def state_dict(self) -> dict:
        a = self.algo
        return {k: v[: a.size].clone() for k, v in a.data.items()}

    def load_state_dict(self, state: dict) -> None:
        a = self.algo
        n = state["obs"].shape[0]
        a._reserve(n)
        for k, v in state.items():
            a.data[k][:n] = v.to(a.device)
        a.size = n
