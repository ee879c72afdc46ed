"""AlphaZero (Silver et al. 2017, 2018): self-play with a search over the true rules, guided by a policy-value net.

    every self-play step, for the n_games games in progress at once:
        p, v = f_theta(s) at every root; ONE batched pUCT search (Dirichlet noise mixed into the root priors,
            P = (1 - eps) p + eps eta, eta ~ Dir(alpha)) over the batched board rules, f_theta at every leaf,
            values for the player to move (two-player backup G = r - G_child)           (dynarl.planning.mcts)
        pi = N(s, .) / sum N; a ~ pi (T = 1) for the first temperature_moves plies of a game, then the most visited
        store (s, pi); when a game ends, z = +1 / 0 / -1 for the player to move in each of its positions, and
            its positions (with their board symmetries: 8 for TicTacToe, 2 for Connect Four) enter the replay
            of the most recent buffer_size positions
        while gradient steps < train_ratio x (positions stored - learning_starts):
            learner.update on a uniform sample: l = (z - v)^2 - pi^T log p + c ||theta||^2  (dynarl.learners.alphazero)

The clock (``env_steps``) counts self-play moves of all games (``episodes``: finished games). Evaluation (the
runner's, every ``eval_every`` moves) plays ``eval_episodes`` games against ``eval_opponent`` with a noise-free
search and the most visited move (sides alternate; return +1 win, 0 draw, -1 loss); each evaluation also plays
as many games against the random opponent, side by side, and the win/draw/loss rates of both go into the
metrics and the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from dynarl.algos.base import Algorithm, Attributes, GeneratorState
from dynarl.algos.mcts import outcome_rates, play_match
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, one_of, param, positive, unit_interval
from dynarl.envs.board_games import GAMES, BoardGameEnv, BoardGameModel, model_for
from dynarl.envs.opponents import RandomOpponent, VersusOpponent, versus_wrapper
from dynarl.envs.spaces import DISCRETE, IMAGE
from dynarl.errors import ConfigError, EnvError
from dynarl.learners.alphazero import AlphaZeroLearner, AlphaZeroLearnerConfig, PositionBatch
from dynarl.planning.mcts import UNVISITED_VALUES, RootOutput, SearchConfig, SearchResult, StepOutput, search, visit_policy
from dynarl.seeding import EVAL_SEED_OFFSET


@dataclass
class AlphaZeroConfig(RunConfig):
    algo: str = "alphazero"
    env: str = "dynarl/TicTacToe-v0"
    steps: int = param(20_000, positive, "self-play moves (all games together)")
    device: str = param("cpu", one_of("auto", "cpu", "cuda"), "where the network and the searches run")
    eval_every: int = param(5_000, positive, "self-play moves between evaluations")
    eval_episodes: int = param(20, positive, "evaluation games against eval_opponent, and as many against the random opponent")
    log_every: int = param(1_000, positive, "self-play moves between metric rows / console lines")
    checkpoint_every: int = param(5_000, positive, "self-play moves between checkpoints (one is also written at the end)")
    n_games: int = param(32, positive, "self-play games played side by side (one search call covers all of them)")
    num_simulations: int = param(32, positive, "search simulations per move")
    pb_c_init: float = param(1.25, positive, "pUCT c1 (c(N) = c1 + log((N + c2 + 1) / c2))")
    pb_c_base: float = param(19652.0, positive, "pUCT c2")
    dirichlet_alpha: float = param(0.3, positive, "root Dirichlet noise alpha in self-play (AlphaZero: 0.3 chess, 0.03 Go)")
    root_exploration_fraction: float = param(0.25, unit_interval, "weight eps of the Dirichlet noise in the root priors in self-play (evaluation: none)")
    normalize_q: bool = param(False, help="min-max normalise Q per tree (MuZero); AlphaZero's values are already in [-1, 1]")
    unvisited_value: str = param("zero", one_of(*UNVISITED_VALUES), "pUCT value of an unvisited child: zero (Q = 0, a draw's value) or parent (the parent's mean value, after LightZero)")
    temperature_moves: int = param(4, non_negative, "plies of each self-play game whose move is sampled from the visit counts (T = 1); later ones take the most visited")
    augment: bool = param(True, help="store every board symmetry of each position (8 for TicTacToe, 2 for Connect Four)")
    buffer_size: int = param(20_000, positive, "replay of the most recent positions (augmented copies included)")
    batch_size: int = param(128, positive, "positions per gradient step")
    learning_starts: int = param(1_000, non_negative, "stored positions before the first gradient step")
    train_ratio: float = param(0.25, positive, "gradient steps per stored position once learning has started")
    eval_opponent: str = param("rule", one_of("random", "rule", "perfect"), "the runner's evaluation opponent (perfect: TicTacToe only)")
    learner: AlphaZeroLearnerConfig = field(default_factory=AlphaZeroLearnerConfig)


# ------------------------------------------------------------------------------------------------ storage


def symmetries(boards: torch.Tensor, pi: torch.Tensor, gravity: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every symmetric copy of positions (L, rows, cols) and their visit distributions (L, A), stacked: the 8
    rotations and reflections of a square board (pi indexed by cell), or the left-right mirror of a gravity
    board (pi indexed by column). The rules, and so the outcome z, are invariant under them."""
    if gravity:
        return torch.cat([boards, boards.flip(-1)]), torch.cat([pi, pi.flip(-1)])
    L, rows, cols = boards.shape
    grid = pi.view(L, rows, cols)
    bs, ps = [], []
    for flip in (False, True):
        b, p = (boards.flip(-1), grid.flip(-1)) if flip else (boards, grid)
        for k in range(4):
            bs.append(torch.rot90(b, k, (-2, -1)))
            ps.append(torch.rot90(p, k, (-2, -1)).reshape(L, -1))
    return torch.cat(bs), torch.cat(ps)


