"""A run folder: config.json, metrics.csv, tb/, checkpoints/, learning_curve.png, summary.json."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from dynarl.errors import CheckpointError, DynarlError
from dynarl.run import checkpoint as ckpt

_STEP_FILE = re.compile(r"^step_(\d+)\.safetensors$")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.checkpoint_dir = self.path / "checkpoints"

    @classmethod
    def create(cls, path: str | Path, config: dict) -> "RunDir":
        """Make a new run folder (never reusing one that holds a run) and write the resolved config."""
        path = Path(path)
        if (path / "config.json").exists():
            raise DynarlError(f"'{path}' already holds a run; continue it with `dynarl resume {path}` or choose another --out")
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_bytes(path / "config.json", (json.dumps(config, indent=2) + "\n").encode())
        except OSError as e:
            raise DynarlError(f"cannot write to output folder '{path}': {e.strerror or e}. Choose another --out, a folder you can write to") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise DynarlError(f"'{path}' is not a dynarl run folder (no config.json); give the folder that `dynarl train` wrote")
        return cls(path)

    def config(self) -> dict:
        try:
            return json.loads((self.path / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise DynarlError(f"'{self.path / 'config.json'}' is not valid JSON ({e})") from None

    def checkpoints(self) -> list[tuple[int, Path]]:
        if not self.checkpoint_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoint_dir.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found)

    def save_checkpoint(self, step: int, algo: str, state: dict, keep: int) -> Path:
        path = self.checkpoint_dir / f"step_{step:09d}.safetensors"
        ckpt.save_checkpoint(path, algo, state)
        for _, old in self.checkpoints()[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self, expect_algo: str | None = None) -> tuple[Path, str, dict]:
        """The newest checkpoint that verifies; older ones are tried when the newest is damaged."""
        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"'{self.path}' has no checkpoints to resume from (checkpoints/step_*.safetensors)")
        problems = []
        for _, path in reversed(found):
            try:
                algo, state = ckpt.load_checkpoint(path, expect_algo)
            except CheckpointError as e:
                problems.append(str(e))
                continue
            for p in problems:
                print(f"warning: {p}; using {path.name} instead", file=sys.stderr)
            return path, algo, state
        raise CheckpointError("no usable checkpoint: " + "; ".join(problems))

    def finish(self, summary: dict) -> None:
        ckpt.atomic_write_bytes(self.path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        from dynarl.run.plot import plot_runs

        plot_runs([self.path], self.path / "learning_curve.png")
