"""COMBO's critic (Yu et al. 2021): CQL's regulariser with its push-down moved onto model data.

    min_Q  beta (E_{s~rho}[log sum_a exp Q(s, a)] - E_{(s,a)~D}[Q(s, a)]) + E_{d_f}[(Q(s, a) - B^pi Q'(s, a))^2]

with d_f = f d_D + (1 - f) d_model the mixed batch (f = the loop's ``real_ratio``): the Bellman term (the full mean
squared error, as CQL's and OfflineRL-Kit's) covers the whole batch, Q is pushed *up* on the dataset's pairs only
and pushed *down* at the states of rho: the model rollouts' states (``rho_s=model``, the paper's d_model) or every
state of the mixed batch (``rho_s=mix``, OfflineRL-Kit's default). Everything else is
:class:`~dynarl.learners.cql.CQLLearner` (the importance-sampled logsumexp, the Lagrangian option, SAC's actor and
temperature); only :meth:`cql_split` changes.

The loop puts the ``real_rows`` dataset rows first in every batch (:meth:`ModelData.sample_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import one_of, param
from dynarl.data.batch import Batch
from dynarl.learners.cql import CQLLearner, CQLLearnerConfig


@dataclass
class COMBOLearnerConfig(CQLLearnerConfig):
    cql_alpha: float = param(5.0, help="beta, the conservative weight (OfflineRL-Kit cql-weight: 5.0; 0.5 on halfcheetah)")
    rho_s: str = param("mix", one_of("mix", "model"), "states where Q is pushed down: every state of the mixed batch (OfflineRL-Kit's default) or the model rollouts' only (the paper's d_model)")


class COMBOLearner(CQLLearner):
    name = "combo"

    def __init__(self, cfg: COMBOLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(cfg, obs_space, action_space, device)
        self.real_rows: int | None = None  # set by the loop: the first real_rows rows of a batch are the dataset's

    def cql_split(self, batch: Batch) -> tuple[int, torch.Tensor, torch.Tensor]:
        n = self.real_rows
        if n is None or n >= len(batch):  # no model data yet (or f = 1): CQL on the dataset batch
            return len(batch), batch.obs, batch.next_obs
        if self.cfg.rho_s == "model":
            return n, batch.obs[n:], batch.next_obs[n:]
        return n, batch.obs, batch.next_obs
