"""The dataset source: a fixed set of transitions, sampled uniformly, for algorithms that learn without an env.

An offline algorithm counts gradient steps (``clock = "gradient_steps"``) and draws every batch from here. The
transitions are not written into checkpoints (they are re-read from where they came from); a checkpoint keeps
their count and a fingerprint, and loading against different data is refused.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from dynarl.data.batch import Batch
from dynarl.errors import DynarlError

FIELDS = ("obs", "act", "reward", "next_obs", "terminated", "truncated")


class DatasetSource:
    """Transitions ``{obs, act, reward, next_obs, terminated, truncated}`` (arrays or tensors, leading dim = rows).

    ``obs`` and ``act`` are required; the other fields default to zeros (e.g. for behaviour cloning from (s, a)
    pairs). ``sample(batch_size)`` draws rows uniformly with torch's global RNG, so checkpoints of that RNG make a
    run reproducible.
    """

    def __init__(self, transitions: dict, device: torch.device, name: str = "dataset"):
        missing = [k for k in ("obs", "act") if k not in transitions]
        if missing:
            raise DynarlError(f"dataset {name!r} has no {', '.join(missing)}: a dataset needs at least observations and actions")
        n = len(transitions["obs"])
        self.name, self.device = name, torch.device(device)
        self.data: dict[str, torch.Tensor] = {}
        for k in FIELDS:
            v = transitions.get(k)
            v = torch.zeros(n) if v is None else torch.as_tensor(np.asarray(v))
            if len(v) != n:
                raise DynarlError(f"dataset {name!r}: {k} has {len(v)} rows but obs has {n}; every field needs one row per transition")
            if v.is_floating_point():
                v = v.float()
                if not bool(torch.isfinite(v).all()):
                    raise DynarlError(f"dataset {name!r}: {k} holds NaN or inf values; clean the data before training on it")
            self.data[k] = v.to(self.device)
        if n == 0:
            raise DynarlError(f"dataset {name!r} is empty")

    def __len__(self) -> int:
        return int(self.data["obs"].shape[0])

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, len(self), (batch_size,), device=self.device)
        return Batch(**{k: v[idx] for k, v in self.data.items()})

    def fingerprint(self) -> str:
        """SHA-256 over every field's bytes: the same data gives the same fingerprint."""
        h = hashlib.sha256()
        for k in FIELDS:
            h.update(self.data[k].cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # --- checkpoint part: the count and fingerprint only --------------------------------------------------------

    def state_dict(self) -> dict:
        return {"rows": len(self), "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if int(state["rows"]) != len(self) or state["fingerprint"] != self.fingerprint():
            raise ValueError(f"the checkpoint was trained on other data than dataset {self.name!r} ({state['rows']} rows, fingerprint {state['fingerprint'][:12]})")
