"""Production-loop benchmarks (issue 12): action probabilities, ragged warm start, forgetting.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_production.py [--quick] [--part probs|warm|forget]

Prints three tables:

* the time to estimate action probabilities (n_samples draws, K actions, dimension d) per
  agent, for one agent and batched over B agents, on one thread;
* warm-start throughput (observations per second) for one agent and for B agents with 100
  logged rows each, in one ``warm_start`` call, on one thread, next to the step-by-step
  batched ``update`` of the same rows (one row per agent per call);
* forgetting in float32 over 1e6 steps against the same agent in float64: finiteness, the
  smallest eigenvalue of the precision, and the relative error of mean and covariance.

Times are CPU time of this process (``time.process_time``), medians of repeats: on a shared,
overloaded machine wall-clock time mostly measures the other jobs. Report them with the load
average (``uptime``); they are one-thread figures, so CPU time is the time the work takes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import ensemblepp as epp
from ensemblepp import _core


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def _agent(policy: str, d: int, M: int, n_agents=None, dtype="float64", **kw):
    if policy == "ensemble":
        return epp.LinearEnsemble(d, M, n_agents=n_agents, dtype=dtype, seed=0, **kw)
    cls = {"thompson": epp.LinearTS, "ensemble_sampling": epp.LinearEnsembleSampling,
           "ucb": epp.LinUCB, "greedy": epp.LinearGreedy}[policy]
    if policy == "ensemble_sampling":
        return cls(d, M, n_agents=n_agents, dtype=dtype, seed=0, **kw)
    return cls(d, n_agents=n_agents, dtype=dtype, seed=0, **kw)


def bench_probabilities(quick: bool) -> None:
    d, K, n = 20, 80, 1024
    rng = np.random.default_rng(0)
    print(f"\n## Action probabilities: n_samples={n}, K={K}, d={d}, one thread")
    print("| policy | dtype | B | ms per call | ms per agent |")
    print("|---|---|---:|---:|---:|")
    batches = [1, 16, 256] if quick else [1, 16, 256, 1024]
    for policy, M in (("ensemble", 8), ("ensemble", 16), ("thompson", 0), ("ensemble_sampling", 16),
                      ("ucb", 0), ("greedy", 0)):
        for dtype in ("float64", "float32"):
            for B in batches:
                agent = _agent(policy, d, max(M, 1), n_agents=None if B == 1 else B, dtype=dtype)
                X0 = rng.normal(size=(200, d)) / np.sqrt(d)
                xs = np.broadcast_to(X0, (B, 200, d)) if B > 1 else X0
                agent.update(xs, np.broadcast_to(rng.normal(size=200), (B, 200)) if B > 1 else rng.normal(size=200))
                X = (rng.normal(size=(K, d)) / np.sqrt(d)).astype(dtype)
                agent.action_probabilities(X, n_samples=n)
                reps = max(3, min(50, int(200 / B)))
                t = _median_time(lambda: agent.action_probabilities(X, n_samples=n), reps)
                label = policy + (f" M={M}" if M else "")
                print(f"| {label} | {dtype} | {B} | {1e3 * t:.3f} | {1e3 * t / B:.4f} |")


def bench_warm_start(quick: bool) -> None:
    M = 8
    print(f"\n## Warm start (ragged, one call), M={M}, one thread: observations per second")
    print("| policy | d | agents x rows | warm_start obs/s | step-by-step update obs/s | ratio |")
    print("|---|---:|---|---:|---:|---:|")
    rng = np.random.default_rng(1)
    cases = [(16, 1, 100_000), (16, 10_000, 100), (64, 1, 20_000), (64, 10_000, 100)]
    if quick:
        cases = [(16, 1, 20_000), (16, 1000, 100), (64, 1, 5_000), (64, 1000, 100)]
    for policy in ("ensemble", "thompson"):
        for d, B, rows in cases:
            N = B * rows
            x = rng.normal(size=(N, d)) / np.sqrt(d)
            r = rng.normal(size=N)
            offsets = np.arange(B + 1, dtype=np.int64) * rows

            def ragged():
                agent = _agent(policy, d, M, n_agents=None if B == 1 else B)
                t0 = time.process_time()
                agent.warm_start(x, r, None if B == 1 else offsets)
                return time.process_time() - t0

            def stepwise():
                agent = _agent(policy, d, M, n_agents=None if B == 1 else B)
                xs, rs = x.reshape(B, rows, d), r.reshape(B, rows)
                steps = min(rows, 20 if B > 1 else 2000)
                t0 = time.process_time()
                for j in range(steps):
                    if B == 1:
                        agent.update(xs[0, j], float(rs[0, j]))
                    else:
                        agent.update(xs[:, j], rs[:, j])
                return (time.process_time() - t0) * rows / steps

            t_r = np.median([ragged() for _ in range(3)])
            t_s = np.median([stepwise() for _ in range(3)])
            print(f"| {policy} | {d} | {B} x {rows} | {N / t_r:.3g} | {N / t_s:.3g} | {t_s / t_r:.1f} |")


def bench_forgetting(quick: bool) -> None:
    steps = 100_000 if quick else 1_000_000
    d, M, gamma = 10, 8, 0.999
    print(f"\n## Forgetting over {steps:.0e} float32 steps (d={d}, gamma={gamma}) against float64")
    print("| policy | step | finite | min eig P (f32) | max rel err mean | max rel err cov | max eig Sigma / prior var |")
    print("|---|---:|---|---:|---:|---:|---:|")
    rng = np.random.default_rng(2)
    for policy in ("thompson", "ensemble"):
        a32 = _agent(policy, d, M, dtype="float32", forgetting=gamma)
        a64 = _agent(policy, d, M, forgetting=gamma)
        chunk = steps // 10
        theta = rng.normal(size=d)
        for c in range(10):
            x = rng.normal(size=(chunk, d))
            x[:, -2:] = 0.0  # two directions never excited: forgetting must not wind them up
            theta = theta + 0.01 * rng.normal(size=d)
            r = x @ theta + rng.normal(size=chunk)
            a32.warm_start(x, r)
            a64.warm_start(x, r)
            U = a32.precision_factor.astype(np.float64)
            S32, S64 = a32.covariance.astype(np.float64), a64.covariance
            m32, m64 = a32.mean.astype(np.float64), a64.mean
            finite = bool(np.all(np.isfinite(U)) and np.all(np.isfinite(a32.mean)))
            err_m = np.max(np.abs(m32 - m64)) / np.max(np.abs(m64))
            err_s = np.max(np.abs(S32 - S64)) / np.max(np.abs(S64))
            min_eig = np.linalg.eigvalsh(U.T @ U).min()
            print(f"| {policy} | {(c + 1) * chunk} | {finite} | {min_eig:.3g} | {err_m:.2e} | {err_s:.2e} | "
                  f"{np.linalg.eigvalsh(S64).max() / 10.0:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    p.add_argument("--part", choices=["probs", "warm", "forget"], action="append")
    args = p.parse_args()
    _core.set_max_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"threads: {_core.max_threads()}, load average: {os.getloadavg()}")
    parts = args.part or ["probs", "warm", "forget"]
    if "probs" in parts:
        bench_probabilities(args.quick)
    if "warm" in parts:
        bench_warm_start(args.quick)
    if "forget" in parts:
        bench_forgetting(args.quick)


if __name__ == "__main__":
    main()