class PositionReplay:
    """The most recent ``capacity`` positions of finished games: board (int8), visit distribution pi, outcome z."""

    def __init__(self, capacity: int, board_shape: tuple[int, int], n_actions: int, device: torch.device):
        self.capacity = capacity
        self.boards = torch.zeros((capacity, *board_shape), dtype=torch.int8, device=device)
        self.pi = torch.zeros((capacity, n_actions), dtype=torch.float32, device=device)
        self.z = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.size = 0
        self.pos = 0
        self.added = 0  # positions ever stored (the learning schedule's count)

    def add(self, boards: torch.Tensor, pi: torch.Tensor, z: torch.Tensor) -> None:
        n = boards.shape[0]
        idx = (self.pos + torch.arange(n, device=boards.device)) % self.capacity
        keep = slice(max(n - self.capacity, 0), n)  # more rows than the capacity: only the last ones survive anyway
        self.boards[idx[keep]], self.pi[idx[keep]], self.z[idx[keep]] = boards[keep], pi[keep], z[keep]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(self.size, (n,), generator=generator, device=self.boards.device)
        return self.boards[idx], self.pi[idx], self.z[idx]

    def state_dict(self) -> dict:
        return {"boards": self.boards[: self.size].clone(), "pi": self.pi[: self.size].clone(), "z": self.z[: self.size].clone(), "pos": self.pos, "added": self.added}

    def load_state_dict(self, state: dict) -> None:
        n = state["boards"].shape[0]
        if n > self.capacity:
            raise ValueError(f"the saved replay holds {n} positions, more than buffer_size={self.capacity}")
        self.boards[:n], self.pi[:n], self.z[:n] = state["boards"], state["pi"], state["z"]
        self.size, self.pos, self.added = n, int(state["pos"]), int(state["added"])


class SelfPlayGames:
    """The n_games games in progress: current boards, plies played, and each game's positions and pi so far."""

    def __init__(self, model: BoardGameModel, n_games: int, device: torch.device):
        cells = model.rows * model.cols  # no game lasts longer
        self.boards = model.initial_state(n_games, device)
        self.plies = torch.zeros(n_games, dtype=torch.long, device=device)
        self.history = torch.zeros((n_games, cells, model.rows, model.cols), dtype=torch.int8, device=device)
        self.pis = torch.zeros((n_games, cells, model.num_actions), dtype=torch.float32, device=device)

    def state_dict(self) -> dict:
        return {k: getattr(self, k).clone() for k in ("boards", "plies", "history", "pis")}

    def load_state_dict(self, state: dict) -> None:
        for k in ("boards", "plies", "history", "pis"):
            getattr(self, k).copy_(state[k])


# ------------------------------------------------------------------------------------------------ the algorithm


