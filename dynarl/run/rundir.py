"""A run folder: config.json, metrics.csv, tb/, checkpoints/, learning_curve.png, summary.json.

A folder is only ever written by one process at a time (``lock()``: an advisory ``flock`` on the folder
itself, with the holder's pid in ``.lock`` while it holds it); temporary files a killed writer left
behind are removed when the next one takes the lock. A refused process changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
from pathlib import Path

from dynarl import checkpoint as ckpt
from dynarl.errors import CheckpointError, DynarlError
from dynarl.provenance import versions

_STEP_FILE = re.compile(r"^step_(\d+)\.safetensors$")
_LOCK = ".lock"


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.checkpoint_dir = self.path / "checkpoints"
        self._lock_fd: int | None = None
        self._damaged: set[Path] = set()  # checkpoints load_latest found damaged: never counted as kept

    @classmethod
    def create(cls, path: str | Path, config: dict, *, flag: str = "--out") -> "RunDir":
        """Make a new run folder and write the resolved config.

        An existing folder is used only when it is empty: one that holds a run (continue that with
        ``dynarl resume``) or anything else (the user's own files) is refused, so nothing is overwritten.
        """
        path = Path(path)
        if (path / "config.json").exists():
            raise DynarlError(f"'{path}' already holds a run; continue it with `dynarl resume {path}` or choose a fresh {flag}")
        if path.is_dir() and any(path.iterdir()):
            found = ", ".join(sorted(p.name for p in path.iterdir())[:5])
            raise DynarlError(f"'{path}' is not empty and is not a dynarl run (it holds {found}); choose a fresh {flag} (a new or empty folder) so nothing of yours is overwritten")
        if path.exists() and not path.is_dir():
            raise DynarlError(f"'{path}' is a file, not a folder; choose a fresh {flag}")
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
            run = cls(path)
            run.lock()
            ckpt.atomic_write_bytes(path / "config.json", (json.dumps(config, indent=2) + "\n").encode())
        except OSError as e:
            raise DynarlError(f"cannot write to output folder '{path}': {e.strerror or e}. Choose another {flag}, a folder you can write to") from None
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        if not (path / "config.json").is_file() and (path / "seeds.json").is_file():
            raise DynarlError(f"'{path}' is a folder of vectorised seeds, one run folder per seed: give one of them (e.g. {path / 's0'}), or `dynarl resume {path}` to continue them all")
        if not (path / "config.json").is_file():
            raise DynarlError(f"'{path}' is not a dynarl run folder (no config.json); give the folder that `dynarl train` wrote")
        run = cls(path)
        run.config()  # a damaged config.json is reported now, in one line
        return run

    def config(self) -> dict:
        where = self.path / "config.json"
        try:
            config = json.loads(where.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DynarlError(f"'{where}' is not valid JSON ({e}); restore it from a checkpoint's config or start a new run") from None
        if not isinstance(config, dict) or not isinstance(config.get("algo"), str):
            raise DynarlError(f"'{where}' is not a dynarl run config (a JSON object with an 'algo' name); restore it or start a new run")
        return config

    def algo(self) -> str:
        return self.config()["algo"]

    # --- one writer at a time ---------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the folder for this process, or raise DynarlError naming the process that holds it."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                holder = (self.path / _LOCK).read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise DynarlError(f"'{self.path}' is in use by another dynarl process (pid {holder}); wait for it to finish or stop it, then try again") from None
        self._lock_fd = fd
        (self.path / _LOCK).write_text(f"{os.getpid()}\n")
        for folder in (self.path, self.checkpoint_dir):  # left by a writer that was killed mid-write
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            (self.path / _LOCK).unlink(missing_ok=True)
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # --- checkpoints --------------------------------------------------------------------------------------

    def checkpoints(self) -> list[tuple[int, Path]]:
        if not self.checkpoint_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoint_dir.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found)

    def save_checkpoint(self, step: int, algo: str, state: dict, keep: int) -> Path:
        """Write the checkpoint of ``step``, then delete all but the newest ``keep`` that are not known damaged
        (so a damaged newer file, skipped when this run resumed, never pushes out the good one it resumed from)."""
        path = self.checkpoint_dir / f"step_{step:09d}.safetensors"
        ckpt.save_checkpoint(path, algo, state)
        for _, old in [c for c in self.checkpoints() if c[1] not in self._damaged][:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self, expect_algo: str | None = None) -> tuple[Path, str, dict]:
        """The newest checkpoint that verifies; older ones are tried when the newest is damaged."""
        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"'{self.path}' has no checkpoint yet (the run stopped before its first one); `dynarl resume {self.path}` starts it again from step 0 with its config")
        problems = []
        for _, path in reversed(found):
            try:
                algo, state = ckpt.load_checkpoint(path, expect_algo)
            except CheckpointError as e:
                problems.append(str(e))
                self._damaged.add(path)
                continue
            for p in problems:
                print(f"dynarl: warning: {p}; using {path.name} instead", file=sys.stderr)
            return path, algo, state
        raise CheckpointError("no usable checkpoint: " + "; ".join(problems))

    def finish(self, summary: dict) -> None:
        """Write ``summary.json`` (with the versions that made the run) and the learning curve."""
        summary = summary | {"versions": versions()}
        ckpt.atomic_write_bytes(self.path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        from dynarl.run.plot import plot_runs

        plot_runs([self.path], self.path / "learning_curve.png")
