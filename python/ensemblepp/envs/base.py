"""The environment protocol shared by every bandit in :mod:`ensemblepp.envs`.

An environment holds either one instance (``n_instances=None``) or ``B``
independent instances stepped together with array operations. Instance ``b``
of a batched environment built with seeds ``[s_0, ..., s_{B-1}]`` is the same
problem, with the same reward noise, as a single environment built with seed
``s_b``: each instance owns its generators, and draws that are cheap enough to
batch are taken in blocks of a fixed number of steps so that the per-step work
has no Python loop over instances.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Environment", "BlockStream", "instance_seeds"]

SeedLike = int | Sequence[int] | None


def instance_seeds(seed: SeedLike, n_instances: int | None) -> list[int]:
    """Expand ``seed`` into one integer seed per instance.

    Parameters
    ----------
    seed : int or sequence of int or None
        An int ``s`` gives instances the seeds ``s, s + 1, ..., s + B - 1`` (so a
        batched environment equals single environments seeded one by one); a
        sequence gives one seed per instance; None means 0.
    n_instances : int or None
        ``B``, or None for a single instance.

    Returns
    -------
    list of int
        ``B`` seeds (one for a single instance).
    """
    count = 1 if n_instances is None else n_instances
    if seed is None:
        seed = 0
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int or a sequence of ints, not bool")
    if isinstance(seed, (int, np.integer)):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        return [int(seed) + i for i in range(count)]
    try:
        seeds = [s for s in seed]
    except TypeError as exc:
        raise TypeError(f"seed must be an int or a sequence of ints, got {type(seed).__name__}") from exc
    if len(seeds) != count:
        raise ValueError(f"seed: expected {count} seeds (one per instance), got {len(seeds)}")
    out = []
    for s in seeds:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"seed: every per-instance seed must be an int, got {s!r}")
        if s < 0:
            raise ValueError(f"seed: per-instance seeds must be non-negative, got {s}")
        out.append(int(s))
    return out


class BlockStream:
    """Per-instance random draws of one fixed shape, generated in blocks.

    Each instance's generator produces ``block`` consecutive draws at a time, so
    the stream of instance ``b`` does not depend on how many instances are
    batched with it, and :meth:`next` is a slice of a preallocated array.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator
        One generator per instance; the stream owns them.
    sampler : callable
        ``sampler(rng, n)`` returns an array of shape ``(n, *shape)``.
    block : int
        Number of steps drawn at once.
    """

    def __init__(self, rngs: Sequence[np.random.Generator],
                 sampler: Callable[[np.random.Generator, int], np.ndarray], block: int) -> None:
        self._rngs = list(rngs)
        self._sampler = sampler
        self._block = int(block)
        self._buf: np.ndarray | None = None
        self._pos = self._block

    def peek(self) -> np.ndarray:
        """Return the next draw ``(B, *shape)`` without consuming it."""
        if self._pos >= self._block:
            self._buf = np.stack([self._sampler(r, self._block) for r in self._rngs], axis=0)
            self._pos = 0
        assert self._buf is not None
        return self._buf[:, self._pos]

    def advance(self) -> None:
        """Consume the draw returned by :meth:`peek`."""
        self.peek()
        self._pos += 1

    def next(self) -> np.ndarray:
        """Return and consume the next draw ``(B, *shape)``."""
        out = self.peek()
        self._pos += 1
        return out


def block_size(elements_per_step: int, limit: int = 1 << 17, most: int = 1024) -> int:
    """Steps per block so that one instance's block holds about ``limit`` numbers."""
    return int(max(1, min(most, limit // max(1, elements_per_step))))


class Environment(abc.ABC):
    """Abstract bandit environment (single or batched over ``B`` instances).

    Attributes
    ----------
    dim : int
        Feature dimension ``d`` of one action vector.
    n_actions : int or None
        Number of actions ``K`` offered per step (None for a continuous action
        set such as the unit sphere, see :attr:`compact`).
    n_instances : int or None
        ``B`` for a batched environment, None for a single instance.
    compact : bool
        True when actions are vectors of the unit ball rather than indices.
    metrics : tuple of str
        Names of the extra per-step metrics returned by :meth:`info`.
    """

    dim: int
    n_actions: int | None
    n_instances: int | None
    compact: bool = False
    metrics: tuple[str, ...] = ()

    def __init__(self, dim: int, n_actions: int | None, n_instances: int | None,
                 seed: SeedLike) -> None:
        self.dim = _positive_int(dim, "dim")
        self.n_actions = None if n_actions is None else _positive_int(n_actions, "n_actions")
        if n_instances is not None:
            n_instances = _positive_int(n_instances, "n_instances")
        self.n_instances = n_instances
        self._seeds = instance_seeds(seed, n_instances)
        self._t = 0

    # -- seeding --------------------------------------------------------------
    @property
    def seeds(self) -> list[int]:
        """The per-instance seeds in use (one entry for a single instance)."""
        return list(self._seeds)

    @property
    def t(self) -> int:
        """Number of steps taken since the last reset."""
        return self._t

    def reset(self, seed: SeedLike = None) -> None:
        """Re-draw the instances and the noise streams from ``seed``.

        Parameters
        ----------
        seed : int or sequence of int or None
            New seed(s); None reuses the seeds the environment was built with,
            so the same instances and the same reward noise come back.
        """
        if seed is not None:
            self._seeds = instance_seeds(seed, self.n_instances)
        self._t = 0
        children = [np.random.SeedSequence(s).spawn(3) for s in self._seeds]
        # Three independent streams per instance: the problem (theta*, arms),
        # the per-step context (action sets), the reward noise. Changing how
        # one is consumed never shifts the others.
        self._rng_instance = [np.random.default_rng(c[0]) for c in children]
        self._rng_context = [np.random.default_rng(c[1]) for c in children]
        self._rng_noise = [np.random.default_rng(c[2]) for c in children]
        self._draw_instances()

    @abc.abstractmethod
    def _draw_instances(self) -> None:
        """Draw every instance from ``self._rng_instance`` and set up streams."""

    # -- protocol -------------------------------------------------------------
    @property
    def _batch(self) -> int:
        return 1 if self.n_instances is None else self.n_instances

    def _out(self, value: np.ndarray) -> Any:
        """Drop the batch axis for a single instance."""
        if self.n_instances is None:
            v = value[0]
            return float(v) if np.ndim(v) == 0 else v
        return value

    @abc.abstractmethod
    def _batched_actions(self) -> np.ndarray:
        """Current action set ``(B, K, d)``."""

    @abc.abstractmethod
    def _batched_means(self) -> np.ndarray:
        """Expected reward of every current action ``(B, K)``."""

    def _batched_mask(self) -> np.ndarray | None:
        return None

    @abc.abstractmethod
    def _batched_rewards(self, means: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        """Draw the observed rewards ``(B,)`` of chosen actions with expected ``means``."""

    def _advance(self) -> None:
        """Move to the next context (after the rewards were drawn)."""

    def actions(self) -> np.ndarray:
        """Current action set, ``(K, d)`` for one instance or ``(B, K, d)``, float64."""
        return self._out(self._batched_actions())

    def mask(self) -> np.ndarray | None:
        """Available actions, ``(K,)`` or ``(B, K)`` bool, or None when all are."""
        m = self._batched_mask()
        return None if m is None else self._out(m)

    def expected_rewards(self) -> np.ndarray:
        """Expected reward of every current action, ``(K,)`` or ``(B, K)``."""
        return self._out(self._batched_means())

    def _batched_best(self) -> np.ndarray:
        means = self._batched_means()
        m = self._batched_mask()
        if m is not None:
            means = np.where(m, means, -np.inf)
        return means.max(axis=1)

    def best_value(self) -> float | np.ndarray:
        """Expected reward of the best available current action (float or ``(B,)``)."""
        return self._out(self._batched_best())

    def _check_action(self, action: Any) -> np.ndarray:
        """Validate ``action`` and return it as ``(B,)`` int64 without touching state."""
        if self.n_instances is None:
            if isinstance(action, np.ndarray) and action.shape not in ((), (1,)):
                raise ValueError(f"action: expected one index for a single instance, got shape {action.shape}")
            arr = np.asarray(action).reshape(1)
        else:
            arr = np.asarray(action)
            if arr.shape != (self.n_instances,):
                raise ValueError(f"action: expected shape ({self.n_instances},), got {arr.shape}")
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"action: expected integer indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        assert self.n_actions is not None
        if np.any(arr < 0) or np.any(arr >= self.n_actions):
            raise ValueError(f"action: index out of range [0, {self.n_actions}): {arr.tolist()}")
        m = self._batched_mask()
        if m is not None and not np.all(m[np.arange(arr.shape[0]), arr]):
            raise ValueError("action: an index points to an unavailable (masked) action")
        return arr

    def step(self, action: Any) -> tuple[Any, Any]:
        """Play ``action`` and move to the next context.

        Parameters
        ----------
        action : int or array of int
            An index for a single instance, or a ``(B,)`` integer array.

        Returns
        -------
        reward : float or numpy.ndarray
            Observed (noisy) reward, float or ``(B,)``.
        regret : float or numpy.ndarray
            Expected regret of the choice: best expected reward minus the
            chosen action's expected reward (zero for the best action).

        Raises
        ------
        ValueError, TypeError
            For a wrong shape, dtype or an index out of range; the environment
            is left unchanged.
        """
        idx = self._check_action(action)
        rows = np.arange(idx.shape[0])
        means = self._batched_means()
        chosen = means[rows, idx]
        regret = np.maximum(self._batched_best() - chosen, 0.0)
        reward = self._batched_rewards(chosen, idx)
        self._record(idx, chosen, reward, regret)
        self._advance()
        self._t += 1
        return self._out(reward), self._out(regret)

    def _record(self, idx: np.ndarray | None, chosen: np.ndarray, reward: np.ndarray,
                regret: np.ndarray) -> None:
        """Hook for subclasses that report extra metrics through :meth:`info`."""

    def info(self) -> dict[str, Any]:
        """Extra metrics of the last step, one value (or ``(B,)`` array) per name in :attr:`metrics`."""
        return {}

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this environment (for results files)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")
    return v


class CachedContext:
    """Mixin for environments that keep the current context in ``_X``, ``_means``, ``_best``.

    ``_X`` (B, K, d) holds the actions, ``_means`` (B, K) their expected rewards and ``_best``
    (B,) the best of them; the environment refreshes all three whenever the context changes.
    """

    _X: np.ndarray
    _means: np.ndarray
    _best: np.ndarray

    def _batched_actions(self) -> np.ndarray:
        return self._X

    def _batched_means(self) -> np.ndarray:
        return self._means

    def _batched_best(self) -> np.ndarray:
        return self._best
