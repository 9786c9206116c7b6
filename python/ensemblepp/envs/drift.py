"""A linear bandit whose parameter drifts: the test bed for forgetting.

``DriftingLinear`` is :class:`~ensemblepp.envs.FiniteLinear` (a fixed set of
``K`` actions with coordinates ``U(-1/sqrt(5), 1/sqrt(5))``, ``theta_0 ~ N(0,
prior_var I)``, rewards ``<x_a, theta_t> + N(0, noise_std^2)``) except that
``theta_t`` moves after every step:

* a Gaussian random walk, ``theta_{t+1} = theta_t + drift_std * N(0, I)``
  (so ``Var theta_t = prior_var + t drift_std^2`` per coordinate), and/or
* abrupt switches, where ``theta_{t+1}`` is redrawn from ``N(0, prior_var I)``:
  every ``switch_every`` steps, and/or with probability ``switch_prob`` at each step.

Regret is measured against the current parameter: at step ``t`` it is
``max_a <x_a, theta_t> - <x_chosen, theta_t>``, so an agent that keeps playing
yesterday's best action pays for it. Instance ``b`` of a batched environment
is the same problem as a single one seeded with ``seed + b``; the drift of each
instance comes from its own generator in blocks of steps (see
:class:`~ensemblepp.envs.base.BlockStream`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BlockStream, CachedContext, SeedLike, _positive_int, block_size
from .linear import _LinearBase

__all__ = ["DriftingLinear"]


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be non-negative and finite, got {value}")
    return v


class DriftingLinear(CachedContext, _LinearBase):
    """Fixed finite action set, parameter following a random walk and/or switching.

    Parameters
    ----------
    dim : int, default 10
        Feature dimension ``d``.
    n_actions : int, default 50
        Number of actions ``K``.
    drift_std : float, default 0.1
        Standard deviation of each coordinate's random-walk step per round (0: none).
    switch_every : int or None, default None
        Redraw ``theta`` from the prior after every ``switch_every`` steps.
    switch_prob : float, default 0.0
        Probability of a redraw after each step, in [0, 1].
    prior_var : float, default 10.0
        Variance of each coordinate of ``theta_0`` and of every redraw.
    noise_std : float, default 1.0
        Reward noise standard deviation.
    n_instances : int or None, default None
        ``B`` instances stepped together, or None for one.
    seed : int or sequence of int, default 0
        Seed of instance 0 (instance ``b`` uses ``seed + b``) or one per instance.

    Attributes
    ----------
    switches : numpy.ndarray
        ``(B,)`` number of redraws so far per instance.

    Examples
    --------
    >>> env = DriftingLinear(dim=3, n_actions=5, drift_std=0.5, seed=0)
    >>> before = env.theta
    >>> _ = env.step(0)
    >>> bool(np.any(env.theta != before))
    True
    """

    metrics = ("switched",)

    def __init__(self, dim: int = 10, n_actions: int = 50, drift_std: float = 0.1,
                 switch_every: int | None = None, switch_prob: float = 0.0, prior_var: float = 10.0,
                 noise_std: float = 1.0, n_instances: int | None = None, seed: SeedLike = 0) -> None:
        self.drift_std = _non_negative(drift_std, "drift_std")
        self.switch_every = None if switch_every is None else _positive_int(switch_every, "switch_every")
        self.switch_prob = _non_negative(switch_prob, "switch_prob")
        if self.switch_prob > 1:
            raise ValueError(f"switch_prob must lie in [0, 1], got {switch_prob}")
        super().__init__(dim, n_actions, prior_var, noise_std, n_instances, seed)
        self.reset()

    def _draw_instances(self) -> None:
        assert self.n_actions is not None
        bound = 1.0 / np.sqrt(5.0)
        self._X = np.stack([r.uniform(-bound, bound, size=(self.n_actions, self.dim))
                            for r in self._rng_instance])
        self._draw_theta()
        d = self.dim
        # Per step and instance: d walk increments, d standard normals for a redraw, one uniform.
        self._moves = BlockStream(
            self._rng_instance,
            lambda r, n: np.concatenate([r.standard_normal((n, 2 * d)), r.random((n, 1))], axis=1),
            block_size(2 * d + 1))
        self.switches = np.zeros(self._batch, dtype=np.int64)
        self._switched = np.zeros(self._batch, dtype=bool)
        self._refresh()

    def _refresh(self) -> None:
        self._means = np.einsum("bkd,bd->bk", self._X, self._theta)
        self._best = self._means.max(axis=1)

    def _advance(self) -> None:
        move = self._moves.next()
        d = self.dim
        if self.drift_std > 0:
            self._theta = self._theta + self.drift_std * move[:, :d]
        switch = move[:, 2 * d] < self.switch_prob
        if self.switch_every is not None and (self._t + 1) % self.switch_every == 0:
            switch = np.ones_like(switch)
        if switch.any():
            fresh = np.sqrt(self.prior_var) * move[:, d:2 * d]
            self._theta = np.where(switch[:, None], fresh, self._theta)
            self.switches = self.switches + switch
        self._switched = switch
        self._refresh()

    def info(self) -> dict[str, Any]:
        """``switched``: whether ``theta`` was redrawn after the last step (bool or ``(B,)``)."""
        return {"switched": self._out(self._switched.astype(np.float64))}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "drift_std": self.drift_std, "switch_every": self.switch_every,
                "switch_prob": self.switch_prob}
