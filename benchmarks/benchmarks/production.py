"""The production loop (issue 12): action probabilities, ragged warm start, forgetting (CPU)."""

from __future__ import annotations

import numpy as np

import ensemblepp as epp

POLICIES = {
    "ensemble++": lambda d, **kw: epp.LinearEnsemble(d, 8, **kw),
    "ts": lambda d, **kw: epp.LinearTS(d, **kw),
    "es": lambda d, **kw: epp.LinearEnsembleSampling(d, 16, **kw),
}


class ActionProbabilities:
    """Probabilities of K = 80 actions from 1024 draws, d = 20, for B agents."""

    params = (list(POLICIES), [1, 256])
    param_names = ["policy", "B"]
    timeout = 300

    def setup(self, policy: str, B: int) -> None:
        rng = np.random.default_rng(0)
        d = 20
        self.agent = POLICIES[policy](d, n_agents=None if B == 1 else B, seed=0)
        X = rng.normal(size=(100, d)) / np.sqrt(d)
        r = rng.normal(size=100)
        if B == 1:
            self.agent.update(X, r)
        else:
            self.agent.update(np.broadcast_to(X, (B, 100, d)), np.broadcast_to(r, (B, 100)))
        self.X = rng.normal(size=(80, d)) / np.sqrt(d)

    def time_action_probabilities(self, policy: str, B: int) -> None:
        self.agent.action_probabilities(self.X, n_samples=1024)


class WarmStart:
    """One ragged warm start of B agents x 100 rows (M = 8), with and without forgetting."""

    params = ([16, 64], [1, 1000], [1.0, 0.99])
    param_names = ["d", "B", "forgetting"]
    timeout = 300

    def setup(self, d: int, B: int, forgetting: float) -> None:
        rng = np.random.default_rng(1)
        rows = 100 if B > 1 else 10_000
        self.x = rng.normal(size=(B * rows, d)) / np.sqrt(d)
        self.r = rng.normal(size=B * rows)
        self.offsets = None if B == 1 else np.arange(B + 1, dtype=np.int64) * rows
        self.make = lambda: epp.LinearEnsemble(d, 8, n_agents=None if B == 1 else B, seed=0, forgetting=forgetting)
        self.agent = self.make()

    def time_warm_start(self, d: int, B: int, forgetting: float) -> None:
        self.agent.warm_start(self.x, self.r, self.offsets)
