"""Cost per seed-step of S neural agents stepped as one batched computation (MultiSeed).

Sizes of the quadratic bandit (d = 100, K = 50 actions per agent, M = 8,
MLP 64 x 2, batch 128, one SGD step per observation after a short warm-up).
For every agent class it times ``S`` in {1, 4, 8, 16} with
:class:`ensemblepp.neural.MultiSeed`, and one ordinary agent for reference,
interleaved in rounds so that load changes hit every variant alike; it prints
the median per-step time and the cost per seed-step relative to one ordinary
agent's step.

Usage::

    python benchmarks/bench_multiseed.py [--steps 100] [--rounds 3] [--threads 1] [--sizes 1 4 8 16]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from ensemblepp.neural import EnsemblePlus, EpiNet, MultiSeed, NeuralEnsemble, NeuralGreedy

DIM, K, M = 100, 50, 8
CLASSES = {"ensemble++": NeuralEnsemble, "ensemble+": EnsemblePlus, "epinet": EpiNet,
           "greedy": NeuralGreedy}


def _options(cls: type) -> dict:
    opts = {"update_start": 130, "n_updates": 1}
    if cls is not NeuralGreedy:
        opts["ensemble_size"] = M
    return opts


def time_single(cls: type, steps: int, rng: np.random.Generator) -> float:
    agent = cls(DIM, seed=0, **_options(cls))
    acts = rng.standard_normal((steps + 130, K, DIM)).astype(np.float32)
    for t in range(130):  # fill the buffer up to the first training step
        agent.update(acts[t, 0], float(rng.standard_normal()))
    start = time.perf_counter()
    for t in range(130, 130 + steps):
        a = agent.act(acts[t])
        agent.update(acts[t, a], float(rng.standard_normal()))
    return (time.perf_counter() - start) / steps


def time_multi(cls: type, S: int, steps: int, rng: np.random.Generator) -> float:
    agent = MultiSeed(cls, DIM, list(range(S)), **_options(cls))
    acts = rng.standard_normal((steps + 130, S, K, DIM)).astype(np.float32)
    rows = np.arange(S)
    for t in range(130):
        agent.update(acts[t, :, 0], rng.standard_normal(S))
    start = time.perf_counter()
    for t in range(130, 130 + steps):
        a = agent.act(acts[t])
        agent.update(acts[t, rows, a], rng.standard_normal(S))
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--agents", nargs="+", choices=sorted(CLASSES), default=list(CLASSES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    print("| agent | single agent ms/step | " + " | ".join(
        f"S={s}: ms/step (per seed-step / single)" for s in args.sizes) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in args.sizes) + " |")
    for name in args.agents:
        cls = CLASSES[name]
        single, multi = [], {s: [] for s in args.sizes}
        for _ in range(args.rounds):
            single.append(time_single(cls, args.steps, rng))
            for s in args.sizes:
                multi[s].append(time_multi(cls, s, args.steps, rng))
        base = float(np.median(single))
        cells = []
        for s in args.sizes:
            m = float(np.median(multi[s]))
            cells.append(f"{1e3 * m:.2f} ({1e3 * m / s:.2f} ms, {m / s / base:.2f})")
        print(f"| {name} | {1e3 * base:.2f} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
