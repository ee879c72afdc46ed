"""Checkpoint files: safetensors for tensors, JSON for everything else; atomic writes; never unpickles.

A checkpoint holds a nested state (dicts, lists, tuples, numbers, strings, tensors). Tensors go into
the safetensors payload under their path; the rest of the tree is JSON in the header metadata, beside
the format tag, the algorithm name and a SHA-256 over the tensors *and* the metadata (version 2; version
1 covered the tensors only), so truncation, corruption, an edited counter or learning rate, and files of
another kind or algorithm are all detected before anything is restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dynarl.errors import CheckpointError

FORMAT = "dynarl-checkpoint"
VERSION = 2
READABLE_VERSIONS = ("1", "2")
SUFFIX = ".safetensors"


def resolve_path(path: str | Path) -> Path:
    """``path`` as given, or with ``.safetensors`` appended when only that exists (``save("m")`` writes
    ``m.safetensors``; ``load("m")`` finds it, as in Stable-Baselines3)."""
    path = Path(path)
    if not path.exists() and path.suffix != SUFFIX and path.with_name(path.name + SUFFIX).is_file():
        return path.with_name(path.name + SUFFIX)
    return path


def _pack(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "_"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _pack(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _pack(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path}")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]  # a KeyError here means the names do not match: see load_checkpoint
        if "__items__" in obj:
            return {k: _unpack(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> str:
    """SHA-256 of the tensors (names and bytes) and, from version 2 on, of every metadata field."""
    h = hashlib.sha256()
    for key in sorted(meta or {}):
        if key != "sha256":
            h.update(json.dumps([key, meta[key]]).encode())
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].reshape(-1).view(torch.uint8).numpy().tobytes() if tensors[key].numel() else b"")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | Path, algo: str, state: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(state, "", tensors)
    meta = {"format": FORMAT, "version": str(VERSION), "algo": algo, "state": json.dumps(tree)}
    meta["sha256"] = _digest(tensors, meta)
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta))


def read_header(path: str | Path) -> dict[str, str]:
    """The metadata of a dynarl checkpoint, or CheckpointError if it is not one."""
    path = resolve_path(path)
    if not path.is_file():
        hint = "" if path.suffix == SUFFIX else f" (nor at '{path.name}{SUFFIX}')"
        raise CheckpointError(f"no checkpoint at '{path}'{hint}; give the file that save() or a run's checkpoints/ holds")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"'{path}' is truncated or not a dynarl checkpoint (file too short)")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > 100_000_000:
            raise CheckpointError(f"'{path}' is not a dynarl checkpoint (no safetensors header)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"'{path}' is corrupt or not a dynarl checkpoint (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is a safetensors file but not a dynarl checkpoint")
    if meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"'{path}' has checkpoint format version {meta.get('version')}; this dynarl reads versions {', '.join(READABLE_VERSIONS)}")
    for key in ("algo", "state", "sha256"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise CheckpointError(f"'{path}' is a damaged dynarl checkpoint (its metadata lacks '{key}'); resume from another checkpoint in the same folder")
    return meta


def load_checkpoint(path: str | Path, expect_algo: str | None = None) -> tuple[str, dict]:
    """Read and verify a checkpoint; returns (algo, state). Raises CheckpointError on any defect."""
    path = resolve_path(path)
    meta = read_header(path)
    algo = meta["algo"]
    if expect_algo is not None and algo != expect_algo:
        raise CheckpointError(f"'{path}' is a {algo.upper()} checkpoint, not {expect_algo.upper()}; load it with dynarl.load() or the {algo.upper()} class")
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"'{path}' is truncated or corrupt ({e}); resume from another checkpoint in the same folder") from None
    covered = meta if meta["version"] != "1" else None
    if _digest(tensors, covered) != meta["sha256"]:
        raise CheckpointError(f"'{path}' is corrupt or was edited (checksum mismatch); resume from another checkpoint in the same folder")
    try:
        state = _unpack(json.loads(meta["state"]), tensors)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"'{path}' is a damaged dynarl checkpoint (its state does not match its tensors: {e!r}); resume from another checkpoint in the same folder") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' is a damaged dynarl checkpoint (its state is not a mapping); resume from another checkpoint in the same folder")
    return algo, state
