"""The Dyna maze of Sutton & Barto, registered as ``dynarl/DynaMaze-v0`` (seeds 000/003, inventory B1).

Source: Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed. (2018), section 8.2, Example 8.1
and the maze inset in Figure 8.2: "In each of the 47 states there are four actions, up, down, right, and
left, which take the agent deterministically to the corresponding neighboring states, except when movement
is blocked by an obstacle or the edge of the maze, in which case the agent remains where it is. Reward is
zero on all transitions, except those into the goal state, on which it is +1. After reaching the goal state
(G), the agent returns to the start state (S) to begin a new episode. This is a discounted, episodic task
with gamma = 0.95." The cell coordinates below were read off the figure and agree with the figure's
reproduction in ShangtongZhang/reinforcement-learning-an-introduction (chapter08/maze.py); the shortest
S -> G path of that layout is 14 steps, the floor of the figure's "steps per episode" curves.

Rows count from the top, columns from the left, on a 6 x 9 grid (54 cells, 7 of them walls: 47 states)::

    . . . . . . . X G      row 0
    . . X . . . . X .      row 1
    S . X . . . . X .      row 2
    . . X . . . . . .      row 3
    . . . . . X . . .      row 4
    . . . . . . . . .      row 5

* observation: ``Discrete(54)``, the cell ``row * 9 + col`` (wall cells are never occupied);
* action: ``Discrete(4)``: 0 up, 1 down, 2 right, 3 left (the book's order); a move into a wall or off the
  grid leaves the agent where it is;
* reward 0, except +1 on the transition into G, which terminates the episode; ``reset`` puts the agent on S.
  Nothing is random, so ``reset(seed=...)`` only seeds ``np_random`` for Gymnasium's sake.
* truncated: after ``MAX_EPISODE_STEPS = 10_000`` steps (by the registration's ``TimeLimit``). The first
  episode of an agent with all-zero Q and random tie-breaking is a uniform random walk from S to G (Q stays
  zero until G is first reached), which takes 868.7 steps on average and exceeds 10,000 steps with probability
  3.4e-6 (both solved exactly from the walk's transition matrix in tests/test_tabular.py); so the limit leaves
  the book's experiment as it is while bounding an episode of a greedy policy that walks into a wall for ever.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "dynarl/DynaMaze-v0"
MAX_EPISODE_STEPS = 10_000

ROWS, COLS = 6, 9
START = (2, 0)
GOAL = (0, 8)
WALLS = frozenset({(1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7)})
ACTIONS = ("up", "down", "right", "left")
MOVES = ((-1, 0), (1, 0), (0, 1), (0, -1))  # (d_row, d_col) of each action
SHORTEST_PATH_LENGTH = 14


def to_state(row: int, col: int) -> int:
    return row * COLS + col


def to_cell(state: int) -> tuple[int, int]:
    return divmod(int(state), COLS)


def shortest_path_length() -> int:
    """Steps of the shortest S -> G path: 14 (checked by a breadth-first search in the tests)."""
    return SHORTEST_PATH_LENGTH


def transition(state: int, action: int) -> tuple[int, float, bool]:
    """The maze's deterministic dynamics: ``(next_state, reward, terminated)`` for ``action`` in ``state``."""
    row, col = to_cell(state)
    d_row, d_col = MOVES[action]
    nxt = (row + d_row, col + d_col)
    if not (0 <= nxt[0] < ROWS and 0 <= nxt[1] < COLS) or nxt in WALLS:
        nxt = (row, col)  # blocked by a wall or the edge: stay
    done = nxt == GOAL
    return to_state(*nxt), float(done), done


class DynaMazeEnv(gym.Env[np.int64, np.int64]):
    """Sutton & Barto's Dyna maze (Example 8.1); see the module docstring for the layout and the rules."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None):
        if render_mode not in (None, "ansi"):
            raise ValueError(f"{ENV_ID} renders only as text: render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(ROWS * COLS)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.state: int | None = None

    def step(self, action):
        if self.state is None:
            raise RuntimeError("Call reset before using step.")
        a = int(np.asarray(action).reshape(()))
        if not 0 <= a < len(ACTIONS):
            raise ValueError(f"{ENV_ID} takes actions 0..3 ({', '.join(ACTIONS)}), got {action!r}")
        self.state, reward, terminated = transition(self.state, a)
        return np.int64(self.state), reward, terminated, False, {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = to_state(*START)
        return np.int64(self.state), {}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        agent = to_cell(self.state) if self.state is not None else None
        lines = []
        for r in range(ROWS):
            cells = ["A" if (r, c) == agent else "X" if (r, c) in WALLS else "G" if (r, c) == GOAL else "S" if (r, c) == START else "." for c in range(COLS)]
            lines.append(" ".join(cells))
        return "\n".join(lines) + "\n"


def register() -> None:
    """Register ``dynarl/DynaMaze-v0`` in Gymnasium's registry (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="dynarl.envs.dyna_maze:DynaMazeEnv", max_episode_steps=MAX_EPISODE_STEPS)
