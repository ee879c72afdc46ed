"""Two-player board games for MCTS with a true model: TicTacToe (3 x 3) and Connect Four (6 x 7).

Registered as ``dynarl/TicTacToe-v0`` and ``dynarl/ConnectFour-v0`` (plus the single-agent versions against a
fixed opponent, ``dynarl/TicTacToeVersus-v0`` and ``dynarl/ConnectFourVersus-v0``, see
:mod:`dynarl.envs.opponents`). Each game comes twice, with the same rules:

* a Gymnasium env (numpy, one game) that the players take turns to step, and
* a batched torch *true model* (:class:`TicTacToeModel`, :class:`ConnectFourModel`) that steps B games at once
  on any device, for a search's ``recurrent_fn`` (AlphaZero's simulator, Silver et al. 2017/2018).

The state
    An ``int8`` board of shape ``(rows, cols)``: 0 empty, 1 a stone of the first player (player 0), 2 a stone
    of the second player (player 1). Row 0 is the top row; Connect Four's stones fall to the highest free row
    index of their column. The board alone is the whole state: the player to move is 0 when both players
    have as many stones, else 1, and whether the game is over is read off the board (a line of
    ``in_a_row`` stones, or a full board). ``env.unwrapped.get_state()`` / ``set_state(board)`` copy it; the
    batched model's state is a ``(B, rows, cols)`` int8 tensor of the same boards.

Observation (``Box(0, 1, (2, rows, cols), float32)``)
    From the perspective of the player to move: plane 0 holds that player's stones, plane 1 the opponent's,
    as in AlphaZero's board planes. ``info["to_play"]`` says who that player is (0 or 1).

Action
    ``Discrete(9)``: the cell ``row * 3 + col`` (TicTacToe); ``Discrete(7)``: the column (Connect Four).
    ``info["action_mask"]`` is the bool array of legal actions (all False once the game is over).

Reward and termination
    ``+1`` to the player who just moved when its move completes a line (it wins); 0 for every other move,
    including the one that fills the board for a draw. The episode terminates on a win or a full board; it is
    never truncated. On termination ``info["winner"]`` is 0 or 1, or -1 for a draw.

Illegal actions
    Raise :class:`IllegalMoveError` (an occupied cell, a full column, a move after the game ended, an action
    out of range), with the legal actions in the message: a learner must pick among ``info["action_mask"]``.
    An illegal move is never turned into a loss, so rewards only ever measure play.

The batched model's conventions for search
    ``step`` on a terminal state leaves it unchanged with reward 0 and ``terminated=True`` (terminal states are
    absorbing, so a search can pass through them); ``legal(state, absorbing=True)`` reports every action of a
    terminal state as legal for that reason. An illegal action on a live state is a no-op (state unchanged,
    reward 0, not terminated): searches must mask with ``legal``; ``validate=True`` makes it raise instead.
    Wins are found by gathering the cells of every winning line at once, so nothing leaves the device.
"""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dynarl.errors import EnvError

TICTACTOE_ID = "dynarl/TicTacToe-v0"
CONNECT_FOUR_ID = "dynarl/ConnectFour-v0"
TICTACTOE_VERSUS_ID = "dynarl/TicTacToeVersus-v0"
CONNECT_FOUR_VERSUS_ID = "dynarl/ConnectFourVersus-v0"

EMPTY, FIRST, SECOND = 0, 1, 2  # board codes; the stone of player p (0 or 1) is p + 1
DRAW = -1  # info["winner"] of a drawn game


class IllegalMoveError(EnvError):
    """An action that the rules forbid in the current position (or any action after the game ended)."""


# ------------------------------------------------------------------------------------------------ numpy rules


