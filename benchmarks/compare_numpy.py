"""Time the compiled core against plain NumPy implementations of the same algorithm, in one run.

Usage: ``python benchmarks/compare_numpy.py [--repeat N]``. Prints medians per full step
(act + update; CPU time of this process, the three timings of a case interleaved) of float64 agents and the ratios that the project's targets are stated in, with
the same step of a float32 agent beside it (its cost per agent-step):

1. d=16, K=100, M=8, B=1: compiled step vs the NumPy reference (target >= 10x faster);
2. d=100, K=10000, M=32, B=1: compiled step vs the bare product ``X @ theta`` (target <= 1.2x);
3. B=256, d=64, M=16, K=100: batched compiled step vs batched NumPy einsum (target >= 5x faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import ensemblepp as epp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the NumPy reference, a test yardstick
from reference import BatchedNumpyEnsemble, NumpyDraws, NumpyLinearPolicy  # noqa: E402


def interleaved_medians(steps: list[tuple[Callable[[], None], int]], repeat: int) -> list[float]:
    """Median seconds per call of each ``(step, n)``: every repetition times ``n`` calls of each
    step in turn (interleaved, so slow phases of a shared machine hit all of them alike), as CPU
    time of this single-threaded process, which a time slice given to another job does not inflate."""
    for step, _ in steps:
        step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for k, (step, n) in enumerate(steps):
            t0 = time.process_time()
            for _ in range(n):
                step()
            times[k].append((time.process_time() - t0) / n)
    return [statistics.median(t) for t in times]


def single_step(agent, X: np.ndarray, rewards: np.ndarray) -> Callable[[], None]:
    def step() -> None:
        a = agent.act(X)
        agent.update(X[a], rewards[a])

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions (median taken)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    d, K, M = 16, 100, 8
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    X32 = X.astype(np.float32)
    core, ref, f32 = interleaved_medians([
        (single_step(epp.LinearEnsemble(d, M, seed=0), X, rew), 5000),
        (single_step(NumpyLinearPolicy("ensemble", d, NumpyDraws(0), ensemble_size=M), X, rew), 500),
        (single_step(epp.LinearEnsemble(d, M, seed=0, dtype="float32"), X32, rew), 5000)], args.repeat)
    rows.append(("d=16 K=100 M=8 B=1", "NumPy reference step", core, ref, ref / core, ">= 10x faster", f32))

    d, K, M = 100, 10_000, 32
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    theta = rng.normal(size=d)
    X32 = X.astype(np.float32)
    core, bare, f32 = interleaved_medians([
        (single_step(epp.LinearEnsemble(d, M, seed=0), X, rew), 200),
        (lambda: X @ theta, 200),
        (single_step(epp.LinearEnsemble(d, M, seed=0, dtype="float32"), X32, rew), 200)], args.repeat)
    rows.append(("d=100 K=10000 M=32 B=1", "bare X @ theta", core, bare, core / bare,
                 "<= 1.2x the product (ratio = core/bare)", f32))

    B, d, M, K = 256, 64, 16, 100
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    idx = np.arange(B)

    def batched(agent, X: np.ndarray) -> Callable[[], None]:
        def step() -> None:
            a = agent.act(X)
            agent.update(X[a], rew[a])

        return step

    core, ref, f32 = interleaved_medians([
        (batched(epp.LinearEnsemble(d, M, n_agents=B, seed=0), X), 50),
        (batched(BatchedNumpyEnsemble(B, d, M), X), 20),
        (batched(epp.LinearEnsemble(d, M, n_agents=B, seed=0, dtype="float32"), X.astype(np.float32)), 50)],
        args.repeat)
    rows.append(("B=256 d=64 M=16 K=100", "batched NumPy einsum", core, ref, ref / core, ">= 5x faster", f32))
    del idx

    print(f"ensemblepp {epp.__version__} ({epp._core.ISA}), {epp._core.max_threads()} CPU threads, "
          f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeat} interleaved runs, CPU time")
    print(f"{'case':26s} {'baseline':22s} {'core/step':>12s} {'baseline':>12s} {'ratio':>8s}  {'float32/step':>12s}"
          f"  target")
    for case, base, c, b, ratio, target, f in rows:
        print(f"{case:26s} {base:22s} {c * 1e6:10.1f}us {b * 1e6:10.1f}us {ratio:7.2f}x  {f * 1e6:10.1f}us  {target}")
    print("(per agent-step for B=256: divide the batched step by 256)")


if __name__ == "__main__":
    main()
