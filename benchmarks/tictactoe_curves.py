"""AlphaZero or MuZero on TicTacToe: win/draw/loss rates against the rule-based and the random opponent as self-play goes on.

    python benchmarks/tictactoe_curves.py [--algo alphazero|muzero] [--moves 20000] [--every 2000] [--games 40] [--seed 0] [--threads 1] [--set KEY=VALUE ...] [--out curve.csv]

Trains ``dynarl.AlphaZero`` (the true rules inside the search; its defaults: 32 games side by side, 32
simulations, Dirichlet noise 0.3 / 0.25, T = 1 for the first 4 plies, 8 board symmetries, 128x128 MLP) or
``dynarl.MuZero`` (a learned model inside the search; the TicTacToe preset: 16 games side by side, 16
simulations, K = 3, whole-game value targets) on ``dynarl/TicTacToe-v0`` and, every ``--every`` self-play moves
(and before the first), plays ``--games`` games (sides alternating) with the noise-free search against the
rule-based opponent (win now, else block, else centre > corners > edges) and against the random one.
Writes one CSV row per point (moves, games, gradient steps, wall seconds, rates) and prints the table, then
one JSON line with the final rates. The rule-based opponent never misses an immediate win or block, so a
strong TicTacToe player mostly draws with it: wins need forks, and the loss rate is the figure to watch
(LightZero's bot-mode curve reports returns of about 0.7-0.9 for AlphaZero, wins counting +1 and draws 0).
The best return any player can get against it, sides alternating, is 0.5 (``rule_return_ceiling``, by
expectimax over its random tie-breaks: a fork always wins from the first seat, a draw is the best from the
second).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import sys
import time
from pathlib import Path

import torch

from dynarl.algos.alphazero import AlphaZero
from dynarl.algos.muzero import MuZero
from dynarl.envs.opponents import RandomOpponent, RuleBasedOpponent, best_return_against_rule

FIELDS = ["moves", "games", "gradient_steps", "wall_seconds", "rule_win", "rule_draw", "rule_loss", "random_win", "random_draw", "random_loss", "rule_return"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", choices=("alphazero", "muzero"), default="alphazero")
    p.add_argument("--moves", type=int, default=20_000, help="self-play moves in all")
    p.add_argument("--every", type=int, default=2_000, help="self-play moves between evaluations")
    p.add_argument("--games", type=int, default=40, help="evaluation games per opponent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as `dynarl train` takes them")
    p.add_argument("--out", default="tictactoe_curve.csv", help="the CSV to write")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cls = {"alphazero": AlphaZero, "muzero": MuZero}[args.algo]
    overrides = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    agent = cls("dynarl/TicTacToe-v0", **overrides, seed=args.seed, quiet=True, eval_every=10**9, torch_threads=args.threads)
    rows, start, train_seconds = [], time.perf_counter(), 0.0

    def point() -> None:
        rule = agent.match(RuleBasedOpponent(args.seed + 1), args.games)
        rand = agent.match(RandomOpponent(args.seed + 2), args.games)
        n = args.games
        row = {"moves": agent.env_steps, "games": agent.episodes, "gradient_steps": agent.gradient_steps, "wall_seconds": round(train_seconds, 1),
               **{f"rule_{k}": v / n for k, v in rule.items()}, **{f"random_{k}": v / n for k, v in rand.items()}, "rule_return": (rule["win"] - rule["loss"]) / n}  # fmt: skip
        rows.append(row)
        print(" ".join(f"{k}={row[k]}" for k in FIELDS), file=sys.stderr, flush=True)

    point()
    while agent.env_steps < args.moves:
        t = time.perf_counter()
        agent.learn(min(agent.env_steps + args.every, args.moves))
        train_seconds += time.perf_counter() - t
        point()
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(Path(args.out).read_text(), end="")
    final = {"benchmark": "tictactoe_curves", "algo": args.algo, "overrides": overrides, "seed": args.seed, "threads": args.threads, "csv": str(args.out), "total_seconds": round(time.perf_counter() - start, 1), **rows[-1],
             "rule_return_ceiling": (best_return_against_rule(True) + best_return_against_rule(False)) / 2}  # fmt: skip
    print(json.dumps(final))
    return final


if __name__ == "__main__":
    main()
