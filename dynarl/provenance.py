"""What made a result: the versions of dynarl and of the packages whose numbers it depends on, and dynarl's git
commit when it runs from a checkout.

RL results move with float-level changes (a reordered sum in a critic, a different BLAS path): the same
command and seed on two commits can train different agents, and so make different datasets. Run folders
(``summary.json``) and datasets (their Minari description) record these so a result can be traced and rerun.
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from dynarl._version import __version__

_PACKAGES = ("torch", "numpy", "gymnasium", "mujoco", "minari")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def versions() -> dict[str, str | bool | None]:
    """{"dynarl", "git_commit", "git_dirty", "python", "platform", and each of torch, numpy, gymnasium, mujoco,
    minari}: ``None`` for a package that is not installed, and for the commit when dynarl is not imported from a
    git checkout (``git_dirty``: tracked files differ from that commit)."""
    # dynarl's own checkout only: a package installed into a virtual environment inside some other repository is
    # not tracked by it
    commit = _git("rev-parse", "HEAD") if _git("ls-files", "--error-unmatch", "provenance.py") is not None else None
    found: dict[str, str | bool | None] = {"dynarl": __version__, "git_commit": commit, "git_dirty": None if commit is None else bool(_git("status", "--porcelain", "--untracked-files=no"))}
    found |= {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def made_with() -> str:
    """One line for a dataset's description: "dynarl 0.1.0 (git 1a2b3c4d, modified), torch 2.13.0, ..."."""
    v = versions()
    where = "" if v["git_commit"] is None else f" (git {str(v['git_commit'])[:10]}{', modified' if v['git_dirty'] else ''})"
    return f"dynarl {v['dynarl']}{where}, " + ", ".join(f"{name} {v[name]}" for name in _PACKAGES if v[name] is not None)
