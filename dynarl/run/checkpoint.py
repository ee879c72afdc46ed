"""Checkpoint files: safetensors for tensors, JSON for everything else; atomic writes; never unpickles.

A checkpoint holds a nested state (dicts, lists, tuples, numbers, strings, tensors). Tensors go into
the safetensors payload under their path; the rest of the tree is JSON in the header metadata, beside
the format tag, the algorithm name and a SHA-256 of the tensor payload, so truncation, corruption and
files of another kind or algorithm are all detected before anything is restored.
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
VERSION = 1


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
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _unpack(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
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
    meta = {"format": FORMAT, "version": str(VERSION), "algo": algo, "state": json.dumps(tree), "sha256": _digest(tensors)}
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta))


def read_header(path: str | Path) -> dict[str, str]:
    """The metadata of a dynarl checkpoint, or CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
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
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is a safetensors file but not a dynarl checkpoint")
    if meta.get("version") != str(VERSION):
        raise CheckpointError(f"'{path}' has checkpoint format version {meta.get('version')}; this dynarl reads version {VERSION}")
    return meta


def load_checkpoint(path: str | Path, expect_algo: str | None = None) -> tuple[str, dict]:
    """Read and verify a checkpoint; returns (algo, state). Raises CheckpointError on any defect."""
    path = Path(path)
    meta = read_header(path)
    algo = meta["algo"]
    if expect_algo is not None and algo != expect_algo:
        raise CheckpointError(f"'{path}' is a {algo.upper()} checkpoint, not {expect_algo.upper()}; load it with dynarl.load() or the {algo.upper()} class")
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"'{path}' is truncated or corrupt ({e}); resume from another checkpoint in the same folder") from None
    if _digest(tensors) != meta.get("sha256"):
        raise CheckpointError(f"'{path}' is corrupt (checksum mismatch); resume from another checkpoint in the same folder")
    return algo, _unpack(json.loads(meta["state"]), tensors)
