"""Time the compiled core against plain NumPy implementations of the same algorithm, in one run.

Usage: ``python benchmarks/compare_numpy.py [--repeat N]``. Prints medians per full step
(act + update) of float64 agents and the ratios that the project's targets are stated in, with
the same step of a float32 agent beside it (its cost per agent-step):

1. d=16, K=100, M=8, B=1: compiled step vs the NumPy reference (target >= 10x faster);
2. d=100, K=10000, M=32, B=1: compiled step vs the bare product ``X @ theta`` (target <= 1.2x);
3. B=256, d=64, M=16, K=100: batched compiled step vs batched NumPy einsum (target >= 5x faster).

Every case is timed twice, the timings of a case interleaved within each (slow phases of a shared
machine hit all of them alike):

- **one thread, CPU time**: the kernels limited to one thread (``set_num_threads(1)``), timed as
  CPU time of the process, which a time slice given to another job does not inflate: the cost of
  the arithmetic;
- **default threads, wall time**: the kernels with the threads they use by default (OpenMP's
  limit; only calls with enough work, such as the B=256 batch, use more than one), timed by the
  wall clock: what a user's loop waits for.

NumPy's own BLAS is limited to one thread (``OPENBLAS_NUM_THREADS=1`` unless set otherwise): its
steps here are no faster with more (einsum runs on one thread; the products are small), and
OpenBLAS workers spin for a while after each call, taking the cores from the compiled timings that
follow (measured on two cores: a B=256 step of 0.99 and 2.34 ms in two runs, 0.50 ms with one
OpenBLAS thread).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS; see the docstring

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import ensemblepp as epp  # noqa: E402
from ensemblepp import _core  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the NumPy reference, a test yardstick
from reference import BatchedNumpyEnsemble, NumpyDraws, NumpyLinearPolicy  # noqa: E402


def interleaved_medians(steps: list[tuple[Callable[[], None], int]], repeat: int,
                        clock: Callable[[], float]) -> list[float]:
    """Median seconds per call of each ``(step, n)`` by ``clock``: every repetition times ``n``
    calls of each step in turn."""
    for step, _ in steps:
        step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for k, (step, n) in enumerate(steps):
            t0 = clock()
            for _ in range(n):
                step()
            times[k].append((clock() - t0) / n)
    return [statistics.median(t) for t in times]


def single_step(agent, X: np.ndarray, rewards: np.ndarray) -> Callable[[], None]:
    def step() -> None:
        a = agent.act(X)
        agent.update(X[a], rewards[a])

    return step


def cases(rng: np.random.Generator) -> list[tuple[str, str, list[tuple[Callable[[], None], int]], bool, str]]:
    """The three cases: (name, baseline, [compiled, baseline, compiled float32 step with call counts],
    whether the ratio is baseline/compiled, target)."""
    out = []
    d, K, M = 16, 100, 8
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    out.append(("d=16 K=100 M=8 B=1", "NumPy reference step", [
        (single_step(epp.LinearEnsemble(d, M, seed=0), X, rew), 5000),
        (single_step(NumpyLinearPolicy("ensemble", d, NumpyDraws(0), ensemble_size=M), X, rew), 500),
        (single_step(epp.LinearEnsemble(d, M, seed=0, dtype="float32"), X.astype(np.float32), rew), 5000)],
        True, ">= 10x faster"))

    d, K, M = 100, 10_000, 32
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    theta = rng.normal(size=d)
    out.append(("d=100 K=10000 M=32 B=1", "bare X @ theta", [
        (single_step(epp.LinearEnsemble(d, M, seed=0), X, rew), 200),
        (lambda X=X, theta=theta: X @ theta, 200),  # bound now: X is reassigned below
        (single_step(epp.LinearEnsemble(d, M, seed=0, dtype="float32"), X.astype(np.float32), rew), 200)],
        False, "<= 1.2x the product (ratio = core/bare)"))

    B, d, M, K = 256, 64, 16, 100
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    out.append(("B=256 d=64 M=16 K=100", "batched NumPy einsum", [
        (single_step(epp.LinearEnsemble(d, M, n_agents=B, seed=0), X, rew), 50),
        (single_step(BatchedNumpyEnsemble(B, d, M), X, rew), 20),
        (single_step(epp.LinearEnsemble(d, M, n_agents=B, seed=0, dtype="float32"), X.astype(np.float32), rew), 50)],
        True, ">= 5x faster"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions (median taken)")
    args = parser.parse_args()
    default_threads = epp.get_num_threads()
    protocols = [("one thread, CPU time", 1, time.process_time)]
    if default_threads > 1:
        protocols.append((f"default threads ({default_threads}), wall time", default_threads, time.perf_counter))
    print(f"ensemblepp {epp.__version__} ({_core.ISA}), OpenBLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}; medians of {args.repeat} interleaved runs")
    for title, threads, clock in protocols:
        epp.set_num_threads(threads)
        rows = []
        for case, base, steps, faster, target in cases(np.random.default_rng(0)):
            core, ref, f32 = interleaved_medians(steps, args.repeat, clock)
            rows.append((case, base, core, ref, ref / core if faster else core / ref, target, f32))
        print(f"\n{title}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'case':26s} {'baseline':22s} {'core/step':>12s} {'baseline':>12s} {'ratio':>8s}"
              f"  {'float32/step':>12s}  target")
        for case, base, c, b, ratio, target, f in rows:
            print(f"{case:26s} {base:22s} {c * 1e6:10.1f}us {b * 1e6:10.1f}us {ratio:7.2f}x  {f * 1e6:10.1f}us"
                  f"  {target}")
    epp.set_num_threads(default_threads)
    print("(per agent-step for B=256: divide the batched step by 256)")


if __name__ == "__main__":
    main()