class Game:
    """A connection game's rules on numpy boards: ``rows x cols``, ``in_a_row`` stones to win, with or without gravity.

    Used by the Gymnasium envs and the opponents; the batched torch models implement the same rules
    independently (tests check them against each other on random games).
    """

    def __init__(self, name: str, env_id: str, rows: int, cols: int, in_a_row: int, gravity: bool):
        self.name, self.env_id = name, env_id
        self.rows, self.cols, self.in_a_row, self.gravity = rows, cols, in_a_row, gravity
        self.num_actions = cols if gravity else rows * cols
        self.shape = (rows, cols)
        self.lines = self._lines()  # (num_lines, in_a_row) flat cell indices of every winning line

    def _lines(self) -> np.ndarray:
        lines = []
        for r, c in itertools.product(range(self.rows), range(self.cols)):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):  # right, down, down-right, down-left
                cells = [(r + i * dr, c + i * dc) for i in range(self.in_a_row)]
                if all(0 <= rr < self.rows and 0 <= cc < self.cols for rr, cc in cells):
                    lines.append([rr * self.cols + cc for rr, cc in cells])
        return np.array(lines, dtype=np.int64)

    def initial(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.int8)

    def to_play(self, board: np.ndarray) -> int:
        """0 when both players have as many stones (the first player moves), else 1."""
        return int(np.count_nonzero(board == FIRST) > np.count_nonzero(board == SECOND))

    def has_line(self, board: np.ndarray, player: int) -> bool:
        """Whether ``player`` (0 or 1) has ``in_a_row`` stones on one line."""
        return bool(np.any(np.all(board.reshape(-1)[self.lines] == player + 1, axis=1)))

    def winner(self, board: np.ndarray) -> int | None:
        """0 or 1 for a won game, :data:`DRAW` for a full board without a line, ``None`` while the game goes on."""
        for p in (0, 1):
            if self.has_line(board, p):
                return p
        return DRAW if bool(np.all(board != EMPTY)) else None

    def is_terminal(self, board: np.ndarray) -> bool:
        return self.winner(board) is not None

    def legal(self, board: np.ndarray) -> np.ndarray:
        """Bool mask ``(num_actions,)`` of the legal actions; all False once the game is over."""
        if self.is_terminal(board):
            return np.zeros(self.num_actions, dtype=bool)
        if self.gravity:
            return board[0] == EMPTY  # a column takes a stone while its top cell is free
        return board.reshape(-1) == EMPTY

    def cell(self, board: np.ndarray, action: int) -> tuple[int, int]:
        """The ``(row, col)`` where ``action`` puts the stone (the lowest free cell of the column with gravity)."""
        if not self.gravity:
            return divmod(int(action), self.cols)
        free = np.flatnonzero(board[:, action] == EMPTY)
        return int(free[-1]), int(action)

    def play(self, board: np.ndarray, action: int) -> np.ndarray:
        """The board after the player to move plays the legal ``action`` (a new array)."""
        nxt = board.copy()
        nxt[self.cell(board, action)] = self.to_play(board) + 1
        return nxt

    def observe(self, board: np.ndarray) -> np.ndarray:
        """``(2, rows, cols)`` float32 planes: the stones of the player to move, then the opponent's."""
        me = self.to_play(board) + 1
        return np.stack([board == me, board == 3 - me]).astype(np.float32)

    def check_state(self, board: Any) -> np.ndarray:
        """``board`` as an int8 array if it can occur in a game, else :class:`EnvError` saying what is wrong."""
        b = np.asarray(board)
        if b.shape != self.shape:
            raise EnvError(f"{self.name} state must be a board of shape {self.shape}, got shape {b.shape}")
        if not np.all(np.isin(b, (EMPTY, FIRST, SECOND))):
            raise EnvError(f"{self.name} board cells must be 0 (empty), 1 (first player) or 2 (second player)")
        b = b.astype(np.int8)
        diff = int(np.count_nonzero(b == FIRST)) - int(np.count_nonzero(b == SECOND))
        if diff not in (0, 1):
            raise EnvError(f"{self.name} board is unreachable: the first player must have as many stones as the second, or one more (difference {diff})")
        if self.gravity and np.any((b[:-1] != EMPTY) & (b[1:] == EMPTY)):
            raise EnvError(f"{self.name} board is unreachable: a stone floats above an empty cell")
        return b


TICTACTOE = Game("TicTacToe", TICTACTOE_ID, rows=3, cols=3, in_a_row=3, gravity=False)
CONNECT_FOUR = Game("ConnectFour", CONNECT_FOUR_ID, rows=6, cols=7, in_a_row=4, gravity=True)
GAMES = {TICTACTOE_ID: TICTACTOE, CONNECT_FOUR_ID: CONNECT_FOUR}


