"""Fixed opponents for the board games and :class:`VersusOpponent`, the single-agent game against one of them.

An opponent is a callable ``opponent(board) -> action`` on the absolute board of
:mod:`dynarl.envs.board_games` (``(rows, cols)`` int8: 0 empty, 1 first player, 2 second player); it plays for
whoever is to move and reads the game from the board's shape. :class:`Opponent` subclasses draw every random
choice from their own seeded ``numpy`` generator and can be re-seeded with ``reseed(seed)``.

* :class:`RandomOpponent`: uniform among the legal actions.
* :class:`RuleBasedOpponent`: wins now if it can, else blocks the opponent's
  immediate win, else avoids moves that hand the opponent an immediate win (a Connect Four stone under the
  opponent's winning cell), and among what is left prefers the centre: TicTacToe centre > corners > edges
  (uniform within a class), Connect Four columns with weights 1, 2, 3, 4, 3, 2, 1 from the left.
* :class:`PerfectTicTacToe`: negamax over every reachable TicTacToe position, memoised
  (5,478 positions). It plays a move of the best game-theoretic value; among those it prefers the quickest
  win and the slowest loss, then the lowest action index, so it is deterministic. :func:`minimax_value` gives
  the value of a position for the player to move (+1 win, 0 draw, -1 loss under perfect play): 0 for the
  empty board.
"""

from __future__ import annotations

import abc
from collections import deque
from functools import lru_cache
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from dynarl.envs.board_games import CONNECT_FOUR_ID, DRAW, GAMES, TICTACTOE, TICTACTOE_ID, BoardGameEnv, ConnectFourEnv, TicTacToeEnv, game_of
from dynarl.errors import ConfigError, EnvError


class Opponent(abc.ABC):
    """A fixed player: ``opponent(board) -> action`` for the player to move on ``board``."""

    @abc.abstractmethod
    def __call__(self, board: np.ndarray) -> int:
        """The action this opponent plays on ``board``."""

    def reseed(self, seed: int | None) -> None:
        """Restart the opponent's random stream (no-op for deterministic opponents)."""


def _legal_actions(board: np.ndarray):
    game = game_of(board.shape)
    legal = np.flatnonzero(game.legal(board))
    if legal.size == 0:
        raise EnvError(f"{game.name}: no legal action, the game is over")
    return game, legal


