"""The trunk redesign costs no speed: sac_speed, ppo_speed, pets_speed and mbpo_speed measured on this tree and on
a base commit (the pre-redesign one) in the same run, sides in turn (A B A B), one torch thread each.

    python benchmarks/trunk_speed.py [--base 17e291e] [--repeats 3] [--only sac ppo pets mbpo]

The base commit is checked out into a temporary git worktree; each measurement runs that tree's own copy of
the benchmark script with ``PYTHONPATH`` set to the tree, so each side imports its own dynarl. Prints one
JSON line per benchmark with both sides' medians (steps per second: higher is faster) and
``ratio`` = this tree / base (the median of the ratios of runs taken side by side; >= 0.95 is "within 5%").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (script arguments, how to read steps per second from its JSON line)
BENCHMARKS = {
    "sac": (["sac_speed.py", "--measure-steps", "1000", "--envs", "Pendulum-v1", "--no-bf16", "--threads", "1"], lambda r: r["envs"]["Pendulum-v1"]["dynarl"]["env_steps_per_s"]),
    "ppo": (["ppo_speed.py", "--iterations", "2", "--n-steps", "512", "--threads", "1"], lambda r: r["dynarl_steps_per_s"]),
    "pets": (["pets_speed.py", "--steps", "4", "--no-compile", "--threads", "1"], lambda r: 1.0 / r["builds"]["fp32"]["seconds_per_env_step"]),
    "mbpo": (["mbpo_speed.py", "--tasks", "InvertedPendulum-v5", "--measure-steps", "100", "--threads", "1"], lambda r: 1.0 / r["seconds_per_env_step"]),
}


def _measure(tree: Path, args: list[str], read) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(tree / "benchmarks" / args[0]), *args[1:]], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed in {tree}:\n{proc.stderr[-2000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return float(read(lines[-1]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="17e291e", help="the commit to compare against (default: the last one before the trunk redesign)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.base], check=True, capture_output=True)
        try:
            for name in args.only:
                script, read = BENCHMARKS[name]
                runs = {"head": [], "base": []}
                for _ in range(args.repeats):
                    runs["head"].append(_measure(ROOT, script, read))
                    runs["base"].append(_measure(base, script, read))
                ratio = statistics.median(h / b for h, b in zip(runs["head"], runs["base"]))
                print(json.dumps({"benchmark": f"{name}_speed", "command": " ".join(script), "base": args.base, "steps_per_s_head": round(statistics.median(runs["head"]), 3),
                                  "steps_per_s_base": round(statistics.median(runs["base"]), 3), "runs": runs, "ratio": round(ratio, 3)}), flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)


if __name__ == "__main__":
    main()
