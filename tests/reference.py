"""Plain NumPy implementation of the linear policies, one agent at a time (a test yardstick).

It follows DESIGN.md line by line in the covariance form (Sigma, mu, A updated by rank-one
downdates), independently of the compiled core's information form, and is written for clarity,
not speed: the test suite checks the compiled kernels against it step by step (given the same
random draws), and the benchmark scripts time the kernels against it.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from ensemblepp.distributions import DISTRIBUTIONS, default_sparsity
from ensemblepp.distributions import draw as philox_draw

__all__ = ["Draws", "PhiloxDraws", "NumpyDraws", "NumpyLinearPolicy"]


class Draws(Protocol):
    """Source of the random vectors a linear policy needs."""

    def vector(self, name: str, n: int, scaling: str, sparsity: int) -> np.ndarray:
        """One draw of length n from distribution ``name``."""

    def index(self, n: int) -> int:
        """One index uniform on {0, ..., n-1}."""


class PhiloxDraws:
    """The draws of agent ``agent`` of the compiled core: counter values step, step + 1, ...

    Parameters
    ----------
    seed : int
        Seed of the compiled policy.
    agent : int
        Agent index within its batch.
    step : int
        Counter value of the next draw.
    """

    def __init__(self, seed: int, agent: int = 0, step: int = 0) -> None:
        self.seed, self.agent, self.step = seed, agent, step

    def vector(self, name: str, n: int, scaling: str, sparsity: int) -> np.ndarray:
        v = philox_draw(name, 1, n, scaling=scaling, seed=self.seed, agent=self.agent, step=self.step,
                        sparsity=sparsity)[0]
        self.step += 1
        return v

    def index(self, n: int) -> int:
        v = self.vector("coordinate", n, "perturbation", 1)
        return int(np.flatnonzero(v)[0])


class NumpyDraws:
    """The same distributions drawn with a NumPy ``Generator`` (for benchmarks)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def vector(self, name: str, n: int, scaling: str, sparsity: int) -> np.ndarray:
        rng = self.rng
        if name == "gaussian":
            v = rng.standard_normal(n) / math.sqrt(n)
        elif name == "sphere":
            v = rng.standard_normal(n)
            v /= np.linalg.norm(v)
        elif name == "cube":
            v = rng.choice([-1.0, 1.0], size=n) / math.sqrt(n)
        elif name == "coordinate":
            v = np.zeros(n)
            v[rng.integers(n)] = rng.choice([-1.0, 1.0])
        elif name == "sparse":
            v = np.zeros(n)
            v[rng.choice(n, size=sparsity, replace=False)] = rng.choice([-1.0, 1.0], size=sparsity) / math.sqrt(sparsity)
        else:
            raise ValueError(f"name: unknown distribution {name!r}; expected one of {DISTRIBUTIONS}")
        return v * (math.sqrt(n) if scaling == "reference" else 1.0)

    def index(self, n: int) -> int:
        return int(self.rng.integers(n))


