"""MuZero (Schrittwieser et al. 2020; inventory A8): search with a learned model, trained on its own games.

    for each vector step (n_envs env steps):
        s^0, p, v = f(h(o)) for every sub-env; ONE batched search (pUCT, Dirichlet noise at the roots) over
            the learned dynamics g for all sub-envs                                   (dynarl.planning.mcts)
        pi = visit counts / sum; a ~ pi^(1/T), T from the temperature schedule over gradient steps (board games
            with temperature_moves: the most visited action from that ply of each game on, as the paper)
        step the envs; store (o, a, u, nu = root search value, pi, done) per sub-env   (GameSegmentBuffer)
        while gradient steps < train_ratio x (env steps - learning_starts):
            sample positions with their K-step targets (n-step z with the stored search values, or with
            values recomputed by the target network: reanalysis); learner.update  (the unrolled loss)

Evaluation (``predict`` with ``deterministic=True``) searches without root noise and plays the most
visited action (temperature 0). The learned model has no terminal state, so every imagined transition is
discounted by gamma. Only Discrete action spaces and flat Box observations are taken.

Reanalysis (``reanalyse``): ``network`` bootstraps every sampled value target from the target network's
f(h(o_{t+k+n})) (muzero-general's ``use_last_model_value``); ``search`` runs a fresh search from
o_{t+k+n} with the target network and bootstraps from its root value (MuZero Reanalyze's value targets).
``reanalyse_policy`` also replaces the policy targets pi_{t+k} of the sampled positions by the visit
distribution of a fresh search from o_{t+k} (target network, self-play's root noise; MuZero Reanalyze's
policy targets); otherwise they stay the stored ones. ``learner.target_update_interval=1`` makes the target
the current network.

Two-player board games (``dynarl/TicTacToe-v0``, ``dynarl/ConnectFour-v0``; observations from the perspective
of the player to move): one search plays both sides (``SearchConfig.two_player``: G = r - gamma G_child, values
for the player to move, rewards for the player who acted). The root's illegal actions are masked with the
env's action mask (read off the observation planes, which determine the board); inside the tree the learned
model's actions are unrestricted, as in MuZero. Value targets alternate their sign per ply (GameSegmentBuffer,
``two_player``). Evaluation is AlphaZero's: the runner's games against ``eval_opponent`` (sides alternate) and
as many against the random opponent (``dynarl.algos.mcts.play_match``), win/draw/loss rates of both in the
metrics and the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from dynarl.algos.base import Algorithm, GeneratorState
from dynarl.algos.mcts import outcome_rates, play_match
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, one_of, param, positive, unit_interval
from dynarl.data.game_segments import GameSegmentBuffer, SegmentBatch
from dynarl.envs.board_games import BoardGameEnv, model_for
from dynarl.envs.opponents import RandomOpponent, VersusOpponent, versus_wrapper
from dynarl.envs.spaces import BOX, DISCRETE, IMAGE
from dynarl.errors import ConfigError, EnvError
from dynarl.learners.muzero import MuZeroLearner, MuZeroLearnerConfig
from dynarl.planning.mcts import UNVISITED_VALUES, RootOutput, SearchConfig, StepOutput, search, visit_policy
from dynarl.seeding import EVAL_SEED_OFFSET


def _non_negative_floats(x) -> str | None:
    return None if all(v >= 0 for v in x) else "must be a list of numbers >= 0"


def _increasing(x) -> str | None:
    return None if all(b > a for a, b in zip(x, x[1:])) and all(v > 0 for v in x) else "must be a list of increasing positive ints"


@dataclass
class MuZeroConfig(RunConfig):
    algo: str = "muzero"
    env: str = "CartPole-v1"
    steps: int = 30_000
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default); one suits the small networks and the search's many small ops")
    n_envs: int = param(8, positive, "sub-envs played at once; one search call covers all of them")
    vec_env: str = param("sync", one_of("sync", "async"), "Gymnasium SyncVectorEnv or AsyncVectorEnv")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")
    num_simulations: int = param(25, positive, "search simulations per move (muzero-general CartPole: 50; LightZero: 25)")
    pb_c_init: float = param(1.25, positive, "pUCT c1")
    pb_c_base: float = param(19652.0, positive, "pUCT c2")
    dirichlet_alpha: float = param(0.25, positive, "root Dirichlet noise alpha in self-play (muzero-general CartPole: 0.25)")
    root_exploration_fraction: float = param(0.25, unit_interval, "weight of the Dirichlet noise in the root prior in self-play (evaluation: none)")
    unvisited_value: str = param("zero", one_of(*UNVISITED_VALUES), "pUCT value of an unvisited child: zero (MuZero's pseudocode; the worst under min-max normalisation) or parent (the parent's mean value, after LightZero)")
    buffer_size: int = param(100_000, positive, "replay capacity in env steps (all sub-envs together)")
    batch_size: int = param(128, positive, "positions per gradient step")
    unroll_steps: int = param(5, positive, "K: dynamics steps unrolled per position")
    td_steps: int = param(10, positive, "n of the n-step value targets")
    learning_starts: int = param(1_000, positive, "env steps played before the first gradient step")
    train_ratio: float = param(0.25, positive, "gradient steps per env step once learning has started")
    temperatures: tuple[float, ...] = param((1.0, 0.5, 0.25), _non_negative_floats, "visit-count temperatures of self-play, one per stage of temperature_milestones")
    temperature_milestones: tuple[int, ...] = param((2_000, 4_000), _increasing, "gradient steps at which the next temperature starts (len(temperatures) - 1 of them)")
    temperature_moves: int = param(0, non_negative, "board games: plies of each self-play game played at the temperature above; later plies take the most visited action (the paper's board-game rule, 30 moves in chess and Go); 0: every ply")
    eval_opponent: str = param("rule", one_of("random", "rule", "perfect"), "two-player board games: the runner's evaluation opponent (perfect: TicTacToe only); the random one is always played too")
    reanalyse: str = param("off", one_of("off", "network", "search"), "recompute the bootstrapped values of sampled targets with the target network: its value (network) or a fresh search (search)")
    reanalyse_policy: bool = param(False, help="replace the policy targets of sampled positions by the visit distribution of a fresh search with the target network and root noise (MuZero Reanalyze; LightZero's reanalysed policy)")
    learner: MuZeroLearnerConfig = field(default_factory=MuZeroLearnerConfig)

    def check(self) -> str | None:
        if len(self.temperature_milestones) != len(self.temperatures) - 1:
            return f"temperature_milestones={list(self.temperature_milestones)} needs len(temperatures) - 1 = {len(self.temperatures) - 1} entries for temperatures={list(self.temperatures)}"
        if self.buffer_size // self.n_envs <= self.unroll_steps + self.td_steps:
            return f"buffer_size={self.buffer_size} holds {self.buffer_size // self.n_envs} steps per env with n_envs={self.n_envs}; a sample needs unroll_steps + td_steps + 1 = {self.unroll_steps + self.td_steps + 1}: raise buffer_size"
        return None


@register
class MuZero(Algorithm):
    """MuZero: batched pUCT search over a learned latent model, trained on the K-step unrolled loss."""

    name, config_cls = "muzero", MuZeroConfig
    action_spaces = (DISCRETE,)
    observation_spaces = (BOX,)
    run_parts = ("buffer",)

    def _setup(self) -> None:
        cfg = self.cfg
        probe = self.make_env()
        board = isinstance(probe.unwrapped, BoardGameEnv)
        # the two-player game: one search plays both sides; a Versus env (the game against a fixed opponent, whose
        # step plays the opponent's reply) is a one-player MDP, as LightZero's bot mode
        self.two_player = board and versus_wrapper(probe) is None
        probe.close()
        self.board_model = None
        if board:
            self.observation_spaces = (BOX, IMAGE)  # the board planes, flattened by the network
            if self.two_player and cfg.eval_opponent == "perfect" and probe.unwrapped.game.name != "TicTacToe":
                raise ConfigError(f"eval_opponent='perfect' exists for TicTacToe only; use eval_opponent=rule or eval_opponent=random for {self.env_name}")
            self.board_model = model_for(probe)  # the legal moves at the root
        elif cfg.temperature_moves:
            raise ConfigError(f"temperature_moves={cfg.temperature_moves} counts the plies of a board game, and {self.env_name} is not one; use temperatures and temperature_milestones (a schedule over gradient steps)")
        self.collector = self.env_collector(cfg.n_envs, vec_env=cfg.vec_env)  # self-play: both sides by the search
        if self.two_player:
            make = self.make_env
            self.make_env = lambda: VersusOpponent(make(), cfg.eval_opponent, agent_first="alternate")  # the runner's evaluation games
        self.learner = MuZeroLearner(cfg.learner, self.observation_space, self.action_space, self.device)
        self.n_actions = int(self.action_space.n)
        self._action_start = int(self.action_space.start)
        self.buffer = GameSegmentBuffer(cfg.buffer_size, tuple(self.observation_space.shape), self.n_actions, cfg.n_envs, cfg.unroll_steps, cfg.td_steps, cfg.learner.gamma, self.device, two_player=self.two_player)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        common = dict(num_simulations=cfg.num_simulations, rule="puct", pb_c_init=cfg.pb_c_init, pb_c_base=cfg.pb_c_base, unvisited_value=cfg.unvisited_value)
        if self.two_player:
            common["two_player"] = True
        self.self_play_search = SearchConfig(**common, dirichlet_alpha=cfg.dirichlet_alpha, root_exploration_fraction=cfg.root_exploration_fraction)
        self.eval_search = SearchConfig(**common, root_exploration_fraction=0.0)
        self._last_metrics: dict[str, torch.Tensor] = {}
        self._eval: dict[str, float] = {}

    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise EnvError(f"MUZERO: MuZero needs a Discrete action space, but {self.env_name} has {action_space}; use SAC, TD3 or PETS for continuous actions, or wrap the env in gymnasium.wrappers.DiscretizeAction")
        super().check_spaces(observation_space, action_space)

    def parts(self) -> dict:
        return {"learner": self.learner, "buffer": self.buffer, "generator": GeneratorState(self.generator)}

    # --- search -------------------------------------------------------------------------------------------------

    def run_search(self, obs: torch.Tensor, config: SearchConfig, generator: torch.Generator | None = None, target: bool = False):
        """One batched search from the observations [B, *obs] through the learned model (online or target network);
        on a board game the root's illegal actions are masked (``invalid_actions``), the interior ones are not."""
        learner, gamma = self.learner, self.cfg.learner.gamma
        state, logits, value = learner.initial_inference(obs, target)

        def recurrent_fn(embedding: torch.Tensor, action: torch.Tensor):
            reward, next_state, next_logits, next_value = learner.recurrent_inference(embedding, action, target)
            return StepOutput(reward=reward, discount=torch.full_like(reward, gamma), prior_logits=next_logits, value=next_value), next_state

        invalid = ~self.legal_mask(obs) if self.board_model is not None else None
        return search(RootOutput(prior_logits=logits, value=value, embedding=state), recurrent_fn, config, invalid_actions=invalid, generator=generator)

    def legal_mask(self, obs: torch.Tensor) -> torch.Tensor:
        """The legal actions [B, A] of board-game observations: the env's ``info["action_mask"]``, read off the planes
        (they determine the board). A finished game's (all False) rows get every action, as the model's absorbing state."""
        return self.board_model.legal(self.board_model.initial(obs, self.device), absorbing=True)

    def temperature(self) -> float:
        """The self-play temperature of the current stage (stages end at ``temperature_milestones`` gradient steps)."""
        stage = sum(self.gradient_steps >= m for m in self.cfg.temperature_milestones)
        return float(self.cfg.temperatures[stage])

    def _obs_tensor(self, obs) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The most visited action of a noise-free search (deterministic), else one sampled from the visit counts."""
        obs = np.asarray(obs)
        single = obs.shape == self.observation_space.shape
        result = self.run_search(self._obs_tensor(obs[None] if single else obs), self.eval_search)
        probs = visit_policy(result.visit_counts, 0.0 if deterministic else 1.0)
        act = (probs.argmax(-1) if deterministic else torch.multinomial(probs, 1).squeeze(1)).cpu().numpy() + self._action_start
        return act[0] if single else act

    # --- the loop -----------------------------------------------------------------------------------------------

    def train_step(self) -> None:
        self.play()
        cfg = self.cfg
        due = int((self.env_steps - cfg.learning_starts) * cfg.train_ratio) if self.env_steps >= cfg.learning_starts else 0
        while self.learner.num_updates < due and self.buffer.sampleable() > 0:
            self._last_metrics = self.learner.update(self.sample_batch())

    def play(self) -> None:
        """One vector step of self-play: one search for every sub-env, actions sampled from the visit counts."""
        obs = self.collector.observe()
        obs_t = self._obs_tensor(obs)
        result = self.run_search(obs_t, self.self_play_search, self.generator)
        counts = result.visit_counts.float()
        pi = counts / counts.sum(-1, keepdim=True)  # the policy target: the visit distribution (temperature 1)
        probs = visit_policy(result.visit_counts, self.temperature())
        if self.cfg.temperature_moves:  # board games: the stones on the board count the plies played
            late = obs_t.flatten(1).sum(1) >= self.cfg.temperature_moves
            probs = torch.where(late.unsqueeze(1), visit_policy(result.visit_counts, 0.0), probs)
        act = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        t = self.collector.step(act.cpu().numpy() + self._action_start)
        end_value = None
        if t.truncated.any():  # a time limit: the final observation's value is bootstrapped from (see GameSegmentBuffer)
            end_value = self.learner.initial_inference(self._obs_tensor(t.next_obs))[2]
        self.buffer.add(obs_t, act, t.reward, result.root_value, pi, t.terminated, t.truncated, t.next_obs, end_value)

    # --- evaluation on board games ----------------------------------------------------------------------------

    def plan_boards(self, boards: torch.Tensor) -> torch.Tensor:
        """The evaluation move for boards (B, rows, cols): the most visited action of a noise-free search."""
        boards = boards.to(self.device)
        return self.run_search(self.board_model.observe(boards), self.eval_search).visit_counts.argmax(1)

    def match(self, opponent, games: int) -> dict[str, int]:
        """``games`` games against ``opponent`` (board -> action) side by side, sides alternating, with the evaluation
        search (``dynarl.algos.mcts.play_match``); the win/draw/loss counts."""
        return play_match(self.plan_boards, self.board_model, opponent, games, device=self.device)

    def on_evaluation(self, mean_return: float, std_return: float) -> None:
        if not self.two_player:
            return
        env, n = self.eval_env, self.cfg.eval_episodes
        rates = {f"{k}_{self.cfg.eval_opponent}": v for k, v in outcome_rates(list(env.outcomes)[-n:]).items()}
        env.outcomes.clear()
        counts = self.match(RandomOpponent(self.cfg.seed + EVAL_SEED_OFFSET), n)
        rates.update({f"{k}_rate_random": v / n for k, v in counts.items()})
        self._eval = rates

    def summary(self) -> dict:
        return {**super().summary(), **{f"eval_{k}": v for k, v in self._eval.items()}}

    def sample_batch(self) -> SegmentBatch:
        batch = self.buffer.sample(self.cfg.batch_size, self.generator, unroll_obs=self.cfg.reanalyse_policy)
        if self.cfg.reanalyse != "off":
            obs = batch.bootstrap_obs.reshape(-1, *batch.bootstrap_obs.shape[2:])
            if self.cfg.reanalyse == "network":
                value = self.learner.initial_inference(obs, target=True)[2]
            else:
                value = self.run_search(obs, self.eval_search, target=True).root_value
            batch = batch.replace(bootstrap_value=value.reshape(batch.bootstrap_value.shape))
        if self.cfg.reanalyse_policy:  # pi_{t+k} from a fresh search at o_{t+k}, k = 0..K (zero past the end, as stored)
            obs = batch.unroll_obs.reshape(-1, *batch.unroll_obs.shape[2:])
            visits = self.run_search(obs, self.self_play_search, self.generator, target=True).visit_counts.float()
            pi = (visits / visits.sum(-1, keepdim=True)).reshape(batch.target_policy.shape)
            batch = batch.replace(target_policy=pi * batch.policy_mask.unsqueeze(-1))
        return batch

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "rollout/temperature": self.temperature(), **{f"eval/{k}": v for k, v in self._eval.items()}}

    def budget_notes(self, total: int) -> list[str]:
        if total <= self.cfg.learning_starts:
            return [f"{total} steps end before learning_starts={self.cfg.learning_starts}: MUZERO will only play with its untrained network and make no gradient updates; pass more steps or a smaller learning_starts"]
        return []
