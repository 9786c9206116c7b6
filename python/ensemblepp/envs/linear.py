"""Linear bandits with a Gaussian prior on the parameter, batched over instances.

All three follow the set-up of Russo and Van Roy (2018) used by the Ensemble++
paper: ``theta* ~ N(0, prior_var I)`` and rewards ``r = <x, theta*> + N(0,
noise_std^2)``. They differ in the action set: fixed finite (``FiniteLinear``),
fresh finite every step (``ChangingLinear``), or the whole unit sphere
(``CompactLinear``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BlockStream, CachedContext, Environment, SeedLike, _positive_float, block_size

__all__ = ["FiniteLinear", "ChangingLinear", "CompactLinear"]

# Noise is drawn this many steps at a time per instance (see BlockStream).
_NOISE_BLOCK = 1024


class _LinearBase(Environment):
    """Shared prior on ``theta*`` and Gaussian reward noise."""

    def __init__(self, dim: int, n_actions: int | None, prior_var: float, noise_std: float,
                 n_instances: int | None, seed: SeedLike) -> None:
        super().__init__(dim, n_actions, n_instances, seed)
        self.prior_var = _positive_float(prior_var, "prior_var")
        self.noise_std = _positive_float(noise_std, "noise_std", allow_zero=True)

    def _draw_theta(self) -> None:
        scale = np.sqrt(self.prior_var)
        self._theta = np.stack([scale * r.standard_normal(self.dim) for r in self._rng_instance])
        self._noise = BlockStream(self._rng_noise, lambda r, n: r.standard_normal(n), _NOISE_BLOCK)

    @property
    def theta(self) -> np.ndarray:
        """The true parameter, ``(d,)`` or ``(B, d)`` (a copy)."""
        return self._out(self._theta.copy())

    def _batched_rewards(self, means: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        return means + self.noise_std * self._noise.next()

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_actions": self.n_actions, "prior_var": self.prior_var,
                "noise_std": self.noise_std, "n_instances": self.n_instances,
                "seed": self.seeds if self.n_instances is not None else self.seeds[0]}


class FiniteLinear(CachedContext, _LinearBase):
    """Fixed finite action set (Russo and Van Roy 2018).

    ``K`` actions with i.i.d. coordinates ``U(-1/sqrt(5), 1/sqrt(5))`` drawn once
    per instance, ``theta* ~ N(0, prior_var I)``, ``r = <x_a, theta*> + N(0,
    noise_std^2)``.

    Parameters
    ----------
    dim : int
        Feature dimension ``d``.
    n_actions : int
        Number of actions ``K``.
    prior_var : float, default 10.0
        Prior variance of each coordinate of ``theta*``.
    noise_std : float, default 1.0
        Standard deviation of the reward noise.
    n_instances : int or None, default None
        ``B`` independent instances stepped together, or None for one.
    seed : int or sequence of int, default 0
        Seed of instance 0 (instance ``b`` uses ``seed + b``) or one per instance.

    Examples
    --------
    >>> env = FiniteLinear(dim=5, n_actions=10, seed=1)
    >>> reward, regret = env.step(int(np.argmax(env.expected_rewards())))
    >>> regret
    0.0
    """

    def __init__(self, dim: int = 50, n_actions: int = 1000, prior_var: float = 10.0,
                 noise_std: float = 1.0, n_instances: int | None = None, seed: SeedLike = 0) -> None:
        super().__init__(dim, n_actions, prior_var, noise_std, n_instances, seed)
        self.reset()

    def _draw_instances(self) -> None:
        assert self.n_actions is not None
        bound = 1.0 / np.sqrt(5.0)
        self._X = np.stack([r.uniform(-bound, bound, size=(self.n_actions, self.dim))
                            for r in self._rng_instance])
        self._draw_theta()
        self._means = np.einsum("bkd,bd->bk", self._X, self._theta)
        self._best = self._means.max(axis=1)



class ChangingLinear(CachedContext, _LinearBase):
    """A fresh finite action set every step.

    Every step offers ``K`` actions drawn ``N(0, I)`` and normalised to the unit
    sphere; ``theta* ~ N(0, prior_var I)``, ``r = <x_a, theta*> + N(0, noise_std^2)``.

    Parameters
    ----------
    dim : int
        Feature dimension ``d``.
    n_actions : int
        Number of actions ``K`` per step.
    prior_var, noise_std, n_instances, seed
        As in :class:`FiniteLinear`.
    """

    def __init__(self, dim: int = 50, n_actions: int = 100, prior_var: float = 10.0,
                 noise_std: float = 1.0, n_instances: int | None = None, seed: SeedLike = 0) -> None:
        super().__init__(dim, n_actions, prior_var, noise_std, n_instances, seed)
        self.reset()

    def _draw_instances(self) -> None:
        self._draw_theta()
        k, d = self.n_actions, self.dim
        assert k is not None
        self._contexts = BlockStream(self._rng_context, lambda r, n: r.standard_normal((n, k, d)),
                                     block_size(k * d))
        self._load_context()

    def _load_context(self) -> None:
        raw = self._contexts.peek()
        self._X = raw / np.linalg.norm(raw, axis=2, keepdims=True)
        self._means = np.einsum("bkd,bd->bk", self._X, self._theta)
        self._best = self._means.max(axis=1)

    def _advance(self) -> None:
        self._contexts.advance()
        self._load_context()



class CompactLinear(_LinearBase):
    """The unit sphere as action set.

    An action is a vector ``x`` with ``|x| <= 1``; the best is ``theta*/|theta*|``
    with expected reward ``|theta*|``, so the regret of ``x`` is ``|theta*| -
    <x, theta*>``. :meth:`actions` returns None: an agent acts by sampling
    ``theta`` and playing ``theta / |theta|``.

    Parameters
    ----------
    dim : int
        Feature dimension ``d``.
    prior_var, noise_std, n_instances, seed
        As in :class:`FiniteLinear`.
    """

    compact = True

    def __init__(self, dim: int = 10, prior_var: float = 10.0, noise_std: float = 1.0,
                 n_instances: int | None = None, seed: SeedLike = 0) -> None:
        super().__init__(dim, None, prior_var, noise_std, n_instances, seed)
        self.reset()

    def _draw_instances(self) -> None:
        self._draw_theta()
        self._norm = np.linalg.norm(self._theta, axis=1)

    def _batched_actions(self) -> np.ndarray:  # pragma: no cover - not used for a compact set
        raise NotImplementedError

    def _batched_means(self) -> np.ndarray:  # pragma: no cover - not used for a compact set
        raise NotImplementedError

    def actions(self) -> None:  # type: ignore[override]
        """None: the action set is the unit ball, not a finite list."""
        return None

    def expected_reward(self, x: Any) -> float | np.ndarray:
        """Expected reward ``<x, theta*>`` of action vector(s) ``x`` (d,) or (B, d)."""
        xb = self._check_vector(x)
        return self._out(np.einsum("bd,bd->b", xb, self._theta))

    def _batched_best(self) -> np.ndarray:
        return self._norm

    def _check_vector(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        want = (self.dim,) if self.n_instances is None else (self.n_instances, self.dim)
        if arr.shape != want:
            raise ValueError(f"action: expected an action vector of shape {want}, got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise TypeError(f"action: expected real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64).reshape(self._batch, self.dim)
        if not np.all(np.isfinite(arr)):
            raise ValueError("action: contains NaN or inf")
        if np.any(np.linalg.norm(arr, axis=1) > 1.0 + 1e-9):
            raise ValueError("action: vectors must lie in the unit ball (norm <= 1)")
        return arr

    def step(self, action: Any) -> tuple[Any, Any]:
        """Play action vector(s) ``action`` of norm at most one, ``(d,)`` or ``(B, d)``.

        Returns
        -------
        reward, regret : float or numpy.ndarray
            Observed reward and expected regret ``|theta*| - <x, theta*>``.
        """
        xb = self._check_vector(action)
        chosen = np.einsum("bd,bd->b", xb, self._theta)
        regret = np.maximum(self._norm - chosen, 0.0)
        reward = self._batched_rewards(chosen, None)
        self._record(None, chosen, reward, regret)
        self._t += 1
        return self._out(reward), self._out(regret)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.pop("n_actions")
        return cfg
