"""MuZero's network and search on TicTacToe, trained on the game's true targets instead of self-play's.

    python benchmarks/muzero_true_targets.py [--updates 3000] [--batch 128] [--games 100] [--seed 0] [--set KEY=VALUE ...]

Separates what the network and the search can do from what self-play teaches them. Positions are a uniformly
chosen ply of a uniformly random game (so openings come as often as games pass through them), each unrolled
K = ``unroll_steps`` random legal moves; the targets are the true ones: the minimax value for the player to move
(0 once the game is over), the reward of each move (+1 when it completes a line for its player), and a policy
uniform over the minimax-optimal moves. ``MuZeroLearner.update`` trains the TicTacToe preset's network (or the
``--set`` overrides) on them. It then reports, over every reachable live position: the value head's correlation
with the minimax value, how often the prior's argmax (legal moves only) is optimal, and the reward head's recall
on winning moves (predicted reward > 0.5); and games, sides alternating, against the random and the rule-based
opponent for the prior's argmax alone and for the evaluation search at several simulation counts. One JSON line.
"""

from __future__ import annotations

import argparse
import ast
import json
import time

import numpy as np
import torch

from dynarl.algos.mcts import play_match
from dynarl.algos.muzero import MuZero
from dynarl.data.game_segments import SegmentBatch
from dynarl.envs.board_games import TICTACTOE
from dynarl.envs.opponents import RandomOpponent, RuleBasedOpponent, minimax_value, optimal_actions
from dynarl.planning.mcts import SearchConfig


def _board(cells: tuple[int, ...]) -> np.ndarray:
    return np.array(cells, dtype=np.int8).reshape(3, 3)


def _mover(cells: tuple[int, ...]) -> int:
    """The cell code (1 or 2) of the player to move."""
    return TICTACTOE.to_play(_board(cells)) + 1


def _won(cells: tuple[int, ...], code: int) -> bool:
    return TICTACTOE.has_line(_board(cells), code - 1)


def _over(cells: tuple[int, ...]) -> bool:
    return TICTACTOE.is_terminal(_board(cells))


def live_positions() -> list[tuple[int, ...]]:
    """Every reachable TicTacToe position where the game is not over (4,520)."""
    seen, live, stack = set(), [], [(0,) * 9]
    while stack:
        cells = stack.pop()
        if cells in seen or _over(cells):
            continue
        seen.add(cells)
        live.append(cells)
        stack.extend(cells[:a] + (_mover(cells),) + cells[a + 1 :] for a in range(9) if not cells[a])
    return live


def game_position(rng: np.random.Generator) -> tuple[int, ...]:
    """A uniformly chosen ply of a game of uniformly random moves."""
    cells, path = (0,) * 9, []
    while not _over(cells):
        path.append(cells)
        a = int(rng.choice([a for a in range(9) if not cells[a]]))
        cells = cells[:a] + (_mover(cells),) + cells[a + 1 :]
    return path[rng.integers(len(path))]


def true_batch(rng: np.random.Generator, B: int, K: int) -> SegmentBatch:
    obs = np.zeros((B, 2, 3, 3), np.float32)
    actions, reward = np.zeros((B, K), np.int64), np.zeros((B, K), np.float32)
    value, policy, policy_mask = np.zeros((B, K + 1), np.float32), np.zeros((B, K + 1, 9), np.float32), np.zeros((B, K + 1), np.float32)
    for i in range(B):
        cells = game_position(rng)
        obs[i] = TICTACTOE.observe(_board(cells))
        over = False
        for k in range(K + 1):
            if not over:
                value[i, k] = minimax_value(_board(cells))
                best = optimal_actions(_board(cells))
                policy[i, k], policy_mask[i, k] = best / best.sum(), 1.0
            if k == K:
                break
            if over:  # past the end: any action, absorbing targets (value 0, reward 0, no policy), as the buffer's
                actions[i, k] = rng.integers(9)
                continue
            a = int(rng.choice([a for a in range(9) if not cells[a]]))
            mover = _mover(cells)
            actions[i, k], cells = a, cells[:a] + (mover,) + cells[a + 1 :]
            reward[i, k] = float(_won(cells, mover))
            over = _over(cells)
    t = torch.as_tensor
    return SegmentBatch(obs=t(obs), actions=t(actions), target_reward=t(reward), reward_mask=torch.ones(B, K), value_prefix=t(value),
                        bootstrap_discount=torch.zeros(B, K + 1), bootstrap_value=torch.zeros(B, K + 1), bootstrap_obs=torch.zeros(B, K + 1, 2, 3, 3),
                        value_mask=torch.ones(B, K + 1), target_policy=t(policy), policy_mask=t(policy_mask))  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=3_000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--games", type=int, default=100, help="games against each opponent per player (sides alternating)")
    p.add_argument("--simulations", default="4,16,64", help="evaluation search sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="MuZero config overrides (e.g. learner.hidden_sizes=(128,))")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    agent = MuZero("dynarl/TicTacToe-v0", seed=args.seed, quiet=True, **overrides)
    learner, K, rng = agent.learner, agent.cfg.unroll_steps, np.random.default_rng(args.seed)
    start = time.perf_counter()
    for _ in range(args.updates):
        learner.update(true_batch(rng, args.batch, K))
    train_seconds = time.perf_counter() - start

    live = live_positions()
    boards = [_board(c) for c in live]
    with torch.no_grad():
        state, logits, v = learner.initial_inference(torch.as_tensor(np.stack([TICTACTOE.observe(b) for b in boards])))
        minimax = torch.tensor([minimax_value(b) for b in boards], dtype=torch.float32)
        occupied = torch.as_tensor(np.stack([b.reshape(-1) != 0 for b in boards]))
        prior_best = logits.masked_fill(occupied, -torch.inf).argmax(1)
        prior_optimal = float(np.mean([optimal_actions(b)[a] for b, a in zip(boards, prior_best.tolist())]))
        rows, moves = zip(*[(i, a) for i, c in enumerate(live) for a in range(9) if not c[a] and _won(c[:a] + (_mover(c),) + c[a + 1 :], _mover(c))])
        predicted = learner.recurrent_inference(state[list(rows)], torch.tensor(moves))[0].reshape(-1)
    out = {"benchmark": "muzero_true_targets", "updates": args.updates, "batch": args.batch, "overrides": overrides, "seed": args.seed, "train_seconds": round(train_seconds, 1),
           "value_corr_minimax": round(float(torch.corrcoef(torch.stack([v.reshape(-1), minimax]))[0, 1]), 3), "prior_argmax_optimal": round(prior_optimal, 4),
           "reward_recall_winning_moves": round(float((predicted > 0.5).float().mean()), 3), "winning_moves": len(rows)}  # fmt: skip

    def prior_player(b: torch.Tensor) -> torch.Tensor:
        obs = agent.board_model.observe(b)
        return learner.initial_inference(obs)[1].masked_fill(~agent.legal_mask(obs), -torch.inf).argmax(1)

    opponents = {"random": lambda: RandomOpponent(args.seed + 1), "rule": lambda: RuleBasedOpponent(args.seed + 2)}
    out["prior"] = {name: play_match(prior_player, agent.board_model, make(), args.games) for name, make in opponents.items()}
    for sims in [int(s) for s in args.simulations.split(",")]:
        agent.eval_search = SearchConfig(num_simulations=sims, rule="puct", two_player=True, root_exploration_fraction=0.0, unvisited_value=agent.cfg.unvisited_value)
        out[f"search_{sims}"] = {name: agent.match(make(), args.games) for name, make in opponents.items()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
