"""The import contract of design.md section 3 holds, and it catches a wrong import (import-linter, run as CI runs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([*LINT, "--config", str(cwd / ".importlinter"), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_hold():
    proc = _lint(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_a_wrong_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "dynarl", tmp_path / "dynarl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    (tmp_path / "dynarl" / "models" / "upward.py").write_text("from dynarl.run import runner  # a model reaching up to the runner\n")
    proc = _lint(tmp_path, tmp_path)
    assert proc.returncode != 0
    assert "dynarl.models is not allowed to import dynarl.run" in proc.stdout
