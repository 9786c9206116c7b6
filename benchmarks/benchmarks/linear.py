"""Per-step cost of the linear policies: act, update and both, over d, M, K, B and backend."""

from __future__ import annotations

import numpy as np

import ensemblepp as epp

from .common import require_backend, synchronize, to_device

POLICIES = {
    "ensemble++": lambda d, M, **kw: epp.LinearEnsemble(d, M, **kw),
    "ts": lambda d, M, **kw: epp.LinearTS(d, **kw),
    "es": lambda d, M, **kw: epp.LinearEnsembleSampling(d, M, **kw),
    "linucb": lambda d, M, **kw: epp.LinUCB(d, **kw),
    "greedy": lambda d, M, **kw: epp.LinearGreedy(d, **kw),
}


class _Step:
    """One act or update of Ensemble++ for B agents; earlier steps run in setup."""

    params = ([16, 64, 256], [4, 16, 64], [100, 10_000], [1, 256], ["cpu", "cuda"])
    param_names = ["d", "M", "K", "B", "backend"]
    timeout = 300

    def setup(self, d: int, M: int, K: int, B: int, backend: str) -> None:
        require_backend(backend)
        rng = np.random.default_rng(0)
        self.backend = backend
        self.agent = epp.LinearEnsemble(d, M, n_agents=None if B == 1 else B, device=backend, seed=0)
        self.X = to_device(rng.normal(size=(K, d)) / np.sqrt(d), backend)
        self.rewards = to_device(rng.normal(size=K), backend)
        self.index = self.agent.act(self.X)
        self.x = self.X[self.index]
        self.r = self.rewards[self.index]
        if B == 1:
            self.x, self.r = np.ascontiguousarray(self.x) if backend == "cpu" else self.x, float(self.r)
        synchronize(backend)


class Act(_Step):
    def time_act(self, d: int, M: int, K: int, B: int, backend: str) -> None:
        self.agent.act(self.X)
        synchronize(self.backend)


class Update(_Step):
    def time_update(self, d: int, M: int, K: int, B: int, backend: str) -> None:
        self.agent.update(self.x, self.r)
        synchronize(self.backend)


class Step(_Step):
    def time_step(self, d: int, M: int, K: int, B: int, backend: str) -> None:
        a = self.agent.act(self.X)
        self.agent.update(self.X[a], self.rewards[a] if B > 1 else float(self.rewards[a]))
        synchronize(self.backend)


class PolicyStep:
    """A full step (act + update) of every linear policy at d = 64, M = 16, K = 100."""

    params = (list(POLICIES), [1, 256], ["cpu", "cuda"])
    param_names = ["policy", "B", "backend"]

    def setup(self, policy: str, B: int, backend: str) -> None:
        require_backend(backend)
        rng = np.random.default_rng(0)
        self.backend = backend
        self.agent = POLICIES[policy](64, 16, n_agents=None if B == 1 else B, device=backend, seed=0)
        self.X = to_device(rng.normal(size=(100, 64)) / 8.0, backend)
        self.rewards = to_device(rng.normal(size=100), backend)
        self.B = B

    def time_step(self, policy: str, B: int, backend: str) -> None:
        a = self.agent.act(self.X)
        self.agent.update(self.X[a], self.rewards[a] if self.B > 1 else float(self.rewards[a]))
        synchronize(self.backend)


class Memory:
    """Peak memory of B Ensemble++ agents (state is O(B (d^2 + dM)))."""

    params = ([64, 256], [16, 64], [1, 256])
    param_names = ["d", "M", "B"]

    def peakmem_agents(self, d: int, M: int, B: int) -> None:
        epp.LinearEnsemble(d, M, n_agents=B, seed=0)


class Ratios:
    """Figures derived in one run: compiled step over NumPy reference step (higher is better)."""

    def setup(self) -> None:
        import sys  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        # The NumPy reference is a test yardstick: it lives in tests/, beside the repository's benchmarks.
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
        from reference import NumpyDraws, NumpyLinearPolicy  # noqa: PLC0415

        rng = np.random.default_rng(0)
        self.X = rng.normal(size=(100, 16))
        self.rew = rng.normal(size=100)
        self.core = epp.LinearEnsemble(16, 8, seed=0)
        self.ref = NumpyLinearPolicy("ensemble", 16, NumpyDraws(0), ensemble_size=8)

    def track_speedup_over_numpy_d16(self) -> float:
        import timeit

        def step(agent):
            a = agent.act(self.X)
            agent.update(self.X[a], self.rew[a])

        core = min(timeit.repeat(lambda: step(self.core), number=500, repeat=5)) / 500
        ref = min(timeit.repeat(lambda: step(self.ref), number=100, repeat=5)) / 100
        return ref / core

    track_speedup_over_numpy_d16.unit = "x"


class Draws:
    """The five sampling distributions through ``ensemblepp.draw``: 1e5 vectors of length M
    (Gaussian and sphere: the Box-Muller map of generator version 2, on AVX2 lanes where the CPU
    has them)."""

    params = (list(epp.DISTRIBUTIONS), [8, 64])
    param_names = ["distribution", "M"]

    def time_draw(self, distribution: str, M: int) -> None:
        epp.draw(distribution, 100_000, M, seed=1)
