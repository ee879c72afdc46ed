"""MCTS with a true model (inventory A7, seed 001's UCT; Browne et al. 2012): plan at every move, learn nothing.

    every move, from the env's current state s_1 (one batched search, dynarl.planning.mcts, rule "uct"):
        repeat num_simulations times:
            s_l = TreePolicy(s_1): descend by UCB1, Score = Q(s, a) + c_uct sqrt(ln N(s) / N(s, a)), an
                  untried action first                                                 (001's TreePolicy)
            expand s_l with the true model; v = DefaultPolicy(s_l): the mean discounted return of
                  ``rollouts`` uniformly random playouts of at most ``rollout_depth`` steps  (001's DefaultPolicy)
            back up G = r + gamma G_child along the path (G = r - gamma G_child for two-player games)  (001's update)
        play the most visited root action (ties: the lowest)

Two true models:

* board games (``dynarl/TicTacToe-v0``, ``dynarl/ConnectFour-v0`` and their Versus versions): the batched torch
  rules of :mod:`dynarl.envs.board_games`, the state a ``(B, rows, cols)`` board tensor; the B leaves' random
  playouts run side by side in torch (``B x rollouts`` games per playout step). Values are for the player to
  move (``two_player``): a playout's return counts the rewards of that player's moves positive and the
  opponent's negative. Training and evaluation play against ``opponent`` (sides alternate);
* any other env whose state :mod:`dynarl.envs.restore` can copy (CartPole-v1, FrozenLake-v1, the Dyna maze, ...):
  the embedding indexes a table of env snapshots and every leaf is expanded by restoring a simulator env and
  stepping it (a Python loop over the B leaves). A time limit ends a simulated episode like a termination.
  A stochastic env is sampled once per tree edge (the tree holds one child per action).

``learn`` plays ``steps`` moves of real episodes (the clock, ``env_steps``) with the planner, so the run folder's
metrics show the episodes' returns; evaluation is the runner's. Against a board-game opponent a return is
+1 for a win, 0 for a draw, -1 for a loss, and the summary adds the win/draw/loss rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from dynarl.algos.base import Algorithm, GeneratorState
from dynarl.algos.registry import register
from dynarl.config import RunConfig, one_of, param, positive, unit_interval_open_closed
from dynarl.envs.board_games import DRAW, BoardGameEnv, BoardGameModel, model_for
from dynarl.envs.opponents import OPPONENTS, VersusOpponent, versus_wrapper
from dynarl.envs.restore import check_restorable, restore, snapshot
from dynarl.envs.spaces import BOX, DISCRETE, IMAGE
from dynarl.errors import ConfigError, EnvError
from dynarl.planning.mcts import RootOutput, SearchConfig, SearchResult, StepOutput, search

NEG_INF = float("-inf")


# ------------------------------------------------------------------------------------------------ board games


def legal_logits(legal: torch.Tensor) -> torch.Tensor:
    """Uniform prior logits: 0 on legal actions, -inf elsewhere (the search never selects a -inf child)."""
    return torch.zeros(legal.shape, dtype=torch.float32, device=legal.device).masked_fill(~legal, NEG_INF)


@torch.no_grad()
def random_playout_value(model: BoardGameModel, state: torch.Tensor, rollouts: int, depth: int, gamma: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """DefaultPolicy(s) for B boards: the mean over ``rollouts`` uniformly random playouts of
    ``sum_t gamma^t sigma_t r_t`` (at most ``depth`` moves), ``sigma_t = +1`` when the mover of move t is the
    player to move in s, else -1 (zero-sum: the opponent's win is a loss); 0 for a terminal s.

    All ``B x rollouts`` playouts advance together. The loop applies the game's rules directly on flat boards
    (place the mover's stone, test the lines through ``model.has_line``, stop on a line or a full board) and
    flips the mover each move, instead of calling ``model.step``, which re-derives the mover and re-tests the
    previous position every call: a playout move is then a handful of tensor ops.
    """
    B, rows, cols = state.shape
    n = B * rollouts
    s = state.repeat_interleave(rollouts, 0).flatten(1).clone()  # (n, rows * cols)
    me = model.to_play(state).repeat_interleave(rollouts)
    mover = me.clone()
    live = ~model.terminal(state).repeat_interleave(rollouts)
    ret = torch.zeros(n, dtype=torch.float32, device=s.device)
    weight, gravity = 1.0, model.game.gravity
    for _ in range(depth):
        if not bool(live.any()):
            break
        free = (s[:, :cols] == 0) if gravity else (s == 0)
        action = torch.multinomial((free | ~live[:, None]).float(), 1, generator=generator)  # finished playouts: any action, not played
        if gravity:  # the stone falls to the lowest free row of the column
            height = (s.view(n, rows, cols) != 0).sum(1).gather(1, action)
            cell = (rows - 1 - height).clamp(min=0) * cols + action
        else:
            cell = action
        stone = torch.where(live[:, None], (mover + 1).to(s.dtype)[:, None], s.gather(1, cell))
        s.scatter_(1, cell, stone)
        won = live & model.has_line(s.view(n, rows, cols), mover)
        ret += weight * torch.where(mover == me, 1.0, -1.0) * won
        live = live & ~won & ~(s != 0).all(1)  # a line or a full board ends the playout
        mover = 1 - mover
        weight *= gamma
    return ret.view(B, rollouts).mean(1)


class BoardPlanner:
    """UCT over the batched rules of a board game: ``plan(boards) -> SearchResult`` for B boards at once."""

    def __init__(self, model: BoardGameModel, config: SearchConfig, rollouts: int, depth: int, gamma: float, generator: torch.Generator | None):
        self.model, self.config, self.rollouts, self.depth, self.gamma, self.generator = model, config, rollouts, depth, gamma, generator

    def value(self, boards: torch.Tensor) -> torch.Tensor:
        return random_playout_value(self.model, boards, self.rollouts, self.depth, self.gamma, self.generator)

    def recurrent_fn(self, boards: torch.Tensor, action: torch.Tensor) -> tuple[StepOutput, torch.Tensor]:
        nxt, reward, terminated = self.model.step(boards, action)
        live = (~terminated).float()
        value = self.value(nxt) * live
        return StepOutput(reward=reward, discount=self.gamma * live, prior_logits=legal_logits(self.model.legal(nxt)), value=value), nxt

    def plan(self, boards: torch.Tensor) -> SearchResult:
        legal = self.model.legal(boards)
        if not bool(legal.any(1).all()):
            raise EnvError("MCTS: a board to plan from is terminal (the game is over); reset the env first")
        root = RootOutput(prior_logits=legal_logits(legal), value=self.value(boards), embedding=boards)
        return search(root, self.recurrent_fn, self.config, generator=self.generator)


def outcome_rates(outcomes: list[int]) -> dict[str, float]:
    n = max(len(outcomes), 1)
    return {"win_rate": sum(o > 0 for o in outcomes) / n, "draw_rate": sum(o == 0 for o in outcomes) / n, "loss_rate": sum(o < 0 for o in outcomes) / n}


def play_match(act: Callable[[torch.Tensor], torch.Tensor], model: BoardGameModel, opponent: Callable[[np.ndarray], int], games: int, first: int = 0, device: torch.device | str = "cpu") -> dict[str, int]:
    """``games`` games of ``act`` (boards (B, rows, cols) -> actions (B,), called once per turn for every game where
    it is to move) against ``opponent`` (board -> action), played side by side; ``act`` plays first in games
    ``first, first + 2, ...`` (sides alternate). Returns the counts ``{"win", "draw", "loss"}`` for ``act``."""
    boards = model.initial_state(games, device)
    agent = (torch.arange(games, device=device) + first) % 2  # the player (0 first, 1 second) that act plays
    done = model.terminal(boards)
    while not bool(done.all()):
        mine = ~done & (model.to_play(boards) == agent)
        actions = torch.zeros(games, dtype=torch.long, device=device)
        if bool(mine.any()):
            idx = mine.nonzero().squeeze(1)
            actions[idx] = act(boards[idx]).to(device)
        theirs = (~done & ~mine).nonzero().squeeze(1).tolist()
        for g in theirs:
            actions[g] = int(opponent(boards[g].cpu().numpy()))
        moved = ~done
        nxt, _, terminated = model.step(boards, actions)
        boards = torch.where(moved[:, None, None], nxt, boards)
        done = done | terminated
    winner = model.winner(boards)
    return {"win": int((winner == agent).sum()), "draw": int((winner == DRAW).sum()), "loss": int(((winner != agent) & (winner != DRAW)).sum())}


# ------------------------------------------------------------------------------------------------ restorable envs

# Unwrapped env classes whose observation is their whole dynamics state: obs -> the snapshot's core.
_STATE_FROM_OBS: dict[str, Callable[[np.ndarray], dict]] = {
    "gymnasium.envs.classic_control.cartpole.CartPoleEnv": lambda o: {"state": np.asarray(o, dtype=np.float64).copy(), "steps_beyond_terminated": None},
    "gymnasium.envs.classic_control.mountain_car.MountainCarEnv": lambda o: {"state": np.asarray(o, dtype=np.float64).copy()},
    "gymnasium.envs.toy_text.frozen_lake.FrozenLakeEnv": lambda o: {"s": int(o), "lastaction": None},
    "gymnasium.envs.toy_text.cliffwalking.CliffWalkingEnv": lambda o: {"s": int(o), "lastaction": None},
    "dynarl.envs.dyna_maze.DynaMazeEnv": lambda o: {"state": int(o)},
}


class RestorePlanner:
    """UCT over a simulator env restored from snapshots (:mod:`dynarl.envs.restore`).

    The search's embedding of a node is the (B,) long index of its snapshot in ``self.table`` (-1: a terminal
    state, never expanded). Each ``recurrent_fn`` call restores and steps the simulator once per leaf and
    plays ``rollouts`` random playouts from the new state (a Python loop over the B leaves).
    """

    def __init__(self, sim: gym.Env, config: SearchConfig, rollouts: int, depth: int, gamma: float, rng: np.random.Generator):
        check_restorable(sim)
        self.sim, self.config, self.rollouts, self.depth, self.gamma, self.rng = sim, config, rollouts, depth, gamma, rng
        space = sim.action_space
        self.n_actions, self.start = int(space.n), int(space.start)
        self.table: list[dict] = []
        self._reseed()
        self.template = snapshot(sim)  # a fresh episode's snapshot: the frame for states rebuilt from observations

    def _reseed(self) -> None:
        """Restart the simulator from a seed drawn from the planner's generator (its outcomes are then part of the
        algorithm's checkpointed randomness; ``restore(rng=False)`` keeps this stream)."""
        self.sim.reset(seed=int(self.rng.integers(2**31)))

    def state_of(self, obs) -> dict:
        """A snapshot rebuilt from an observation, for envs whose observation is their state (else EnvError)."""
        rule = _STATE_FROM_OBS.get(self.template["env"])
        if rule is None:
            raise EnvError(f"MCTS: the observation of {self.template['env'].rsplit('.', 1)[1]} is not its whole state, so it cannot plan from an observation alone; use plan_in(env) with the env itself")
        return {**self.template, "core": rule(obs), "elapsed_steps": [0] * len(self.template["elapsed_steps"])}

    def _rollout(self) -> float:
        """One random playout from the simulator's current state: sum_t gamma^t r_t over at most ``depth`` steps."""
        ret, weight = 0.0, 1.0
        for _ in range(self.depth):
            _, reward, terminated, truncated, _ = self.sim.step(int(self.rng.integers(self.n_actions)) + self.start)
            ret += weight * float(reward)
            weight *= self.gamma
            if terminated or truncated:
                break
        return ret

    def recurrent_fn(self, emb: torch.Tensor, action: torch.Tensor) -> tuple[StepOutput, torch.Tensor]:
        B = emb.shape[0]
        reward, discount, value, nxt = np.zeros(B), np.zeros(B), np.zeros(B), np.full(B, -1, dtype=np.int64)
        for b, (i, a) in enumerate(zip(emb.tolist(), action.tolist())):
            if i < 0:
                continue  # a terminal state: absorbing, reward 0 (the search does not expand it)
            restore(self.sim, self.table[i], rng=False)
            _, r, terminated, truncated, _ = self.sim.step(a + self.start)
            reward[b] = r
            if terminated or truncated:  # a time limit ends the simulated episode too: no return after it
                continue
            discount[b] = self.gamma
            nxt[b] = len(self.table)
            self.table.append(snapshot(self.sim))
            total = self._rollout()
            for _ in range(self.rollouts - 1):
                restore(self.sim, self.table[nxt[b]], rng=False)
                total += self._rollout()
            value[b] = total / self.rollouts
        f = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
        logits = torch.zeros(B, self.n_actions)
        return StepOutput(reward=f(reward), discount=f(discount), prior_logits=logits, value=f(value)), torch.as_tensor(nxt)

    def plan(self, snaps: list[dict]) -> SearchResult:
        self._reseed()
        self.table = list(snaps)
        B = len(snaps)
        root = RootOutput(prior_logits=torch.zeros(B, self.n_actions), value=torch.zeros(B), embedding=torch.arange(B))
        try:
            return search(root, self.recurrent_fn, self.config)
        finally:
            self.table = []


# ------------------------------------------------------------------------------------------------ the algorithm


def _at_least_one(x) -> str | None:
    return None if isinstance(x, int) and not isinstance(x, bool) and x >= 1 else "must be an int >= 1: every move needs at least one simulation; set num_simulations=1 or more (e.g. 200 for TicTacToe)"


@dataclass
class MCTSConfig(RunConfig):
    algo: str = "mcts"
    env: str = "dynarl/TicTacToe-v0"
    steps: int = param(200, positive, "moves of real episodes to play (the clock); nothing is learned")
    device: str = param("cpu", one_of("auto", "cpu", "cuda"), "where the board-game searches run")
    eval_every: int = param(200, positive, "moves between evaluations")
    eval_episodes: int = param(10, positive, "evaluation episodes (board games: games against opponent, sides alternating)")
    log_every: int = param(100, positive, "moves between metric rows / console lines")
    checkpoint_every: int = param(200, positive, "moves between checkpoints (one is also written at the end)")
    num_simulations: int = param(200, _at_least_one, "simulations per move")
    c_uct: float = param(math.sqrt(2.0), positive, "UCB1 exploration constant c in Q + c sqrt(ln N(s) / N(s, a)) (Q min-max normalised per tree)")
    rollouts: int = param(1, positive, "random playouts per new leaf (their mean is the leaf value)")
    rollout_depth: int = param(50, positive, "at most this many random moves per playout")
    discount: float = param(1.0, unit_interval_open_closed, "gamma of the backups and playouts (1: undiscounted, as for board games)")
    normalize_q: bool = param(True, help="min-max normalise Q per tree before UCB1 (returns of any scale)")
    opponent: str = param("rule", one_of(*OPPONENTS), "board games: the fixed opponent of the played and evaluated games (perfect: TicTacToe only)")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")


def _board_env(env: gym.Env) -> bool:
    return isinstance(env.unwrapped, BoardGameEnv)


@register
class MCTS(Algorithm):
    """UCT with random playouts on a true model (the batched board-game rules, or env snapshots)."""

    name, config_cls = "mcts", MCTSConfig
    action_spaces = (DISCRETE,)
    observation_spaces = (BOX, IMAGE, DISCRETE)

    def _setup(self) -> None:
        cfg = self.cfg
        probe = self.make_env()
        self.board_game = _board_env(probe)
        self.search_config = SearchConfig(num_simulations=cfg.num_simulations, rule="uct", c_uct=cfg.c_uct, two_player=self.board_game, normalize_q=cfg.normalize_q)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        if self.board_game:
            if cfg.opponent == "perfect" and probe.unwrapped.game.name != "TicTacToe":
                raise ConfigError(f"opponent='perfect' exists for TicTacToe only; use opponent=rule or opponent=random for {self.env_name}")
            probe.close()
            if versus_wrapper(probe) is None:  # the two-player env: play and evaluate against the opponent
                make = self.make_env
                self.make_env = lambda: VersusOpponent(make(), cfg.opponent, agent_first="alternate")
            self.collector = self.env_collector(1)
            self.model = model_for(probe)
            self.planner = BoardPlanner(self.model, self.search_config, cfg.rollouts, cfg.rollout_depth, cfg.discount, self.generator)
        else:
            self.check_spaces(probe.observation_space, probe.action_space)  # a continuous env stops here, before the restore check
            self.planner = RestorePlanner(probe, self.search_config, cfg.rollouts, cfg.rollout_depth, cfg.discount, self.np_rng)
            self.collector = self.env_collector(1)
        self._last_search: SearchResult | None = None
        self._eval_outcomes: list[int] = []  # board games: the last evaluation's games, +1 / 0 / -1 for the agent

    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise EnvError(f"MCTS needs a Discrete action space, but {self.env_name} has {action_space}; use pets or mbpo for continuous actions")
        super().check_spaces(observation_space, action_space)

    def parts(self) -> dict:
        return {"generator": GeneratorState(self.generator)}

    # --- acting ---------------------------------------------------------------------------------------------

    def _choose(self, result: SearchResult) -> np.ndarray:
        self._last_search = result
        return result.visit_counts.argmax(1).cpu().numpy()  # the most visited root action; ties: the lowest

    def plan_boards(self, boards: torch.Tensor) -> torch.Tensor:
        """Board games: the chosen actions (B,) for boards (B, rows, cols) (one batched search)."""
        return torch.as_tensor(self._choose(self.planner.plan(boards.to(self.device))))

    def plan_in(self, env: gym.Env) -> int:
        """The action for ``env``'s current state (its snapshot, or its board), without changing ``env``."""
        if self.board_game:
            return int(self.plan_boards(torch.as_tensor(env.unwrapped.get_state())[None])[0])
        return int(self._choose(self.planner.plan([snapshot(env)]))[0]) + int(self.action_space.start)

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The planned action for observations: board games read the board off the planes; other envs rebuild
        the state from the observation where it is the whole state (CartPole, FrozenLake, the Dyna maze, ...).
        Planning is deterministic given the seed, so ``deterministic`` changes nothing."""
        obs = np.asarray(obs)
        single = obs.shape == self.observation_space.shape
        rows = obs[None] if single else obs
        if self.board_game:
            act = self.plan_boards(self.model.initial(rows.astype(np.float32), self.device)).numpy()
        else:
            act = self._choose(self.planner.plan([self.planner.state_of(o) for o in rows])) + int(self.action_space.start)
        return act[0] if single else act

    # --- the loop -------------------------------------------------------------------------------------------

    def train_step(self) -> None:
        """One move of the real episode, planned from the env's exact current state."""
        self.collector.observe()
        env = self.collector.envs.envs[0]
        self.collector.step(np.array([self.plan_in(env)]))

    def metrics(self) -> dict[str, float]:
        out = {}
        if self._last_search is not None:
            out["planning/root_value"] = float(self._last_search.root_value.mean())
            out["planning/tree_nodes"] = float(self._last_search.num_nodes.float().mean())
        if self.board_game and self._eval_outcomes:
            out.update({f"eval/{k}": v for k, v in outcome_rates(self._eval_outcomes).items()})
        return out

    def on_evaluation(self, mean_return: float, std_return: float) -> None:
        versus = versus_wrapper(self.eval_env) if self.board_game else None
        if versus is not None:
            self._eval_outcomes = list(versus.outcomes)[-self.cfg.eval_episodes :]
            versus.outcomes.clear()

    def summary(self) -> dict:
        out = super().summary()
        if self.board_game:
            out["eval_opponent"] = self.cfg.opponent
            out.update({f"eval_{k}": v for k, v in outcome_rates(self._eval_outcomes).items()} if self._eval_outcomes else {})
        return out
