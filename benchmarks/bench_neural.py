"""Per-step cost of the neural agents, and Ensemble++ against a straightforward implementation.

Sizes of the quadratic bandit (d = 100, K = 50, M = 8, batch 128, MLP 64 x 2,
one SGD step per update). The straightforward Ensemble++ uses the same network
and loss but keeps the buffer as Python lists of NumPy rows, samples the
minibatch with NumPy, copies it to the device every step and evaluates the
network once per index vector in a Python loop; the ratio printed is its time
over ours.

Usage::

    python benchmarks/bench_neural.py [--device cpu|cuda] [--steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ensemblepp import neural
from ensemblepp.neural import EnsemblePlusPlusNet, coordinate_support

DIM, K, M, BATCH, HIDDEN = 100, 50, 8, 128, (64, 64)


class StraightforwardEnsemblePP:
    """Ensemble++ as one would first write it: host buffer, one forward pass per index."""

    def __init__(self, device: str, seed: int = 0, lr: float = 1e-4, wd: float = 0.01,
                 c: float = 0.01, update_start: int = 128) -> None:
        self.device = torch.device(device)
        self.model = EnsemblePlusPlusNet(DIM, M, HIDDEN, generator=torch.Generator().manual_seed(seed))
        self.model.to(self.device)
        # The same fused Adam as the agent, so the ratio measures batching and the device buffer.
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=lr,
                                    fused=True)
        self.rng = np.random.default_rng(seed)
        self.xs: list[np.ndarray] = []
        self.rs: list[float] = []
        self.xis: list[np.ndarray] = []
        self.support = coordinate_support(M).numpy()
        self.wd, self.c, self.update_start = wd, c, update_start

    def act(self, actions: np.ndarray) -> int:
        zeta = self.rng.normal(size=(1, M)).astype(np.float32)
        with torch.no_grad():
            out = self.model(torch.as_tensor(actions, device=self.device),
                             torch.as_tensor(zeta, device=self.device))
        return int(out[:, 0, 0].argmax())

    def update(self, x: np.ndarray, r: float) -> None:
        xi = self.rng.normal(size=M)
        self.xs.append(np.asarray(x, np.float32))
        self.rs.append(r)
        self.xis.append((xi / np.linalg.norm(xi)).astype(np.float32))
        if len(self.xs) < self.update_start:
            return
        idx = self.rng.integers(0, len(self.xs), BATCH)
        x_b = torch.as_tensor(np.stack([self.xs[i] for i in idx]), device=self.device)
        r_b = torch.as_tensor(np.array([self.rs[i] for i in idx], np.float32), device=self.device)
        xi_b = torch.as_tensor(np.stack([self.xis[i] for i in idx]), device=self.device)
        loss = 0.0
        for z in self.support:
            zt = torch.as_tensor(z, device=self.device)
            out = self.model(x_b, zt[None])[:, 0, 0]
            loss = loss + ((r_b + self.c * xi_b @ zt - out) ** 2).mean()
        loss = loss / len(self.support)
        for g in self.opt.param_groups:
            g["weight_decay"] = self.wd / len(self.xs)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_agent(agent, actions, rewards, steps: int, device: str) -> tuple[float, float, float]:
    """Wall seconds per act and per update (one SGD step), and process CPU seconds per step.

    The CPU time is the robust figure on a shared machine: other processes
    inflate wall time but not this process's CPU time (with one torch thread).
    """
    t_act = t_upd = 0.0
    c0 = time.process_time()
    for i in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        a = agent.act(actions)
        _sync(device)
        t1 = time.perf_counter()
        agent.update(actions[a], rewards[i])
        _sync(device)
        t2 = time.perf_counter()
        t_act += t1 - t0
        t_upd += t2 - t1
    return t_act / steps, t_upd / steps, (time.process_time() - c0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    actions_np = rng.normal(size=(K, DIM)).astype(np.float32)
    actions_np /= np.linalg.norm(actions_np, axis=1, keepdims=True)
    rewards = rng.normal(size=args.steps + 128).tolist()
    print(f"device={args.device} threads={args.threads} d={DIM} K={K} M={M} batch={BATCH} "
          f"hidden={HIDDEN}, {args.steps} steps after 128 warm-up steps")
    print(f"{'agent':<28}{'act ms':>10}{'update ms':>12}{'step ms':>10}{'step cpu ms':>13}")
    results = {}
    for name in ["NeuralEnsemble", "EnsemblePlus", "EpiNet", "NeuralGreedy"]:
        kwargs = dict(hidden=HIDDEN, batch_size=BATCH, device=args.device, seed=0)
        if name != "NeuralGreedy":
            kwargs["ensemble_size"] = M
        agent = getattr(neural, name)(DIM, **kwargs)
        actions = torch.as_tensor(actions_np, device=args.device)
        time_agent(agent, actions, rewards, 128, args.device)  # fill the buffer to update_start
        results[name] = time_agent(agent, actions, rewards[128:], args.steps, args.device)
    naive = StraightforwardEnsemblePP(args.device)
    time_agent(naive, actions_np, rewards, 128, args.device)
    results["straightforward Ensemble++"] = time_agent(naive, actions_np, rewards[128:], args.steps,
                                                       args.device)
    for name, (ta, tu, tc) in results.items():
        print(f"{name:<28}{ta * 1e3:>10.3f}{tu * 1e3:>12.3f}{(ta + tu) * 1e3:>10.3f}{tc * 1e3:>13.3f}")
    naive, ours = results["straightforward Ensemble++"], results["NeuralEnsemble"]
    print(f"straightforward / NeuralEnsemble per step: {(naive[0] + naive[1]) / (ours[0] + ours[1]):.2f}x "
          f"wall, {naive[2] / ours[2]:.2f}x CPU")


if __name__ == "__main__":
    main()
