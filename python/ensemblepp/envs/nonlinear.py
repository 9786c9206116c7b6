"""Nonlinear bandits over a pool of arms: quadratic and neural reward functions.

Both draw a pool of ``n_arms`` vectors ``x ~ N(0, I_d)`` normalised to the
unit sphere once per instance and offer a uniformly random subset of
``n_actions`` of them at every step, as in the Ensemble++ paper's synthetic
nonlinear tasks (``d = 100``, 1000 arms, 50 offered per step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import BlockStream, CachedContext, Environment, SeedLike, _positive_float, _positive_int, block_size

__all__ = ["Quadratic", "NeuralBandit"]

_NOISE_BLOCK = 1024


class _PoolBandit(CachedContext, Environment):
    """``n_arms`` fixed unit vectors per instance, ``n_actions`` of them offered per step."""

    def __init__(self, dim: int, n_actions: int, n_arms: int, n_instances: int | None,
                 seed: SeedLike) -> None:
        super().__init__(dim, n_actions, n_instances, seed)
        self.n_arms = _positive_int(n_arms, "n_arms")
        if self.n_arms < n_actions:
            raise ValueError(f"n_arms ({n_arms}) must be at least n_actions ({n_actions})")

    def _draw_pool(self) -> np.ndarray:
        pool = np.stack([r.standard_normal((self.n_arms, self.dim)) for r in self._rng_instance])
        return pool / np.linalg.norm(pool, axis=2, keepdims=True)

    def _start_contexts(self) -> None:
        k, p = self.n_actions, self.n_arms
        assert k is not None

        def subsets(r: np.random.Generator, n: int) -> np.ndarray:
            # The k smallest of p i.i.d. uniforms are a uniform k-subset.
            return np.argpartition(r.random((n, p)), k - 1, axis=1)[:, :k]

        self._contexts = BlockStream(self._rng_context, subsets, block_size(p))
        self._load_context()

    def _load_context(self) -> None:
        self._idx = self._contexts.peek()
        rows = np.arange(self._batch)[:, None]
        self._X = self._pool[rows, self._idx]
        self._means = self._values[rows, self._idx]
        self._best = self._means.max(axis=1)

    def _advance(self) -> None:
        self._contexts.advance()
        self._load_context()


    @property
    def arm_values(self) -> np.ndarray:
        """Expected reward of every arm of the pool, ``(n_arms,)`` or ``(B, n_arms)``."""
        return self._out(self._values.copy())

    @property
    def offered(self) -> np.ndarray:
        """Pool indices of the current actions, ``(K,)`` or ``(B, K)``."""
        return self._out(self._idx.copy())


class Quadratic(_PoolBandit):
    """Quadratic reward ``r = scale * x^T Th Th^T x + N(0, noise_std^2)``.

    ``Th`` has i.i.d. ``N(0, 1)`` entries (``d x d``); arms are unit vectors, so
    expected rewards are ``scale * |Th^T x|^2`` (about ``scale * d``).

    Parameters
    ----------
    dim : int, default 100
        Feature dimension ``d``.
    n_actions : int, default 50
        Arms offered per step ``K``.
    n_arms : int, default 1000
        Size of the pool.
    scale : float, default 0.01
        Reward scale.
    noise_std : float, default 0.1
        Standard deviation of the reward noise.
    n_instances : int or None, default None
        ``B`` instances stepped together, or None for one.
    seed : int or sequence of int, default 0
        Seed of instance 0 (instance ``b`` uses ``seed + b``) or one per instance.
    """

    def __init__(self, dim: int = 100, n_actions: int = 50, n_arms: int = 1000,
                 scale: float = 0.01, noise_std: float = 0.1, n_instances: int | None = None,
                 seed: SeedLike = 0) -> None:
        super().__init__(dim, n_actions, n_arms, n_instances, seed)
        self.scale = _positive_float(scale, "scale")
        self.noise_std = _positive_float(noise_std, "noise_std", allow_zero=True)
        self.reset()

    def _draw_instances(self) -> None:
        self._pool = self._draw_pool()
        self._Th = np.stack([r.standard_normal((self.dim, self.dim)) for r in self._rng_instance])
        proj = np.einsum("bnd,bde->bne", self._pool, self._Th)
        self._values = self.scale * np.einsum("bne,bne->bn", proj, proj)
        self._noise = BlockStream(self._rng_noise, lambda r, n: r.standard_normal(n), _NOISE_BLOCK)
        self._start_contexts()

    def _batched_rewards(self, means: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        return means + self.noise_std * self._noise.next()

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_actions": self.n_actions, "n_arms": self.n_arms,
                "scale": self.scale, "noise_std": self.noise_std, "n_instances": self.n_instances,
                "seed": self.seeds if self.n_instances is not None else self.seeds[0]}


class NeuralBandit(_PoolBandit):
    """Rewards from a frozen random MLP ``d -> 50 -> 50 -> out`` (ReLU).

    Regression: one output ``f(x)``, reward ``f(x) + N(0, noise_std^2)``.
    Classification: two logits, ``p(x) = softmax(logits / temperature)[1]``,
    reward ``Bernoulli(p(x))`` with expected reward ``p(x)``.

    Weights are drawn once per instance: the first layer ``N(0, 1)`` (inputs
    have unit norm, so pre-activations have unit variance), hidden layers
    ``N(0, 2 / fan_in)`` (He scaling keeps ReLU activations at unit scale), the
    output layer ``N(0, 1 / fan_in)``; biases ``N(0, 0.1^2)``.

    Parameters
    ----------
    dim : int, default 100
        Feature dimension ``d``.
    n_actions : int, default 50
        Arms offered per step ``K``.
    n_arms : int, default 1000
        Size of the pool.
    task : {"regression", "classification"}, default "regression"
        Reward model.
    hidden : sequence of int, default (50, 50)
        Hidden layer widths.
    noise_std : float, default 0.1
        Reward noise (regression only).
    temperature : float, default 0.1
        Softmax temperature (classification only).
    n_instances : int or None, default None
        ``B`` instances stepped together, or None for one.
    seed : int or sequence of int, default 0
        Seed of instance 0 (instance ``b`` uses ``seed + b``) or one per instance.
    """

    def __init__(self, dim: int = 100, n_actions: int = 50, n_arms: int = 1000,
                 task: str = "regression", hidden: Sequence[int] = (50, 50),
                 noise_std: float = 0.1, temperature: float = 0.1,
                 n_instances: int | None = None, seed: SeedLike = 0) -> None:
        super().__init__(dim, n_actions, n_arms, n_instances, seed)
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        self.task = task
        if isinstance(hidden, (int, str)) or len(hidden) == 0:
            raise ValueError(f"hidden must be a non-empty sequence of widths, got {hidden!r}")
        self.hidden = tuple(_positive_int(h, "hidden") for h in hidden)
        self.noise_std = _positive_float(noise_std, "noise_std", allow_zero=True)
        self.temperature = _positive_float(temperature, "temperature")
        self.reset()

    def _draw_instances(self) -> None:
        self._pool = self._draw_pool()
        widths = (self.dim, *self.hidden, 1 if self.task == "regression" else 2)
        self._weights: list[tuple[np.ndarray, np.ndarray]] = []
        for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = layer == len(widths) - 2
            std = 1.0 if layer == 0 else np.sqrt((1.0 if last else 2.0) / fan_in)
            w = np.stack([std * r.standard_normal((fan_in, fan_out)) for r in self._rng_instance])
            b = np.stack([0.1 * r.standard_normal(fan_out) for r in self._rng_instance])
            self._weights.append((w, b))
        out = self._forward(self._pool)
        if self.task == "regression":
            self._values = out[..., 0]
            self._noise = BlockStream(self._rng_noise, lambda r, n: r.standard_normal(n), _NOISE_BLOCK)
        else:
            z = (out[..., 1] - out[..., 0]) / self.temperature
            self._values = 1.0 / (1.0 + np.exp(-np.clip(z, -500.0, 500.0)))
            self._noise = BlockStream(self._rng_noise, lambda r, n: r.random(n), _NOISE_BLOCK)
        self._start_contexts()

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """MLP output for inputs ``(B, n, d)``."""
        h = x
        for i, (w, b) in enumerate(self._weights):
            h = np.einsum("bnf,bfo->bno", h, w) + b[:, None, :]
            if i < len(self._weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def _batched_rewards(self, means: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        if self.task == "regression":
            return means + self.noise_std * self._noise.next()
        return (self._noise.next() < means).astype(np.float64)

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_actions": self.n_actions, "n_arms": self.n_arms,
                "task": self.task, "hidden": list(self.hidden), "noise_std": self.noise_std,
                "temperature": self.temperature, "n_instances": self.n_instances,
                "seed": self.seeds if self.n_instances is not None else self.seeds[0]}