@register
class AlphaZero(Algorithm):
    """AlphaZero: batched pUCT self-play over a board game's true rules, a policy-value net trained on the games."""

    name, config_cls = "alphazero", AlphaZeroConfig
    action_spaces = (DISCRETE,)
    observation_spaces = (IMAGE,)
    run_parts = ("buffer", "games")

    def _setup(self) -> None:
        cfg = self.cfg
        probe = self.make_env()
        if not isinstance(probe.action_space, gym.spaces.Discrete):
            raise EnvError(f"ALPHAZERO needs a Discrete action space, but {self.env_name} has {probe.action_space}; use pets or mbpo for continuous actions")
        if not isinstance(probe.unwrapped, BoardGameEnv):
            raise EnvError(f"ALPHAZERO needs a two-player board game with a batched true model ({', '.join(GAMES)}), but {self.env_name} is not one; use mcts (a true model by state restore) or muzero (a learned model)")
        if versus_wrapper(probe) is not None:
            game = "dynarl/TicTacToe-v0" if probe.unwrapped.game.name == "TicTacToe" else "dynarl/ConnectFour-v0"
            raise ConfigError(f"ALPHAZERO plays both sides itself, but {self.env_name} already plays one side for it; pass {game} and choose the evaluation opponent with eval_opponent=rule|random|perfect")
        if cfg.eval_opponent == "perfect" and probe.unwrapped.game.name != "TicTacToe":
            raise ConfigError(f"eval_opponent='perfect' exists for TicTacToe only; use eval_opponent=rule or eval_opponent=random for {self.env_name}")
        self.check_spaces(probe.observation_space, probe.action_space)
        probe.close()
        make = self.make_env
        self.make_env = lambda: VersusOpponent(make(), cfg.eval_opponent, agent_first="alternate")  # the runner's evaluation games
        self.model = model_for(probe)
        self.learner = AlphaZeroLearner(cfg.learner, self.observation_space, self.action_space, self.device)
        self.buffer = PositionReplay(cfg.buffer_size, (self.model.rows, self.model.cols), self.model.num_actions, self.device)
        self.games = SelfPlayGames(self.model, cfg.n_games, self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        common = dict(num_simulations=cfg.num_simulations, rule="puct", pb_c_init=cfg.pb_c_init, pb_c_base=cfg.pb_c_base, two_player=True, normalize_q=cfg.normalize_q, unvisited_value=cfg.unvisited_value)
        self.self_play_search = SearchConfig(**common, dirichlet_alpha=cfg.dirichlet_alpha, root_exploration_fraction=cfg.root_exploration_fraction)
        self.eval_search = SearchConfig(**common, root_exploration_fraction=0.0)
        self.moves = 0
        self.finished = 0
        self.results = np.zeros(3, dtype=np.int64)  # finished self-play games: first player won, drawn, second player won
        self._last_metrics: dict[str, torch.Tensor] = {}
        self._eval: dict[str, float] = {}

    def parts(self) -> dict:
        return {"learner": self.learner, "buffer": self.buffer, "games": self.games, "generator": GeneratorState(self.generator), "counters": Attributes(self, "moves", "finished", "results")}

    @property
    def env_steps(self) -> int:
        return self.moves

    @property
    def episodes(self) -> int:
        return self.finished

    # --- search ---------------------------------------------------------------------------------------------

    def _recurrent_fn(self, boards: torch.Tensor, action: torch.Tensor) -> tuple[StepOutput, torch.Tensor]:
        nxt, reward, terminated = self.model.step(boards, action)
        logits, value = self.learner.predict(self.model.observe(nxt), self.model.legal(nxt))
        live = (~terminated).float()
        return StepOutput(reward=reward, discount=live, prior_logits=logits, value=value * live), nxt

    def run_search(self, boards: torch.Tensor, config: SearchConfig, generator: torch.Generator | None = None) -> SearchResult:
        """One batched search from live boards (B, rows, cols), f_theta as prior and value."""
        logits, value = self.learner.predict(self.model.observe(boards), self.model.legal(boards))
        return search(RootOutput(prior_logits=logits, value=value, embedding=boards), self._recurrent_fn, config, generator=generator)

    def plan_boards(self, boards: torch.Tensor) -> torch.Tensor:
        """The evaluation move for boards (B, rows, cols): the most visited action of a noise-free search."""
        return self.run_search(boards.to(self.device), self.eval_search).visit_counts.argmax(1)

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The most visited action of a noise-free search from the board read off the planes (deterministic),
        else one sampled from the visit counts."""
        obs = np.asarray(obs)
        single = obs.shape == self.observation_space.shape
        boards = self.model.initial(np.asarray(obs[None] if single else obs, dtype=np.float32), self.device)
        counts = self.run_search(boards, self.eval_search).visit_counts
        act = (counts.argmax(1) if deterministic else torch.multinomial(visit_policy(counts, 1.0), 1).squeeze(1)).cpu().numpy()
        return act[0] if single else act

    # --- the loop -------------------------------------------------------------------------------------------

    def train_step(self) -> None:
        self.self_play()
        cfg = self.cfg
        due = int((self.buffer.added - cfg.learning_starts) * cfg.train_ratio) if self.buffer.added >= cfg.learning_starts else 0
        while self.learner.num_updates < due:
            boards, pi, z = self.buffer.sample(cfg.batch_size, self.generator)
            self._last_metrics = self.learner.update(PositionBatch(self.model.observe(boards), self.model.legal(boards), pi, z))

    def self_play(self) -> None:
        """One move in every game in progress; finished games go to the replay and restart from the empty board."""
        g, cfg = self.games, self.cfg
        result = self.run_search(g.boards, self.self_play_search, self.generator)
        counts = result.visit_counts
        pi = counts.float() / counts.sum(-1, keepdim=True)
        probs = torch.where((g.plies < cfg.temperature_moves)[:, None], visit_policy(counts, 1.0), visit_policy(counts, 0.0))
        action = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        rows = torch.arange(cfg.n_games, device=self.device)
        g.history[rows, g.plies] = g.boards
        g.pis[rows, g.plies] = pi
        nxt, reward, terminated = self.model.step(g.boards, action)
        g.plies += 1
        self.moves += cfg.n_games
        for i in terminated.nonzero().flatten().tolist():
            self._finish(i, int(g.plies[i]), float(reward[i]))
        g.boards = torch.where(terminated[:, None, None], torch.zeros_like(nxt), nxt)
        g.plies = torch.where(terminated, torch.zeros_like(g.plies), g.plies)

    def _finish(self, i: int, length: int, last_reward: float) -> None:
        """Store game i's positions with z = the outcome for the player to move there: the last mover got
        ``last_reward`` (1 win, 0 draw); the players alternate, so z_k = last_reward (-1)^(length - 1 - k)."""
        g = self.games
        k = torch.arange(length, device=self.device)
        z = last_reward * (1.0 - 2.0 * ((length - 1 - k) % 2)).float()
        boards, pi = g.history[i, :length], g.pis[i, :length]
        if self.cfg.augment:
            copies = symmetries(boards, pi, self.model.game.gravity)
            boards, pi, z = copies[0], copies[1], z.repeat(copies[0].shape[0] // length)
        self.buffer.add(boards, pi, z)
        self.finished += 1
        last_mover = (length - 1) % 2  # player 0 makes the odd plies 1, 3, ...
        self.results[1 if last_reward == 0 else 2 * last_mover] += 1

    # --- evaluation -----------------------------------------------------------------------------------------

    def match(self, opponent, games: int) -> dict[str, int]:
        """``games`` games against ``opponent`` (a board -> action callable) side by side, sides alternating, with the
        evaluation search; the win/draw/loss counts."""
        return play_match(self.plan_boards, self.model, opponent, games, device=self.device)

    def on_evaluation(self, mean_return: float, std_return: float) -> None:
        env = self.eval_env
        rates = {f"{k}_{self.cfg.eval_opponent}": v for k, v in outcome_rates(list(env.outcomes)[-self.cfg.eval_episodes :]).items()}
        env.outcomes.clear()
        counts = self.match(RandomOpponent(self.cfg.seed + EVAL_SEED_OFFSET), self.cfg.eval_episodes)
        rates.update({f"{k}_rate_random": v / self.cfg.eval_episodes for k, v in counts.items()})
        self._eval = rates

    def metrics(self) -> dict[str, float]:
        total = max(int(self.results.sum()), 1)
        out = {**super().metrics(), "rollout/first_player_wins": float(self.results[0] / total), "rollout/draws": float(self.results[1] / total), "rollout/buffer_positions": float(self.buffer.size)}
        out.update({f"eval/{k}": v for k, v in self._eval.items()})
        return out

    def summary(self) -> dict:
        return {**super().summary(), "self_play_games": self.finished, **{f"eval_{k}": v for k, v in self._eval.items()}}

    def budget_notes(self, total: int) -> list[str]:
        if total * (8 if self.cfg.augment else 1) <= self.cfg.learning_starts:
            return [f"{total} self-play moves store fewer than learning_starts={self.cfg.learning_starts} positions: ALPHAZERO will make no gradient updates; pass more steps or a smaller learning_starts"]
        return []
