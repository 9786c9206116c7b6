"""asv benchmarks of the neural agents: seconds per act, per update, per step.

Sizes of the quadratic bandit in the paper: d = 100 features, K = 50 actions,
M = 8, minibatch 128, feature MLP 64 x 2, one optimiser step per update. The
buffer is filled to ``update_start`` in ``setup``, so every timed ``update``
includes one SGD step. CPU timings use one torch thread; the ``cuda`` rows
raise ``NotImplementedError`` in ``setup`` where torch sees no GPU, and every
timed CUDA call ends with a device synchronisation.
"""

from __future__ import annotations

import numpy as np

AGENTS = ["NeuralEnsemble", "EnsemblePlus", "EpiNet", "NeuralGreedy"]
DEVICES = ["cpu", "cuda"]
DIM, N_ACTIONS, ENSEMBLE, BATCH, HIDDEN = 100, 50, 8, 128, (64, 64)


class _NeuralBase:
    params = (AGENTS, DEVICES)
    param_names = ["agent", "device"]
    timeout = 120

    def setup(self, agent: str, device: str) -> None:
        try:
            import torch
        except ImportError as exc:  # the torch extra is not installed
            raise NotImplementedError("torch is not installed") from exc
        from ensemblepp import neural

        if device == "cuda" and not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")
        torch.set_num_threads(1)
        self.torch = torch
        cls = getattr(neural, agent)
        kwargs = dict(hidden=HIDDEN, batch_size=BATCH, update_start=128, update_every=1,
                      n_updates=1, device=device, seed=0)
        if agent != "NeuralGreedy":
            kwargs["ensemble_size"] = ENSEMBLE
        self.agent = cls(DIM, **kwargs)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(N_ACTIONS, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        self.actions = torch.as_tensor(x, device=device)
        self.rewards = rng.normal(size=1024).tolist()
        for i in range(128):
            self.agent.update(self.actions[i % N_ACTIONS], self.rewards[i])
        self.i = 0
        self._sync()

    def _sync(self) -> None:
        if self.agent.device.type == "cuda":
            self.torch.cuda.synchronize(self.agent.device)


class TimeAct(_NeuralBase):
    def time_act(self, agent: str, device: str) -> None:
        self.agent.act(self.actions)
        self._sync()


class TimeUpdate(_NeuralBase):
    def time_update(self, agent: str, device: str) -> None:
        self.i += 1
        self.agent.update(self.actions[self.i % N_ACTIONS], self.rewards[self.i % 1024])
        self._sync()


class TimeStep(_NeuralBase):
    def time_step(self, agent: str, device: str) -> None:
        self.i += 1
        a = self.agent.act(self.actions)
        self.agent.update(self.actions[a], self.rewards[self.i % 1024])
        self._sync()
