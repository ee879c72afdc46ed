"""Board games (TicTacToe, Connect Four), their batched true models, the opponents, VersusOpponent and
snapshot/restore of env state (dynarl/envs/board_games.py, opponents.py, restore.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import dynarl.envs  # noqa: F401  (registers the games)
from dynarl.envs.board_games import CONNECT_FOUR, CONNECT_FOUR_ID, TICTACTOE, TICTACTOE_ID, ConnectFourModel, IllegalMoveError, TicTacToeModel, model_for
from dynarl.envs.opponents import PerfectTicTacToe, RandomOpponent, RuleBasedOpponent, VersusOpponent, _solve, minimax_value, optimal_actions
from dynarl.envs.restore import check_restorable, is_restorable, restore, snapshot
from dynarl.errors import ConfigError, EnvError

TTT_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def _play(env, actions):
    out = None
    for a in actions:
        out = env.step(a)
    return out


def _board(rows: list[str]) -> np.ndarray:
    """A board from text rows, top row first: '.' empty, 'X' first player, 'O' second player."""
    return np.array([[{".": 0, "X": 1, "O": 2}[c] for c in row] for row in rows], dtype=np.int8)


# ------------------------------------------------------------------------------------------------ rules


def test_line_counts():
    # TicTacToe: 3 rows + 3 columns + 2 diagonals; Connect Four: 6*4 horizontal + 3*7 vertical + 2*3*4 diagonal.
    assert len(TICTACTOE.lines) == 8
    assert len(CONNECT_FOUR.lines) == 24 + 21 + 24


@pytest.mark.parametrize("line", TTT_LINES)
def test_tictactoe_win_on_every_line_for_either_player(line):
    others = [c for c in range(9) if c not in line]
    for winner in (0, 1):
        env = gym.make(TICTACTOE_ID)
        obs, info = env.reset(seed=0)
        assert obs.shape == (2, 3, 3) and obs.dtype == np.float32 and not obs.any()
        assert info["to_play"] == 0 and info["action_mask"].all()
        # The winner takes the line's cells; the other player takes cells off the line (two can never make a line).
        if winner == 0:
            moves = [line[0], others[0], line[1], others[1], line[2]]
        else:
            moves = [others[0], line[0], others[1], line[1], others[3], line[2]]
            assert not any(set(lin) <= {others[0], others[1], others[3]} for lin in TTT_LINES), "loser made a line"
        for i, a in enumerate(moves):
            obs, reward, terminated, truncated, info = env.step(a)
            last = i == len(moves) - 1
            assert terminated == last and not truncated
            assert reward == (1.0 if last else 0.0)
        assert info["winner"] == winner
        assert not info["action_mask"].any()
        # The observation is from the loser's side (to move next): the winner's stones are in plane 1.
        assert info["to_play"] == 1 - winner
        assert all(obs[1].reshape(-1)[c] == 1 for c in line)


def test_tictactoe_draw_and_perspective():
    env = gym.make(TICTACTOE_ID)
    env.reset()
    obs, reward, terminated, _, info = env.step(4)
    # After X takes the centre, O is to move: plane 0 (mine) is empty, plane 1 holds X's centre.
    assert info["to_play"] == 1 and obs[0].sum() == 0 and obs[1, 1, 1] == 1 and obs[1].sum() == 1
    env.reset()
    # X O X / X O O / O X X: no line for either player.
    moves = [0, 1, 2, 4, 3, 5, 7, 6, 8]
    for i, a in enumerate(moves):
        obs, reward, terminated, truncated, info = env.step(a)
        assert reward == 0.0 and terminated == (i == 8)
    assert info["winner"] == -1
    np.testing.assert_array_equal(env.unwrapped.get_state(), _board(["XOX", "XOO", "OXX"]))


def test_connect_four_gravity_and_full_column():
    env = gym.make(CONNECT_FOUR_ID)
    obs, info = env.reset()
    assert obs.shape == (2, 6, 7) and info["action_mask"].shape == (7,)
    for i in range(6):
        _, _, terminated, _, info = env.step(3)
        board = env.unwrapped.get_state()
        assert board[5 - i, 3] == (1 if i % 2 == 0 else 2), "a stone lands on the highest free row index"
        assert (board[: 5 - i] == 0).all()
        assert not terminated
    assert not info["action_mask"][3] and info["action_mask"].sum() == 6
    with pytest.raises(IllegalMoveError, match="column is full"):
        env.step(3)


def _c4_play(env, moves):
    env.reset()
    for i, a in enumerate(moves):
        obs, reward, terminated, _, info = env.step(a)
        assert terminated == (i == len(moves) - 1), f"move {i}"
    return reward, info


def test_connect_four_horizontal_and_vertical():
    env = gym.make(CONNECT_FOUR_ID)
    reward, info = _c4_play(env, [0, 0, 1, 1, 2, 2, 3])  # X on the bottom row 0..3, O on top of 0..2
    assert reward == 1.0 and info["winner"] == 0
    reward, info = _c4_play(env, [0, 1, 0, 1, 0, 1, 0])  # X stacks four in column 0
    assert reward == 1.0 and info["winner"] == 0
    reward, info = _c4_play(env, [6, 0, 1, 0, 1, 0, 2, 0])  # O stacks four in column 0
    assert reward == 1.0 and info["winner"] == 1
    env.reset()
    steps = _rollout(env, [0, 1, 2, 3, 4, 5, 6])  # alternating colours along the bottom: no line
    assert not any(t for _, _, t, _, _ in steps) and all(r == 0.0 for _, r, _, _, _ in steps)
    assert env.unwrapped.get_state()[5].tolist() == [1, 2, 1, 2, 1, 2, 1]


# X is to move (5 stones each); playing column 3 lands on (2, 3) and completes (5,0) (4,1) (3,2) (2,3).
RISING_DIAGONAL = _board([".......", ".......", ".......", "..XO...", ".XOX...", "XOXO..O"])


@pytest.mark.parametrize("mirror", [False, True], ids=["rising", "falling"])
def test_connect_four_diagonals(mirror):
    board = np.fliplr(RISING_DIAGONAL).copy() if mirror else RISING_DIAGONAL
    env = gym.make(CONNECT_FOUR_ID)
    obs, info = env.reset(options={"state": board})
    assert info["to_play"] == 0 and CONNECT_FOUR.winner(board) is None
    obs, reward, terminated, _, info = env.step(3)
    assert env.unwrapped.get_state()[2, 3] == 1
    assert reward == 1.0 and terminated and info["winner"] == 0
    # Any other column does not win.
    for a in (0, 1, 2, 4, 5, 6):
        env.reset(options={"state": board})
        assert env.step(a)[2] is False


def test_illegal_moves_and_bad_states_raise():
    env = gym.make(TICTACTOE_ID)
    env.reset()
    env.step(4)
    with pytest.raises(IllegalMoveError, match=r"\(cell is taken\); legal actions are \[0, 1, 2, 3, 5, 6, 7, 8\]"):
        env.step(4)
    with pytest.raises(IllegalMoveError, match="0..8"):
        env.step(9)
    with pytest.raises(IllegalMoveError, match="0..8"):
        env.step(1.5)
    _play(env, [0, 1, 3, 7])  # after X 4: O 0, X 1, O 3, X 7 -> X wins the middle column
    with pytest.raises(IllegalMoveError, match="game is over"):
        env.step(2)
    assert issubclass(IllegalMoveError, EnvError)
    with pytest.raises(EnvError, match="shape"):
        env.unwrapped.set_state(np.zeros((6, 7), np.int8))
    with pytest.raises(EnvError, match="difference 2"):
        env.unwrapped.set_state(_board(["XX.", "...", "..."]))
    with pytest.raises(EnvError, match="floats"):
        gym.make(CONNECT_FOUR_ID).unwrapped.set_state(_board(["......O", "X......", ".......", ".......", ".......", "......."]))


# ------------------------------------------------------------------------------------------------ batched models


def test_models_find_every_line():
    for model, game in ((TicTacToeModel(), TICTACTOE), (ConnectFourModel(), CONNECT_FOUR)):
        n = len(game.lines)
        state = torch.zeros(2 * n, game.rows * game.cols, dtype=torch.int8)
        for i, line in enumerate(game.lines):
            state[i, torch.as_tensor(line)] = 1
            state[n + i, torch.as_tensor(line[:-1])] = 2  # one stone short: no line
        state = state.view(2 * n, game.rows, game.cols)
        found = model.has_line(state, torch.zeros(2 * n, dtype=torch.long))
        assert found[:n].all() and not found[n:].any()
        assert not model.has_line(state, torch.ones(2 * n, dtype=torch.long))[:n].any()


@pytest.mark.parametrize("env_id", [TICTACTOE_ID, CONNECT_FOUR_ID])
def test_model_matches_env_on_random_games(env_id):
    """B random games stepped in the Gymnasium env one by one and in the batched model at once agree on every
    state, observation, reward, termination, legal mask and player to move; finished games stay absorbing."""
    model = model_for(env_id)
    rng = np.random.default_rng(0)
    batch = 48
    envs = [gym.make(env_id) for _ in range(batch)]
    infos = [e.reset(seed=i)[1] for i, e in enumerate(envs)]
    done = np.zeros(batch, dtype=bool)
    state = model.initial_state(batch)
    ended_with = {"win": 0, "draw": 0}
    while not done.all():
        legal_model = model.legal(state)
        for i in range(batch):
            if not done[i]:
                np.testing.assert_array_equal(legal_model[i].numpy(), infos[i]["action_mask"])
        actions = np.array([rng.choice(np.flatnonzero(infos[i]["action_mask"])) if not done[i] else rng.integers(model.num_actions) for i in range(batch)])
        before = state.clone()
        state, reward, terminated = model.step(state, torch.as_tensor(actions))
        assert state.dtype == torch.int8 and reward.dtype == torch.float32 and terminated.dtype == torch.bool
        obs_model, to_play = model.observe(state), model.to_play(state)
        for i in range(batch):
            if done[i]:  # absorbing terminal state: any action, same state, reward 0
                assert torch.equal(state[i], before[i]) and reward[i] == 0 and terminated[i]
                continue
            obs, r, term, trunc, infos[i] = envs[i].step(actions[i])
            np.testing.assert_array_equal(state[i].numpy(), envs[i].unwrapped.get_state())
            np.testing.assert_array_equal(obs_model[i].numpy(), obs)
            assert reward[i].item() == r and bool(terminated[i]) == term and not trunc
            assert to_play[i].item() == infos[i]["to_play"]
            if term:
                done[i] = True
                ended_with["win" if r == 1.0 else "draw"] += 1
                assert model.winner(state[i : i + 1]).item() == infos[i]["winner"]
                assert model.legal(state[i : i + 1], absorbing=True).all()
        # The observation alone gives back the state (the mover follows from the stone counts).
        assert torch.equal(model.initial(obs_model), state)
    assert ended_with["win"] > 0 and (env_id == CONNECT_FOUR_ID or ended_with["draw"] > 0)


def test_model_illegal_action_is_noop_or_raises():
    model = TicTacToeModel()
    state = model.initial(_board(["X..", "...", "..."]))
    nxt, reward, terminated = model.step(state, torch.tensor([0]))
    assert torch.equal(nxt, state) and reward.item() == 0 and not terminated.item()
    with pytest.raises(IllegalMoveError, match="mask with legal"):
        TicTacToeModel(validate=True).step(state, torch.tensor([0]))
    c4 = ConnectFourModel()
    full_column = c4.initial(np.array([[1], [2], [1], [2], [1], [2]], dtype=np.int8) * np.eye(7, dtype=np.int8)[0])
    assert not c4.legal(full_column)[0, 0] and c4.legal(full_column)[0, 1:].all()
    assert torch.equal(c4.step(full_column, torch.tensor([0]))[0], full_column)
    with pytest.raises(EnvError, match="shape"):
        model.initial(np.zeros((2, 6, 7), np.float32))


# ------------------------------------------------------------------------------------------------ opponents


def _match(env_id, first, second, games, seed=0):
    """Results of ``games`` games, ``first`` alternating sides with ``second``: +1 when ``first`` wins."""
    env = gym.make(env_id)
    results = []
    for g in range(games):
        players = (first, second) if g % 2 == 0 else (second, first)
        _, info = env.reset(seed=seed + g)
        while True:
            _, _, terminated, _, info = env.step(players[info["to_play"]](env.unwrapped.get_state()))
            if terminated:
                w = info["winner"]
                results.append(0 if w == -1 else 1 if players[w] is first else -1)
                break
    return np.array(results)


def test_minimax_values():
    assert minimax_value(np.zeros((3, 3), np.int8)) == 0
    assert _solve.cache_info().currsize == 5478  # the negamax visited every reachable TicTacToe position
    assert minimax_value(_board(["XX.", "OO.", "..."])) == 1  # X to move completes the top row
    assert minimax_value(_board(["XX.", "O..", "..O"])) == 1  # 2 stones each: X to move, wins at 2
    # O to move, no line of its own to complete, facing X's two threats (cells 2 and 6): O loses.
    assert minimax_value(_board(["XX.", "XO.", "..O"])) == -1
    assert minimax_value(_board(["XXX", "OO.", "..."])) == -1  # terminal: the previous mover won
    assert minimax_value(_board(["XOX", "XOO", "OXX"])) == 0  # full board, no line
    # X wins at 2; X at 5 blocks O but only draws (O must take 2, X must take 6, then nobody can win); the rest lose to O at 5.
    np.testing.assert_array_equal(np.flatnonzero(optimal_actions(_board(["XX.", "OO.", "..."]))), [2])


def test_perfect_player_never_loses_and_takes_quickest_win():
    perfect = PerfectTicTacToe()
    assert perfect(_board(["XX.", "OO.", "..."])) == 2  # wins now, not later
    assert perfect(_board(["XX.", "O..", "..."])) == 2  # O to move must block
    # X wins now at 6, or later from 4 (threats on 5, 6 and 8 at once): the quickest win, not the lowest index.
    board = _board(["XOO", "X..", "..."])
    assert perfect(board) == 6 and optimal_actions(board)[[4, 6]].all()
    results = _match(TICTACTOE_ID, perfect, RandomOpponent(seed=1), games=300)
    assert (results >= 0).all()
    assert (results == 1).mean() > 0.8  # random play loses most games to a perfect player
    assert (_match(TICTACTOE_ID, perfect, PerfectTicTacToe(), games=2) == 0).all()
    assert (_match(TICTACTOE_ID, perfect, RuleBasedOpponent(seed=2), games=40) >= 0).all()


def test_rule_based_wins_blocks_and_beats_random():
    rule = RuleBasedOpponent(seed=0)
    assert rule(_board(["XX.", "OO.", "..."])) == 2  # win now (X to move)
    assert rule(_board(["XX.", "O..", "..."])) == 2  # block (O to move)
    assert rule(_board(["...", "...", "..."])) == 4  # centre first
    assert rule(_board(["...", ".X.", "..."])) in (0, 2, 6, 8)  # then a corner
    # Connect Four: O to move must block X's three on the bottom row at column 3.
    assert rule(_board([".......", ".......", ".......", ".......", "....O..", "XXX.O.."])) == 3
    # O to move facing X's open three (wins at columns 0 and 4): it blocks one of them, though neither is safe.
    open_three = _board([".......", ".......", ".......", ".......", "..OO...", ".XXX..."])
    assert {RuleBasedOpponent(seed=s)(open_three) for s in range(40)} == {0, 4}
    # X to move, no win or block: column 5 would put a stone under O's winning cell (4, 5), so it is never chosen.
    trap = _board([".......", ".......", ".......", ".......", ".XOOO..", ".XOXX.."])
    assert {RuleBasedOpponent(seed=s)(trap) for s in range(40)} == {0, 1, 2, 3, 4, 6}
    ttt = _match(TICTACTOE_ID, RuleBasedOpponent(seed=3), RandomOpponent(seed=4), games=200)
    assert (ttt == 1).mean() > 0.8 and (ttt == -1).mean() < 0.05
    c4 = _match(CONNECT_FOUR_ID, RuleBasedOpponent(seed=5), RandomOpponent(seed=6), games=60)
    assert (c4 == 1).mean() > 0.85


def test_opponents_are_seeded():
    board = np.zeros((6, 7), np.int8)
    a, b = RandomOpponent(seed=7), RandomOpponent(seed=7)
    assert [a(board) for _ in range(20)] == [b(board) for _ in range(20)]
    c, d = RuleBasedOpponent(seed=8), RuleBasedOpponent(seed=9)
    assert [c(board) for _ in range(30)] != [d(board) for _ in range(30)]


# ------------------------------------------------------------------------------------------------ VersusOpponent


def _lowest(board):
    """An opponent that always plays the lowest legal action."""
    return int(np.flatnonzero(TICTACTOE.legal(board))[0])


def test_versus_opponent_returns():
    env = VersusOpponent(gym.make(TICTACTOE_ID), opponent=_lowest, agent_first=True)
    obs, info = env.reset(seed=0)
    assert info["agent_player"] == 0 and not obs.any()
    # Agent 4, opp 0, agent 2, opp 1, agent 6: the 2-4-6 diagonal.
    rewards = [env.step(a)[1] for a in (4, 2)]
    obs, reward, terminated, _, info = env.step(6)
    assert rewards == [0.0, 0.0] and reward == 1.0 and terminated
    assert obs[0].reshape(-1)[[2, 4, 6]].all(), "the terminal observation is from the agent's side"
    env.reset()
    # Agent 8, opp 0, agent 7, opp 1, agent 5, opp 2 completes the top row.
    assert [env.step(a)[1] for a in (8, 7)] == [0.0, 0.0]
    obs, reward, terminated, _, info = env.step(5)
    assert reward == -1.0 and terminated and info["winner"] == 1 and not info["action_mask"].any()


def test_versus_alternates_and_never_beats_perfect():
    env = gym.make("dynarl/TicTacToeVersus-v0", opponent="perfect", agent_first="alternate")
    agent = RandomOpponent(seed=11)
    returns, sides = [], []
    for episode in range(40):
        obs, info = env.reset(seed=episode)
        sides.append(info["agent_player"])
        # When the opponent starts, its first move is already on the board and the agent is to move.
        assert info["to_play"] == info["agent_player"] and obs.sum() == info["agent_player"]
        total, terminated = 0.0, False
        while not terminated:
            _, reward, terminated, _, info = env.step(agent(env.unwrapped.get_state()))
            total += reward
        returns.append(total)
    assert sides == [0, 1] * 20
    assert set(returns) <= {0.0, -1.0} and returns.count(-1.0) > 20


def test_versus_errors():
    with pytest.raises(ConfigError, match="TicTacToe only"):
        gym.make("dynarl/ConnectFourVersus-v0", opponent="perfect")
    with pytest.raises(ConfigError, match="agent_first"):
        VersusOpponent(gym.make(TICTACTOE_ID), agent_first="sometimes")
    with pytest.raises(ConfigError, match="opponent must be one of"):
        VersusOpponent(gym.make(TICTACTOE_ID), opponent="strong")
    with pytest.raises(EnvError, match="board game"):
        VersusOpponent(gym.make("CartPole-v1"))


# ------------------------------------------------------------------------------------------------ snapshot / restore


def _rollout(env, actions):
    return [env.step(a) for a in actions]


def _same(a, b):
    for (o1, r1, t1, tr1, _), (o2, r2, t2, tr2, _) in zip(a, b):
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1, tr1) == (r2, t2, tr2)


def _balance(env, steps, obs):
    """Push the cart towards where the pole falls (keeps CartPole up well past 40 steps); the actions taken."""
    actions, out = [], []
    for _ in range(steps):
        actions.append(int(obs[2] + 0.5 * obs[3] > 0))
        out.append(env.step(actions[-1]))
        obs = out[-1][0]
    return actions, out


def test_cartpole_restore_is_bit_identical():
    env = gym.make("CartPole-v1", max_episode_steps=40)
    obs, _ = env.reset(seed=3)
    _, out = _balance(env, 25, obs)
    snap = snapshot(env)
    actions, first = _balance(env, 15, out[-1][0])
    assert [(t, tr) for _, _, t, tr, _ in first] == [(False, False)] * 14 + [(False, True)]  # truncated at step 40
    restore(env, snap)
    _same(first, _rollout(env, actions))
    fresh = gym.make("CartPole-v1", max_episode_steps=40)  # never reset: restore makes it steppable
    restore(fresh, snap)
    _same(first, _rollout(fresh, actions))  # the time limit counts on from the snapshot's 25 steps
    # steps_beyond_terminated is part of the state.
    env.unwrapped.steps_beyond_terminated = 0
    snap = snapshot(env)
    env.unwrapped.steps_beyond_terminated = None
    restore(env, snap)
    assert env.unwrapped.steps_beyond_terminated == 0


def _registered(*candidates: str) -> str:
    """The first id Gymnasium knows (toy-text versions moved between Gymnasium releases)."""
    return next((c for c in candidates if c in gym.registry), candidates[0])


@pytest.mark.parametrize(
    "env_id",
    ["FrozenLake-v1", _registered("Taxi-v4", "Taxi-v3"), _registered("CliffWalking-v1", "CliffWalking-v0"), "dynarl/DynaMaze-v0", "dynarl/ContinuousCartPole-v0", "Pendulum-v1"],
)
def test_restore_round_trips(env_id):
    env = gym.make(env_id)
    env.reset(seed=5)
    env.action_space.seed(5)
    _rollout(env, [env.action_space.sample() for _ in range(3)])
    snap = snapshot(env)
    actions = [env.action_space.sample() for _ in range(20)]
    first = []
    for a in actions:  # stop at the episode's end, as an agent would
        first.append(env.step(a))
        if first[-1][2] or first[-1][3]:
            break
    fresh = gym.make(env_id)
    restore(fresh, snap)  # FrozenLake is slippery: the restored np_random gives the same slips
    _same(first, _rollout(fresh, actions[: len(first)]))


def test_board_game_and_versus_snapshots():
    env = gym.make("dynarl/ConnectFourVersus-v0", opponent="random", seed=0)
    env.reset(seed=1)
    _rollout(env, [3, 3])
    snap = snapshot(env)
    actions = [2, 4, 2, 4]
    first = _rollout(env, actions)
    other = gym.make("dynarl/ConnectFourVersus-v0", opponent="random", seed=99)
    restore(other, snap)  # board, sides and the opponent's random stream
    _same(first, _rollout(other, actions))
    board = other.unwrapped.get_state()
    snap["core"][0, 0] = 1  # restore copied the snapshot: changing it afterwards changes nothing
    np.testing.assert_array_equal(other.unwrapped.get_state(), board)


class _Opaque(gym.Env):
    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)


def test_unrestorable_envs_raise_one_line():
    for env, what in ((_Opaque(), "_Opaque"), (gym.wrappers.NormalizeObservation(gym.make("CartPole-v1")), "NormalizeObservation")):
        assert not is_restorable(env)
        with pytest.raises(EnvError, match="muzero") as e:
            check_restorable(env)
        assert what in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(EnvError):
            snapshot(env)
    cart = gym.make("CartPole-v1")
    cart.reset(seed=0)
    with pytest.raises(EnvError, match="restore into an env made like"):
        restore(gym.make(TICTACTOE_ID), snapshot(cart))
    with pytest.raises(EnvError, match="time limits"):
        restore(gym.make("CartPole-v1").unwrapped, snapshot(cart))
    assert is_restorable(gym.make("CartPole-v1")) and is_restorable(gym.make(TICTACTOE_ID))


def test_the_ceiling_against_the_rule_based_opponent_is_reached_in_real_games():
    """Expectimax against the rule-based opponent's random choices: playing first a fork always wins (1.0),
    playing second a draw is the best (0.0). The greedy expectimax player reaches exactly that in real games
    through the Versus env, whatever the opponent's seed."""
    from dynarl.envs.opponents import best_return_against_rule, rule_expectimax

    assert best_return_against_rule(True) == 1.0 and best_return_against_rule(False) == 0.0
    for first in (True, False):
        value = rule_expectimax(first)
        me = 1 if first else 2
        env = VersusOpponent(gym.make(TICTACTOE_ID), "rule", agent_first=first)
        for seed in range(10):
            obs, info = env.reset(seed=seed)
            done, ret = False, 0.0
            while not done:
                cells = tuple(int(c) for c in env.unwrapped.get_state().reshape(-1))
                legal = [a for a in range(9) if not cells[a]]
                action = max(legal, key=lambda a: value(cells[:a] + (me,) + cells[a + 1 :]))
                obs, r, terminated, truncated, info = env.step(action)
                ret, done = ret + r, terminated or truncated
            assert ret == (1.0 if first else 0.0), (first, seed)