class NumpyLinearPolicy:
    """One agent of a linear policy in plain NumPy (float64).

    Parameters
    ----------
    policy : {"ensemble", "thompson", "ensemble_sampling", "ucb", "greedy"}
        Which policy.
    dim : int
        Feature dimension d.
    draws : Draws
        Source of random vectors.
    ensemble_size : int
        M (ensemble and ensemble_sampling).
    prior_var : float or ndarray
        Sigma_0 as a scalar times I or a (d, d) matrix.
    noise_std : float
        eta.
    reference, perturbation : str
        Ensemble++ distributions.
    alpha : float
        LinUCB bonus width.
    prior_mean : ndarray, optional
        mu_0.
    """

    def __init__(self, policy: str, dim: int, draws: Draws, *, ensemble_size: int = 1, prior_var: float | np.ndarray = 10.0,
                 noise_std: float = 1.0, reference: str = "gaussian", perturbation: str = "sphere", alpha: float = 1.0,
                 prior_mean: np.ndarray | None = None) -> None:
        d, M = dim, ensemble_size
        self.policy, self.d, self.M, self.draws = policy, d, M, draws
        self.eta, self.alpha = noise_std, alpha
        self.reference, self.perturbation = reference, perturbation
        self.sparsity = default_sparsity(M)
        self.Sigma = prior_var * np.eye(d) if np.ndim(prior_var) == 0 else np.array(prior_var, dtype=float)
        self.mu = np.zeros(d) if prior_mean is None else np.array(prior_mean, dtype=float)
        L = np.linalg.cholesky(self.Sigma)
        self.A = None
        if policy == "ensemble":
            Z = np.stack([draws.vector(perturbation, M, "perturbation", self.sparsity) for _ in range(d)])
            self.A = L @ Z
        elif policy == "ensemble_sampling":
            G = np.stack([draws.vector("gaussian", M, "reference", 1) for _ in range(d)])
            self.A = self.mu[:, None] + L @ G

    def theta(self) -> np.ndarray:
        """A posterior draw (or the mean for greedy and UCB)."""
        if self.policy == "ensemble":
            zeta = self.draws.vector(self.reference, self.M, "reference", self.sparsity)
            return self.mu + self.A @ zeta
        if self.policy == "thompson":
            g = self.draws.vector("gaussian", self.d, "reference", 1)
            U = np.linalg.cholesky(np.linalg.inv(self.Sigma)).T
            return self.mu + np.linalg.solve(U, g)
        if self.policy == "ensemble_sampling":
            return self.A[:, self.draws.index(self.M)].copy()
        return self.mu.copy()

    def act(self, X: np.ndarray, mask: np.ndarray | None = None) -> int:
        """Index of the best action of X (K, d) under the policy's score."""
        scores = X @ self.theta()
        if self.policy == "ucb":
            scores = scores + self.alpha * np.sqrt(np.maximum(np.einsum("kd,de,ke->k", X, self.Sigma, X), 0.0))
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        return int(np.argmax(scores))

    def update(self, x: np.ndarray, r: float) -> None:
        """Rank-one update with one observation."""
        u = self.Sigma @ x
        s = self.eta**2 + x @ u
        k = u / s
        if self.policy == "ensemble":
            z = self.draws.vector(self.perturbation, self.M, "perturbation", self.sparsity)
            self.A = self.A + np.outer(k, self.eta * z - self.A.T @ x)
        elif self.policy == "ensemble_sampling":
            w = self.eta * self.draws.vector("gaussian", self.M, "reference", 1)
            self.A = self.A + np.outer(k, r + w - self.A.T @ x)
        self.mu = self.mu + k * (r - x @ self.mu)
        self.Sigma = self.Sigma - np.outer(u, u) / s


class BatchedNumpyEnsemble:
    """Ensemble++ for B agents in vectorised NumPy (einsum), the batched yardstick.

    Parameters
    ----------
    n_agents, dim, ensemble_size : int
        B, d and M.
    prior_var, noise_std : float
        Sigma_0 = prior_var I and eta.
    seed : int
        Seed of the NumPy generator (Gaussian reference, sphere perturbation).
    """

    def __init__(self, n_agents: int, dim: int, ensemble_size: int, prior_var: float = 10.0, noise_std: float = 1.0,
                 seed: int = 0) -> None:
        B, d, M = n_agents, dim, ensemble_size
        self.rng = np.random.default_rng(seed)
        self.eta, self.M = noise_std, M
        self.mu = np.zeros((B, d))
        self.Sigma = np.broadcast_to(prior_var * np.eye(d), (B, d, d)).copy()
        Z = self.rng.standard_normal((B, d, M))
        self.A = math.sqrt(prior_var) * Z / np.linalg.norm(Z, axis=2, keepdims=True)

    def act(self, X: np.ndarray) -> np.ndarray:
        """Indices (B,) of the best shared actions X (K, d) under one draw per agent."""
        zeta = self.rng.standard_normal((self.mu.shape[0], self.M))
        theta = self.mu + np.einsum("bdm,bm->bd", self.A, zeta)
        return np.argmax(theta @ X.T, axis=1)

    def update(self, x: np.ndarray, r: np.ndarray) -> None:
        """Rank-one updates of all agents with x (B, d), r (B,)."""
        u = np.einsum("bij,bj->bi", self.Sigma, x)
        s = self.eta**2 + np.einsum("bi,bi->b", x, u)
        k = u / s[:, None]
        z = self.rng.standard_normal((x.shape[0], self.M))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        w = self.eta * z - np.einsum("bdm,bd->bm", self.A, x)
        self.A += np.einsum("bd,bm->bdm", k, w)
        self.mu += k * (r - np.einsum("bd,bd->b", x, self.mu))[:, None]
        self.Sigma -= np.einsum("bi,bj->bij", u, k)
