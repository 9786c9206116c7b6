"""Past one machine, on Ray (optional extra: ``pip install "ensemblepp[ray]"``).

* :class:`ShardedPolicy`: one linear posterior per user for many users, sharded over Ray actors,
  with a per-shard update log and checkpoints so that a crashed actor recovers exactly.
* :func:`ray_executor`: runs the (agent, seed-chunk) cells of experiments as Ray tasks
  (``ensemblepp run --workers N`` or ``--address ADDR``).
* :func:`stream_ids` and :func:`shard_of`: the stable hashes that place a user.

Importing this package does not import Ray; using :class:`ShardedPolicy` or the executor does.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._ids import shard_of, stream_ids
from ._log import DamagedLogError

__all__ = ["ShardedPolicy", "RayExecutor", "ray_executor", "stream_ids", "shard_of", "DamagedLogError"]

_LAZY = {"ShardedPolicy": "ensemblepp.distributed.sharded",
         "RayExecutor": "ensemblepp.distributed.experiments",
         "ray_executor": "ensemblepp.distributed.experiments"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ensemblepp.distributed' has no attribute {name!r}")
