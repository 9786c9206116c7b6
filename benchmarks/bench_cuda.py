"""Throughput of the CUDA backend against the CPU backend, and the update kernel's bandwidth.

Usage::

    python benchmarks/bench_cuda.py [--agents 1 1024 16384] [--dims 16 64 128]
                                    [--ensemble-size 16] [--actions 100] [--dtype float64]
                                    [--policy ensemble] [--no-cpu] [--json results.json]

For every (B, d): agent-steps per second of one full step (act over K shared actions, then
update with the chosen action) on cuda, with validation (two small waits per step) and without
(``validate=False``: no wait until the end), and on cpu; then the update kernel alone, timed with
CUDA events, as GB/s and as a fraction of the device's peak DRAM bandwidth
(``_cuda.device_info()['peak_bandwidth_gbs']``). The bytes an update must move per agent are
Sigma read and written (2 d^2), the factor read and written (2 d M), mu read and written
(2 d), x and r read (d + 1) -- times the element size -- plus the 8-byte counter read and
written. Exits with a message (status 1) where no CUDA device is usable.

With ``--production`` it measures the production loop instead (issue 12)::

    python benchmarks/bench_cuda.py --production [--no-cpu] [--json results.json]

* action probabilities, n_samples=1024, K=80 shared actions, d=20, for B = 1 and 1024 agents
  (Ensemble++ M=8 and 16, Thompson sampling; float32 and float64): milliseconds per call (one
  launch, then the (B, K) result copied to the host) and microseconds per agent, next to the CPU
  on one thread;
* ragged warm start, M=8, d = 16 and 64: observations per second for one agent with 10,000 rows
  and for B = 10,000 agents with 100 rows each in one call, without and with forgetting
  (gamma = 0.99), timed with CUDA events around the launches (``validate=False``, no waits),
  next to the CPU's ``warm_start`` on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

import ensemblepp as epp

POLICIES = {
    "ensemble": lambda d, M, **kw: epp.LinearEnsemble(d, M, **kw),
    "thompson": lambda d, M, **kw: epp.LinearTS(d, **kw),
    "ensemble_sampling": lambda d, M, **kw: epp.LinearEnsembleSampling(d, M, **kw),
    "ucb": lambda d, M, **kw: epp.LinUCB(d, **kw),
    "greedy": lambda d, M, **kw: epp.LinearGreedy(d, **kw),
}


def steps_per_second(step: Any, sync: Any, min_seconds: float, min_steps: int) -> float:
    """Steps per second of ``step``, after one warm-up step, over at least min_seconds."""
    step()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if n >= min_steps:
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                return n / elapsed


def gpu_case(policy: str, B: int, d: int, M: int, K: int, dtype: str, min_seconds: float) -> dict[str, float]:
    import cupy as cp  # noqa: PLC0415

    from ensemblepp._backend import cuda_module  # noqa: PLC0415

    rng = np.random.default_rng(0)
    X = cp.asarray(rng.normal(size=(K, d)) / np.sqrt(d), dtype=dtype)
    r = cp.asarray(rng.normal(size=B), dtype=dtype)
    agent = POLICIES[policy](d, M, n_agents=B, device="cuda", dtype=dtype, seed=0)
    kernel = agent._kernel
    sync = cp.cuda.get_current_stream().synchronize

    def step() -> None:
        a = agent.act(X)
        agent.update(X[a], r)

    out = {}
    kernel.validate = True
    out["cuda_steps_per_s"] = B * steps_per_second(step, sync, min_seconds, 5)
    kernel.validate = False
    out["cuda_nowait_steps_per_s"] = B * steps_per_second(step, sync, min_seconds, 5)

    # The update alone (memset, validation kernel, update kernel), timed on the device.
    x = cp.ascontiguousarray(X[cp.zeros(B, cp.int64)].reshape(B, 1, d))
    R = r.reshape(B, 1)
    kernel.update(x, R)
    n = 20
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(n):
        kernel.update(x, R)
    end.record()
    end.synchronize()
    seconds = cp.cuda.get_elapsed_time(start, end) / 1e3 / n
    size = np.dtype(dtype).itemsize
    has_factor = policy in ("ensemble", "ensemble_sampling")
    per_agent = size * (2 * d * d + (2 * d * M if has_factor else 0) + 2 * d + d + 1) + 16
    gbs = B * per_agent / seconds / 1e9
    peak = cuda_module().device_info(cp.cuda.Device().id)["peak_bandwidth_gbs"]
    out.update(update_us=seconds * 1e6, update_gbs=gbs, update_peak_fraction=gbs / peak)
    del agent, kernel
    cp.get_default_memory_pool().free_all_blocks()
    return out


def cpu_case(policy: str, B: int, d: int, M: int, K: int, dtype: str, min_seconds: float) -> float:
    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.normal(size=(K, d)) / np.sqrt(d), dtype=dtype)
    r = rng.normal(size=B).astype(dtype)
    agent = POLICIES[policy](d, M, n_agents=B, device="cpu", dtype=dtype, seed=0)

    def step() -> None:
        a = agent.act(X)
        agent.update(X[a], r)

    return B * steps_per_second(step, lambda: None, min_seconds, 3)


def _cpu_seconds(fn: Any, min_seconds: float) -> float:
    """Median CPU seconds of ``fn`` (process time: one thread, so the time the work takes)."""
    fn()
    times: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while len(times) < 3 or time.perf_counter() < t_end:
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
        if len(times) >= 50:
            break
    return float(np.median(times))


def _gpu_seconds(fn: Any, min_seconds: float) -> float:
    """Wall seconds per call of ``fn`` on the device (the calls end with a sync)."""
    import cupy as cp  # noqa: PLC0415

    sync = cp.cuda.get_current_stream().synchronize
    return 1.0 / steps_per_second(fn, sync, min_seconds, 3)


def production_probabilities(no_cpu: bool, min_seconds: float, batches: tuple[int, ...] = (1, 1024),
                             d: int = 20, K: int = 80, n: int = 1024) -> list[dict[str, Any]]:
    import cupy as cp  # noqa: PLC0415

    rng = np.random.default_rng(0)
    print(f"\n## Action probabilities: n_samples={n}, K={K}, d={d}")
    print("| policy | dtype | B | cuda ms per call | cuda us per agent | cpu (1 thread) ms per agent | speed-up per agent |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for policy, M in (("ensemble", 8), ("ensemble", 16), ("thompson", 1)):
        for dtype in ("float32", "float64"):
            for B in batches:
                X = rng.normal(size=(K, d)) / np.sqrt(d)
                x, r = rng.normal(size=(B, 5, d)) / np.sqrt(d), rng.normal(size=(B, 5))
                gpu = POLICIES[policy](d, M, n_agents=B, device="cuda", dtype=dtype, seed=0)
                gpu.update(x, r)
                Xg = cp.asarray(X, dtype=dtype)
                t_gpu = _gpu_seconds(lambda: gpu.action_probabilities(Xg, n_samples=n), min_seconds)
                t_cpu = float("nan")
                if not no_cpu:
                    cpu = POLICIES[policy](d, M, n_agents=min(B, 64), device="cpu", dtype=dtype, seed=0)
                    cpu.update(x[: min(B, 64)], r[: min(B, 64)])
                    Xc = X.astype(dtype)
                    t_cpu = _cpu_seconds(lambda: cpu.action_probabilities(Xc, n_samples=n), min_seconds) / min(B, 64)
                name = f"{policy} M={M}" if policy == "ensemble" else policy
                row = {"policy": name, "dtype": dtype, "B": B, "cuda_ms_per_call": t_gpu * 1e3,
                       "cuda_us_per_agent": t_gpu / B * 1e6, "cpu_ms_per_agent": t_cpu * 1e3}
                rows.append(row)
                print(f"| {name} | {dtype} | {B} | {t_gpu * 1e3:.3f} | {t_gpu / B * 1e6:.2f} | {t_cpu * 1e3:.3f} | "
                      f"{t_cpu / (t_gpu / B):.3g} |", flush=True)
                del gpu
                cp.get_default_memory_pool().free_all_blocks()
    return rows


def production_warm_start(no_cpu: bool, min_seconds: float, dims: tuple[int, ...] = (16, 64),
                          cases: tuple[tuple[int, int], ...] = ((1, 10_000), (10_000, 100))) -> list[dict[str, Any]]:
    import cupy as cp  # noqa: PLC0415

    M = 8
    rng = np.random.default_rng(1)
    print(f"\n## Ragged warm start: Ensemble++ M={M}, observations per second (one call per figure)")
    print("| d | dtype | B x rows | forgetting | cuda obs/s | cpu (1 thread) obs/s | speed-up |")
    print("|---:|---|---|---:|---:|---:|---:|")
    rows = []
    for d in dims:
        for dtype in ("float32", "float64"):
            for B, per in cases:
                for gamma in (1.0, 0.99):
                    N = B * per
                    x = (rng.normal(size=(N, d)) / np.sqrt(d)).astype(dtype)
                    r = rng.normal(size=N).astype(dtype)
                    offsets = np.arange(B + 1, dtype=np.int64) * per
                    gpu = epp.LinearEnsemble(d, M, n_agents=B, device="cuda", dtype=dtype, seed=0, forgetting=gamma)
                    kernel = gpu._kernel
                    kernel.validate = False
                    xg, rg = cp.asarray(x), cp.asarray(r)
                    kernel.update_ragged(xg, rg, offsets)  # warm-up
                    start, end = cp.cuda.Event(), cp.cuda.Event()
                    reps = 3
                    start.record()
                    for _ in range(reps):
                        kernel.update_ragged(xg, rg, offsets)
                    end.record()
                    end.synchronize()
                    t_gpu = cp.cuda.get_elapsed_time(start, end) / 1e3 / reps
                    t_cpu = float("nan")
                    if not no_cpu:
                        Bc = min(B, 100)  # the CPU figure from 100 agents (rows per agent as above)
                        cpu = epp.LinearEnsemble(d, M, n_agents=Bc, dtype=dtype, seed=0, forgetting=gamma)
                        xc, rc = x[: Bc * per], r[: Bc * per]
                        off_c = offsets[: Bc + 1]
                        t_cpu = _cpu_seconds(lambda: cpu.warm_start(xc, rc, off_c), min_seconds) / (Bc * per)
                        t_cpu *= N
                    row = {"d": d, "dtype": dtype, "B": B, "rows_per_agent": per, "forgetting": gamma,
                           "cuda_obs_per_s": N / t_gpu, "cpu_obs_per_s": N / t_cpu}
                    rows.append(row)
                    print(f"| {d} | {dtype} | {B} x {per} | {gamma} | {N / t_gpu:.3g} | {N / t_cpu:.3g} | "
                          f"{t_cpu / t_gpu:.3g} |", flush=True)
                    del gpu, kernel, xg, rg
                    cp.get_default_memory_pool().free_all_blocks()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, nargs="+", default=[1, 1024, 16384])
    p.add_argument("--dims", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--ensemble-size", type=int, default=16)
    p.add_argument("--actions", type=int, default=100)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--policy", choices=list(POLICIES), default="ensemble")
    p.add_argument("--seconds", type=float, default=0.5, help="minimum timed seconds per figure")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU figures")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--production", action="store_true",
                   help="measure action probabilities and the ragged warm start instead (issue 12)")
    args = p.parse_args(argv)

    try:
        from ensemblepp._backend import cuda_module  # noqa: PLC0415

        cuda = cuda_module()
    except RuntimeError as exc:
        print(f"bench_cuda.py: nothing to measure: {exc}", file=sys.stderr)
        return 1
    info = cuda.device_info(0)
    if args.production:
        print(f"device: {info['name']} (sm_{info['compute_capability'][0]}{info['compute_capability'][1]})")
        result = {"probabilities": production_probabilities(args.no_cpu, args.seconds),
                  "warm_start": production_warm_start(args.no_cpu, args.seconds)}
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": info, "args": vars(args), **result}, f, indent=2)
        return 0
    print(f"device: {info['name']} (sm_{info['compute_capability'][0]}{info['compute_capability'][1]}), "
          f"peak {info['peak_bandwidth_gbs']:.0f} GB/s; policy {args.policy}, M={args.ensemble_size}, "
          f"K={args.actions} shared actions, {args.dtype}")
    header = (f"{'B':>6} {'d':>4} {'cuda steps/s':>13} {'no-wait':>13} {'cpu steps/s':>13} {'speed-up':>9} "
              f"{'update us':>10} {'GB/s':>8} {'of peak':>8}")
    print(header)
    rows = []
    for B in args.agents:
        for d in args.dims:
            g = gpu_case(args.policy, B, d, args.ensemble_size, args.actions, args.dtype, args.seconds)
            c = float("nan") if args.no_cpu else cpu_case(args.policy, B, d, args.ensemble_size, args.actions,
                                                         args.dtype, args.seconds)
            row = {"B": B, "d": d, **g, "cpu_steps_per_s": c}
            rows.append(row)
            print(f"{B:>6} {d:>4} {g['cuda_steps_per_s']:>13.4g} {g['cuda_nowait_steps_per_s']:>13.4g} {c:>13.4g} "
                  f"{g['cuda_nowait_steps_per_s'] / c:>9.3g} {g['update_us']:>10.1f} {g['update_gbs']:>8.1f} "
                  f"{g['update_peak_fraction']:>8.1%}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": info, "args": vars(args), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
