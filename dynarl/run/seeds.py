"""Vectorised seeds on disk: a seeds folder holds ``seeds.json`` and one ordinary run folder per seed (``s0``,
``s1``, ...), each with its own config, metrics, TensorBoard events, evaluations and checkpoints.

``learn_seeds`` drives one :class:`~dynarl.run.runner.Runner` per seed around the vector's lock-step
``train_step``: every seed is evaluated, logged and checkpointed exactly as it would be alone (each inside
its own torch stream, so its checkpoint holds its own generator state). ``dynarl resume SEEDS_DIR``
continues them together; ``dynarl resume SEEDS_DIR/s3`` continues one of them alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dynarl import checkpoint as ckpt
from dynarl.algos.seeds import SeedVector
from dynarl.config import to_dict
from dynarl.errors import ConfigError, DynarlError, RunInterrupted
from dynarl.run.interrupt import StopRequest
from dynarl.run.rundir import RunDir
from dynarl.run.runner import Runner

SEEDS_FILE = "seeds.json"


def parse_seeds(spec: str) -> list[int]:
    """``"0-7"``, ``"0,3,5"`` or ``"0-3,8"`` as a list of distinct seeds."""
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise ConfigError(f"--seeds {spec!r} is not a seed list; write a range or a comma list, e.g. 0-7 or 0,3,5") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {spec!r} must name distinct non-negative seeds, e.g. 0-7")
    return seeds


def seed_folder(root: Path, seed: int) -> Path:
    return Path(root) / f"s{seed}"


def is_seeds_folder(path) -> bool:
    return (Path(path) / SEEDS_FILE).is_file()


def expand_run_dirs(paths) -> list[Path]:
    """Run folders for ``plot``/``compare``: a seeds folder (or its ``seeds.json``, which ``DIR/s*`` also
    matches) stands for its seeds' run folders; each folder is listed once, in the order given."""
    out: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        root = path.parent if path.name == SEEDS_FILE else path
        for run in [root / name for name in open_seeds_file(root)["runs"]] if is_seeds_folder(root) else [path]:
            if run.resolve() not in seen:
                seen.add(run.resolve())
                out.append(run)
    return out


def open_seeds_file(root: Path) -> dict:
    try:
        info = json.loads((Path(root) / SEEDS_FILE).read_text())
        list(info["runs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DynarlError(f"'{Path(root) / SEEDS_FILE}' is damaged ({e}); give the seeds' run folders ({root}/sN) one by one") from None
    return info


def create_seed_runs(root, vector: SeedVector, *, flag: str = "--out") -> list[RunDir]:
    """The seeds folder and a fresh run folder per seed; refused as a whole, before anything is written, when
    any of them already holds something."""
    root = Path(root)
    folders = [seed_folder(root, a.cfg.seed) for a in vector.agents]
    taken = [str(f) for f in folders if f.exists() and any(f.iterdir())]
    if taken or is_seeds_folder(root):
        where = ", ".join(taken) or str(root / SEEDS_FILE)
        raise DynarlError(f"the seeds overlap existing runs ({where}); continue them with `dynarl resume {root}` or choose a fresh {flag}; nothing was changed")
    if root.exists() and not root.is_dir():
        raise DynarlError(f"'{root}' is a file, not a folder; choose a fresh {flag}")
    runs = [RunDir.create(f, to_dict(a.cfg), flag=flag) for f, a in zip(folders, vector.agents, strict=True)]
    summary = {"algo": vector.agents[0].name, "env": vector.agents[0].cfg.env, "seeds": [a.cfg.seed for a in vector.agents], "runs": [f.name for f in folders]}
    ckpt.atomic_write_bytes(root / SEEDS_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    return runs


def open_seed_runs(root) -> tuple[dict, list[RunDir]]:
    """The seeds folder's description and its run folders, each locked for this process."""
    root = Path(root)
    info = open_seeds_file(root)
    runs = [RunDir.open(root / name) for name in info["runs"]]
    for run in runs:
        run.lock()
    return info, runs


def learn(vector: SeedVector, total_steps: int | None = None, out=None) -> SeedVector:
    """:meth:`SeedVector.learn`: run folders under ``out`` (new, or the seeds folder this vector's earlier
    ``learn`` wrote), or none."""
    if out is None:
        return learn_seeds(vector, [None] * len(vector.agents), total_steps)
    if is_seeds_folder(out) and vector.steps() > 0:  # this vector's own folder: continue it
        _, runs = open_seed_runs(out)
    else:
        runs = create_seed_runs(out, vector, flag="out")
    return learn_seeds(vector, runs, total_steps, resume_hint=str(out))


def learn_seeds(vector: SeedVector, run_dirs: list[RunDir], total_steps: int | None = None, resume_hint: str | None = None) -> SeedVector:
    """Train every seed of ``vector`` to ``total_steps`` (default: the config's), one runner per seed."""
    agents = vector.agents
    runners = [Runner(a, total_steps, d, None, None, show_progress=i == 0) for i, (a, d) in enumerate(zip(agents, run_dirs, strict=True))]
    started = []
    try:
        for i, runner in enumerate(runners):
            with vector.generators.use(i):
                runner.start(notes=i == 0)
            started.append(runner)
        total = runners[0].total
        with StopRequest(enabled=all(r.folder is not None for r in runners)) as stop:
            while vector.steps() < total:
                before = [a.steps() for a in agents]
                vector.train_step()
                keep_going = True
                signum = stop.signum  # read once, so that every seed saves or none does; a later signal is handled next step
                for i, runner in enumerate(runners):
                    with vector.generators.use(i):  # a checkpoint holds this seed's own torch stream
                        keep_going = runner.after_step(before[i], signum) and keep_going
                if signum:
                    hint = resume_hint or " ".join(str(r.folder.path) for r in runners)
                    raise RunInterrupted(
                        f"stopped by {stop.name} at step {vector.steps()} of {total}; every seed's checkpoint saved. Continue with `dynarl resume {hint}`", 128 + signum)
                if not keep_going:
                    break
        for runner in runners:
            runner.finish()
    finally:
        for runner in started:
            runner.close()
    return vector


SeedVector.runner = sys.modules[__name__]  # SeedVector.learn goes through this module