class RandomOpponent(Opponent):
    """Uniform among the legal actions."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, board: np.ndarray) -> int:
        board = np.asarray(board)
        _, legal = _legal_actions(board)
        return int(self.rng.choice(legal))


_TICTACTOE_PREFERENCE = np.array([1, 0, 1, 0, 2, 0, 1, 0, 1])  # centre 2 > corners 1 > edges 0
_CONNECT_FOUR_WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0])


class RuleBasedOpponent(Opponent):
    """Win now, else block the opponent's immediate win, else a safe centre-preferring move (module docstring)."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def _wins_for(game, board: np.ndarray, legal: np.ndarray, player: int) -> np.ndarray:
        """The legal actions whose stone would complete a line for ``player`` (whoever is to move)."""
        wins = []
        for a in legal:
            b = board.copy()
            b[game.cell(board, a)] = player + 1
            if game.has_line(b, player):
                wins.append(a)
        return np.array(wins, dtype=np.int64)

    def candidates(self, board: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The moves this opponent draws from on ``board`` and their probabilities (None: uniform)."""
        board = np.asarray(board)
        game, legal = _legal_actions(board)
        me = game.to_play(board)
        for candidates in (self._wins_for(game, board, legal, me), self._wins_for(game, board, legal, 1 - me)):
            if candidates.size:
                return candidates, None
        safe = [a for a in legal if not self._wins_for(game, nxt := game.play(board, a), np.flatnonzero(game.legal(nxt)), 1 - me).size]
        rest = np.array(safe if safe else legal, dtype=np.int64)
        if game is TICTACTOE:
            rank = _TICTACTOE_PREFERENCE[rest]
            return rest[rank == rank.max()], None
        w = _CONNECT_FOUR_WEIGHTS[rest]
        return rest, w / w.sum()

    def __call__(self, board: np.ndarray) -> int:
        actions, p = self.candidates(board)
        return int(self.rng.choice(actions) if p is None else self.rng.choice(actions, p=p))


# ------------------------------------------------------------------------------------------------ perfect TicTacToe

_TTT_LINES = tuple(tuple(int(i) for i in line) for line in TICTACTOE.lines)


def _has_line(cells: tuple[int, ...], code: int) -> bool:
    return any(cells[i] == code and cells[j] == code and cells[k] == code for i, j, k in _TTT_LINES)


@lru_cache(maxsize=None)
def _solve(cells: tuple[int, ...]) -> tuple[int, int, int, tuple[int, ...]]:
    """Negamax of a TicTacToe position ``cells`` (9 codes): ``(value, plies, best_action, optimal_actions)``.

    ``value`` is for the player to move (+1/0/-1 under perfect play by both), ``plies`` the game's remaining
    length when both follow the tie-breaking below, ``best_action`` the move played (-1 at a terminal
    position) and ``optimal_actions`` every move of value ``value``. V(s) = max_a -V(s') (negamax).
    """
    first = sum(c == 1 for c in cells) == sum(c == 2 for c in cells)
    me, them = (1, 2) if first else (2, 1)
    if _has_line(cells, them):
        return -1, 0, -1, ()
    if all(cells):
        return 0, 0, -1, ()
    best_key, best_action, results = None, -1, []
    for a in range(9):
        if cells[a]:
            continue
        child_value, child_plies, _, _ = _solve(cells[:a] + (me,) + cells[a + 1 :])
        value, plies = -child_value, child_plies + 1
        results.append((a, value))
        # Prefer the value, then the quickest win / slowest loss; strict comparison keeps the lowest index on ties.
        key = (value, -plies if value > 0 else plies if value < 0 else 0)
        if best_key is None or key > best_key:
            best_key, best_action, best_plies = key, a, plies
    value = best_key[0]
    return value, best_plies, best_action, tuple(a for a, v in results if v == value)


def _ttt_cells(state: Any) -> tuple[int, ...]:
    board = TICTACTOE.check_state(np.asarray(state))
    return tuple(int(v) for v in board.reshape(-1))


def minimax_value(state: Any) -> int:
    """Game-theoretic value of a TicTacToe board for the player to move: +1 win, 0 draw, -1 loss (terminal
    positions included: -1 when the previous mover has won, 0 for a full board)."""
    return _solve(_ttt_cells(state))[0]


def optimal_actions(state: Any) -> np.ndarray:
    """Bool mask ``(9,)`` of the moves that keep the minimax value of a live TicTacToe board."""
    mask = np.zeros(9, dtype=bool)
    mask[list(_solve(_ttt_cells(state))[3])] = True
    return mask


class PerfectTicTacToe(Opponent):
    """Plays a minimax-optimal TicTacToe move (quickest win, slowest loss, then the lowest index)."""

    def __call__(self, board: np.ndarray) -> int:
        value, plies, action, _ = _solve(_ttt_cells(board))
        if action < 0:
            raise EnvError("TicTacToe: no legal action, the game is over")
        return action


def rule_expectimax(agent_first: bool) -> Callable[[tuple[int, ...]], float]:
    """``value(cells)``: the highest expected return (+1 win, 0 draw, -1 loss) a TicTacToe player on one side
    can still get against :class:`RuleBasedOpponent` from a position (9 cell codes): the maximum over its own
    moves, the expectation over the opponent's random choices (memoised over the reachable positions)."""
    opponent, agent = RuleBasedOpponent(), 1 if agent_first else 2

    @lru_cache(maxsize=None)
    def value(cells: tuple[int, ...]) -> float:
        if _has_line(cells, agent):
            return 1.0
        if _has_line(cells, 3 - agent):
            return -1.0
        if all(cells):
            return 0.0
        mover = 1 if sum(c == 1 for c in cells) == sum(c == 2 for c in cells) else 2
        if mover == agent:
            return max(value(cells[:a] + (mover,) + cells[a + 1 :]) for a in range(9) if not cells[a])
        actions, p = opponent.candidates(np.array(cells, dtype=np.int8).reshape(3, 3))
        p = np.full(len(actions), 1.0 / len(actions)) if p is None else p
        return float(sum(pi * value(cells[:a] + (mover,) + cells[a + 1 :]) for a, pi in zip(actions.tolist(), p)))

    return value


def best_return_against_rule(agent_first: bool) -> float:
    """The ceiling of a return against :class:`RuleBasedOpponent` from one side (:func:`rule_expectimax` of the
    empty board): 1 playing first (a corner, the opposite corner, then a fork its tie-breaking cannot stop),
    0 playing second. A minimax player that does not seek the fork only draws."""
    return rule_expectimax(agent_first)((0,) * 9)


OPPONENTS: dict[str, Callable[[int | None], Opponent]] = {
    "random": RandomOpponent,
    "rule": RuleBasedOpponent,
    "perfect": lambda seed=None: PerfectTicTacToe(),
}


def make_opponent(opponent: str | Callable[[np.ndarray], int], game_name: str = "", seed: int | None = None) -> Callable[[np.ndarray], int]:
    """An opponent from its name (``random``, ``rule``, ``perfect``: TicTacToe only) or a callable as is."""
    if callable(opponent):
        return opponent
    if opponent not in OPPONENTS:
        raise ConfigError(f"opponent must be one of {', '.join(OPPONENTS)} or a callable board -> action, got {opponent!r}")
    if opponent == "perfect" and game_name not in ("", TICTACTOE.name):
        raise ConfigError(f"opponent='perfect' exists for TicTacToe only; use 'rule' or 'random' for {game_name}")
    return OPPONENTS[opponent](seed)


# ------------------------------------------------------------------------------------------------ single-agent wrapper


class VersusOpponent(gym.Wrapper):
    """A board game as a single-agent env: the agent plays one side, ``opponent`` the other.

    ``agent_first``: True (the agent plays first), False (second), or ``"alternate"``. The sides and the
    opponent's random stream follow from the reset alone, so an episode replays exactly from its reset record
    (the env collector's resume) and every evaluation plays the same games: a seeded reset reseeds the opponent
    with the seed and, alternating, the agent plays first for an even seed (evaluation episode k has seed
    ``base + k``); an unseeded reset draws one number from the env's ``np_random`` for both. The constructor's
    ``seed`` seeds the first reset that has none. When the opponent starts, ``reset`` plays its first move. ``step(action)``
    plays the agent's move and, unless the game ended, the opponent's reply. The episode's return is +1 when
    the agent wins, 0 for a draw, -1 when it loses (the reward arrives on the last step). Observations are
    always from the agent's perspective (plane 0 its stones), including the terminal one; ``info`` holds
    ``action_mask`` (the agent's legal moves), ``to_play`` and ``agent_player`` (0 or 1), and ``winner`` at
    the end. ``reset(seed=...)`` also re-seeds the opponent.
    """

    def __init__(self, env: gym.Env | str, opponent: str | Callable[[np.ndarray], int] = "random", agent_first: bool | str = True, seed: int | None = None):
        if isinstance(env, str):
            env = gym.make(env)
        if not isinstance(env.unwrapped, BoardGameEnv):
            raise EnvError(f"VersusOpponent needs a board game env ({', '.join(GAMES)}), got {env.unwrapped!r}")
        if agent_first not in (True, False, "alternate"):
            raise ConfigError(f"agent_first must be True, False or 'alternate', got {agent_first!r}")
        super().__init__(env)
        self.opponent = make_opponent(opponent, env.unwrapped.game.name, seed)
        self.agent_first = agent_first
        self.agent_player = 0
        self.episodes = 0
        self._first_seed = seed
        self.outcomes: deque[int] = deque(maxlen=100_000)  # +1 win, 0 draw, -1 loss for the agent, one per finished game

    def get_wrapper_state(self) -> dict[str, Any]:
        """The wrapper's own state for :func:`dynarl.envs.restore.snapshot`: the sides, the episode count and the
        opponent's random stream (the env's board is snapshotted separately)."""
        rng = getattr(self.opponent, "rng", None)
        return {"agent_player": self.agent_player, "episodes": self.episodes, "first_seed": self._first_seed, "rng": rng.bit_generator.state if isinstance(rng, np.random.Generator) else None}

    def set_wrapper_state(self, state: dict[str, Any]) -> None:
        self.agent_player, self.episodes, self._first_seed = int(state["agent_player"]), int(state["episodes"]), state["first_seed"]
        if state["rng"] is not None:
            self.opponent.rng.bit_generator.state = state["rng"]

    def _board(self) -> np.ndarray:
        return self.env.unwrapped.get_state()

    def _agent_view(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        info["agent_player"] = self.agent_player
        if info["to_play"] != self.agent_player:  # only after the agent's winning or drawing move
            obs = obs[::-1].copy()  # planes from the agent's side: its stones first
        return obs, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        obs, info = self.env.reset(seed=seed, options=options)
        draw = int(seed) if seed is not None else int(self.env.unwrapped.np_random.integers(2**31))
        if hasattr(self.opponent, "reseed"):
            self.opponent.reseed(draw)
        first = self.agent_first if self.agent_first != "alternate" else draw % 2 == 0
        self.agent_player = 0 if first else 1
        self.episodes += 1
        if info["to_play"] != self.agent_player and info["action_mask"].any():
            obs, _, _, _, info = self.env.step(self.opponent(self._board()))
        return self._agent_view(obs, info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated):
            obs, opp_reward, terminated, truncated, info = self.env.step(self.opponent(self._board()))
            reward = -opp_reward  # zero-sum: the opponent's win is the agent's loss
        if terminated:
            winner = info.get("winner", DRAW)
            self.outcomes.append(0 if winner == DRAW else (1 if winner == self.agent_player else -1))
        obs, info = self._agent_view(obs, info)
        return obs, float(reward), terminated, truncated, info


def versus_wrapper(env: gym.Env) -> VersusOpponent | None:
    """The :class:`VersusOpponent` among ``env``'s wrappers (``dynarl/TicTacToeVersus-v0`` made with ``gym.make``
    sits under Gymnasium's own wrappers), or None for a plain env or the two-player game itself."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, VersusOpponent):
            return env
        env = env.env
    return None


def make_versus(game: str = TICTACTOE_ID, opponent: str = "rule", agent_first: bool | str = "alternate", seed: int | None = None, render_mode: str | None = None) -> VersusOpponent:
    """Entry point of ``dynarl/TicTacToeVersus-v0`` and ``dynarl/ConnectFourVersus-v0``:
    ``gym.make("dynarl/TicTacToeVersus-v0", opponent="perfect", agent_first=False)``."""
    envs = {TICTACTOE_ID: TicTacToeEnv, CONNECT_FOUR_ID: ConnectFourEnv}
    if game not in envs:
        raise ConfigError(f"game must be one of {', '.join(envs)}, got {game!r}")
    return VersusOpponent(envs[game](render_mode=render_mode), opponent=opponent, agent_first=agent_first, seed=seed)


__all__ = [
    "Opponent",
    "RandomOpponent",
    "RuleBasedOpponent",
    "PerfectTicTacToe",
    "minimax_value",
    "optimal_actions",
    "make_opponent",
    "VersusOpponent",
    "make_versus",
    "versus_wrapper",
]