def game_of(board_shape: tuple[int, ...]) -> Game:
    """The game whose boards have this shape (``(3, 3)`` TicTacToe, ``(6, 7)`` Connect Four)."""
    for game in GAMES.values():
        if tuple(board_shape) == game.shape:
            return game
    raise EnvError(f"no board game has boards of shape {tuple(board_shape)}: TicTacToe is (3, 3), Connect Four (6, 7)")


# ------------------------------------------------------------------------------------------------ gym envs


class BoardGameEnv(gym.Env[np.ndarray, np.int64]):
    """One game of :attr:`game` between two players who take turns; see the module docstring for the conventions."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    game: Game

    def __init__(self, render_mode: str | None = None):
        if render_mode not in (None, "ansi"):
            raise ValueError(f"{self.game.env_id} renders only as text: render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        g = self.game
        self.observation_space = spaces.Box(0.0, 1.0, shape=(2, g.rows, g.cols), dtype=np.float32)
        self.action_space = spaces.Discrete(g.num_actions)
        self.board: np.ndarray | None = None

    # The board is the whole state (see the module docstring), so these are all a true-model search needs.
    def get_state(self) -> np.ndarray:
        """A copy of the board, ``(rows, cols)`` int8."""
        if self.board is None:
            raise RuntimeError("Call reset before using get_state.")
        return self.board.copy()

    def set_state(self, state: Any) -> None:
        """Continue from the board ``state`` (validated: shape, cell codes, stone counts, gravity)."""
        self.board = self.game.check_state(state).copy()

    def _obs_info(self) -> tuple[np.ndarray, dict[str, Any]]:
        g, b = self.game, self.board
        return g.observe(b), {"action_mask": g.legal(b), "to_play": g.to_play(b)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """An empty board, or ``options={"state": board}`` to start from a position."""
        super().reset(seed=seed)
        state = (options or {}).get("state")
        self.board = self.game.initial() if state is None else self.game.check_state(state).copy()
        return self._obs_info()

    def step(self, action):
        if self.board is None:
            raise RuntimeError("Call reset before using step.")
        g = self.game
        a = np.asarray(action)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a.reshape(())) < g.num_actions:
            raise IllegalMoveError(f"{g.env_id} takes one integer action in 0..{g.num_actions - 1}, got {action!r}")
        a = int(a.reshape(()))
        if g.is_terminal(self.board):
            raise IllegalMoveError(f"{g.env_id}: the game is over; call reset() before stepping again")
        legal = g.legal(self.board)
        if not legal[a]:
            what = "column is full" if g.gravity else "cell is taken"
            raise IllegalMoveError(f"{g.env_id}: action {a} is illegal here ({what}); legal actions are {np.flatnonzero(legal).tolist()} (info['action_mask'])")
        mover = g.to_play(self.board)
        self.board = g.play(self.board, a)
        won = g.has_line(self.board, mover)
        full = bool(np.all(self.board != EMPTY))
        obs, info = self._obs_info()
        terminated = won or full
        if terminated:
            info["winner"] = mover if won else DRAW
        return obs, float(won), terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.board is None:
            return None
        symbols = {EMPTY: ".", FIRST: "X", SECOND: "O"}
        return "\n".join(" ".join(symbols[int(v)] for v in row) for row in self.board) + "\n"


class TicTacToeEnv(BoardGameEnv):
    """TicTacToe: 3 x 3, three in a row (horizontal, vertical or diagonal) wins; ``Discrete(9)`` cells ``row * 3 + col``."""

    game = TICTACTOE


class ConnectFourEnv(BoardGameEnv):
    """Connect Four: 6 rows x 7 columns, stones fall down the chosen column, four in a row in any direction wins."""

    game = CONNECT_FOUR


# ------------------------------------------------------------------------------------------------ batched true models


class BoardGameModel:
    """The rules of :attr:`game` on batches of boards, in torch, for a search's ``recurrent_fn``.

    The state is a ``(B, rows, cols)`` int8 tensor of boards (codes of the module docstring); every method
    works on the state's device and takes ``(B,)`` long actions. Stateless: one instance serves any batch.
    A two-player search's ``recurrent_fn`` (rewards for the player who acted, values for the player to move)::

        def recurrent_fn(state, action):
            nxt, reward, terminated = model.step(state, action)
            logits, value = net(model.observe(nxt))
            logits = logits.masked_fill(~model.legal(nxt), float("-inf"))
            discount = (~terminated).float()  # the search does not expand past a terminal transition
            return StepOutput(reward, discount, logits, value * discount), nxt
    """

    game: Game

    def __init__(self, validate: bool = False):
        g = self.game
        self.rows, self.cols, self.in_a_row, self.num_actions = g.rows, g.cols, g.in_a_row, g.num_actions
        self.validate = validate  # raise on illegal actions (costs a device sync per step)
        self._lines: dict[torch.device, torch.Tensor] = {}

    # --------------------------------------------------------------------------------------- conversions
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``batch_size`` empty boards."""
        return torch.zeros(batch_size, self.rows, self.cols, dtype=torch.int8, device=device)

    def initial(self, x: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """The batched state from boards or observations (numpy or torch, batched or not).

        Integer input is read as boards ``([B,] rows, cols)``; floating input as observations
        ``([B,] 2, rows, cols)`` from the perspective of the player to move, whose identity follows from the
        stone counts (the mover has as many stones as the opponent when it is the first player, one fewer
        when it is the second).
        """
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, device=device)
        if t.is_floating_point():
            if t.dim() == 3:
                t = t.unsqueeze(0)
            if t.shape[1:] != (2, self.rows, self.cols):
                raise EnvError(f"{self.game.name} observations have shape (B, 2, {self.rows}, {self.cols}), got {tuple(t.shape)}")
            mine, theirs = t[:, 0] > 0.5, t[:, 1] > 0.5
            second = mine.flatten(1).sum(1) < theirs.flatten(1).sum(1)  # the mover is player 1
            mover = torch.where(second, SECOND, FIRST).to(torch.int8)[:, None, None]
            return (mine.to(torch.int8) * mover + theirs.to(torch.int8) * (3 - mover)).to(torch.int8)
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.shape[1:] != (self.rows, self.cols):
            raise EnvError(f"{self.game.name} boards have shape (B, {self.rows}, {self.cols}), got {tuple(t.shape)}")
        return t.to(torch.int8)

    def to_play(self, state: torch.Tensor) -> torch.Tensor:
        """``(B,)`` long: 0 when both players have as many stones, else 1."""
        flat = state.flatten(1)
        return ((flat == FIRST).sum(1) > (flat == SECOND).sum(1)).long()

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """``(B, 2, rows, cols)`` float32 planes from the perspective of the player to move (as the env's observation)."""
        me = (self.to_play(state) + 1).to(state.dtype)[:, None, None]
        return torch.stack([state == me, state == 3 - me], dim=1).float()

    # --------------------------------------------------------------------------------------- rules
    def _line_cells(self, device: torch.device) -> torch.Tensor:
        """``(lines, in_a_row)`` flat cell indices of every winning line (the game's ``lines``), cached per device."""
        if device not in self._lines:
            self._lines[device] = torch.as_tensor(self.game.lines, device=device)
        return self._lines[device]

    def has_line(self, state: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: whether ``player`` ((B,) long, 0 or 1) has ``in_a_row`` stones on one line.

        One gather of every line's cells and a test that all are the player's (no Python loop over cells or
        lines); about ten times faster on CPU than convolving line kernels over these small boards, and random
        playouts call it thousands of times per move.
        """
        code = (player + 1).to(state.dtype)[:, None, None]
        return (state.flatten(1)[:, self._line_cells(state.device)] == code).all(-1).any(-1)

    def full(self, state: torch.Tensor) -> torch.Tensor:
        return (state != EMPTY).flatten(1).all(1)

    def winner(self, state: torch.Tensor) -> torch.Tensor:
        """``(B,)`` long: 0 or 1 for a won game, -1 otherwise (a draw or a game still going on)."""
        last = 1 - self.to_play(state)  # only the player who moved last can have a line
        return torch.where(self.has_line(state, last), last, torch.full_like(last, DRAW))

    def terminal(self, state: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the game is over (a line, or a full board)."""
        return self.has_line(state, 1 - self.to_play(state)) | self.full(state)

    def legal(self, state: torch.Tensor, absorbing: bool = False) -> torch.Tensor:
        """``(B, A)`` bool mask of legal actions; all False in terminal states, or all True with ``absorbing=True``
        (the view a search wants: from a terminal state every action is a no-op with reward 0)."""
        free = state[:, 0] == EMPTY if self.game.gravity else state.flatten(1) == EMPTY
        term = self.terminal(state)[:, None]
        return (free | term) if absorbing else (free & ~term)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(next_state, reward, terminated)`` for the player to move playing ``action`` in each game.

        ``reward`` (float32) is +1 where the move completes a line for its player (the reward of the player
        who acted), else 0; ``terminated`` is whether ``next_state`` is terminal. Terminal states stay as they
        are (reward 0, terminated True); an illegal action on a live state is a no-op (see the module docstring).
        """
        action = action.long().reshape(-1)
        b = state.shape[0]
        term = self.terminal(state)
        mover = self.to_play(state)
        flat = state.flatten(1)
        if self.game.gravity:
            height = (state != EMPTY).sum(1)  # (B, cols): stones in each column
            h = height.gather(1, action[:, None]).squeeze(1)
            row = (self.rows - 1 - h).clamp(min=0)
            cell = row * self.cols + action
            free = h < self.rows
        else:
            cell = action
            free = flat.gather(1, action[:, None]).squeeze(1) == EMPTY
        move = free & ~term
        if self.validate and bool((~free & ~term).any()):
            bad = torch.nonzero(~free & ~term).flatten().tolist()
            raise IllegalMoveError(f"{self.game.name} model: illegal actions in games {bad[:10]} (mask with legal(state))")
        old = flat.gather(1, cell[:, None]).squeeze(1)
        new = torch.where(move, (mover + 1).to(state.dtype), old)
        nxt = flat.scatter(1, cell[:, None], new[:, None]).view(b, self.rows, self.cols)
        won = move & self.has_line(nxt, mover)
        terminated = term | won | self.full(nxt)
        return nxt, won.float(), terminated


class TicTacToeModel(BoardGameModel):
    """Batched TicTacToe rules: state ``(B, 3, 3)`` int8, actions ``(B,)`` in 0..8 (``row * 3 + col``)."""

    game = TICTACTOE


class ConnectFourModel(BoardGameModel):
    """Batched Connect Four rules: state ``(B, 6, 7)`` int8, actions ``(B,)`` columns in 0..6."""

    game = CONNECT_FOUR


def model_for(env_id_or_env: Any) -> BoardGameModel:
    """The batched true model of a board-game env id or env (``dynarl/TicTacToe-v0``, ``dynarl/ConnectFour-v0``)."""
    game = getattr(getattr(env_id_or_env, "unwrapped", None), "game", None) or GAMES.get(env_id_or_env)
    if game is TICTACTOE:
        return TicTacToeModel()
    if game is CONNECT_FOUR:
        return ConnectFourModel()
    raise EnvError(f"no batched true model for {env_id_or_env!r}: dynarl has one for {', '.join(GAMES)}")


def register() -> None:
    """Register the two games and their versus-opponent versions in Gymnasium's registry (idempotent)."""
    entries = {
        TICTACTOE_ID: ("dynarl.envs.board_games:TicTacToeEnv", {}),
        CONNECT_FOUR_ID: ("dynarl.envs.board_games:ConnectFourEnv", {}),
        TICTACTOE_VERSUS_ID: ("dynarl.envs.opponents:make_versus", {"game": TICTACTOE_ID}),
        CONNECT_FOUR_VERSUS_ID: ("dynarl.envs.opponents:make_versus", {"game": CONNECT_FOUR_ID}),
    }
    for env_id, (entry_point, kwargs) in entries.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)
