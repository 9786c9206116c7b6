"""Throughput of ShardedPolicy against the in-process batched agent, and Ray's per-call overhead.

For U users (default 1e5; d = 32, M = 8, K = 10 actions per request, float32) every request
picks n distinct random users (n = 1, 64, 4096), and one *agent-step* is one act plus one
update of one user. Compared, interleaved round by round:

* ``batched kernel``: an in-process batched LinearEnsemble of exactly n agents (B = n), act +
  update: the compiled core's ceiling, with no user lookup;
* ``shard in-process``: one :class:`ShardState` holding all U users, no Ray: the ceiling of the
  sharded design (user lookup, gather and write-back of the n users' rows);
* ``ray S shard(s)``: :class:`ShardedPolicy` with S actors (one remote call per shard per act and
  per update).

It also prints the round trip of an empty actor call (the fixed cost per remote call) and the
populate rate (new users, 4096 per call). Each actor uses one compiled-core thread, as does the
in-process code.

Usage::

    python benchmarks/bench_distributed.py [--users 100000] [--rounds 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--ensemble-size", type=int, default=8)
    ap.add_argument("--actions", type=int, default=10)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 4096])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.6, help="time per (implementation, batch) per round")
    args = ap.parse_args()

    import ray

    import ensemblepp as epp
    from ensemblepp.distributed import ShardedPolicy
    from ensemblepp.distributed._ids import user_ids
    from ensemblepp.distributed._shard import ShardState

    epp.set_num_threads(1)
    d, M, K, U = args.dim, args.ensemble_size, args.actions, args.users
    opts = {"dim": d, "ensemble_size": M, "dtype": args.dtype}
    ids = np.arange(U, dtype=np.uint64) * np.uint64(7919) + np.uint64(12345)  # arbitrary integer user ids
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ray.init(num_cpus=max(2, max(args.shards)), include_dashboard=False, log_to_driver=False)
    print(f"ray {ray.__version__} started in {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()}")

    # ---- build the users ------------------------------------------------------------------
    impls: dict[str, object] = {}
    populate: dict[str, float] = {}
    A0 = np.zeros((K, d), args.dtype)
    state = ShardState("LinearEnsemble", opts, 0)
    t0 = time.perf_counter()
    for i, lo in enumerate(range(0, U, 4096)):
        state.act(i + 1, user_ids(ids[lo:lo + 4096]), A0, None)
    populate["shard in-process"] = U / (time.perf_counter() - t0)
    impls["shard in-process"] = state
    for S in args.shards:
        p = ShardedPolicy(epp.LinearEnsemble, n_shards=S, seed=0, threads=1, **opts)
        t0 = time.perf_counter()
        for lo in range(0, U, 4096):
            p.act(ids[lo:lo + 4096], A0)
        populate[f"ray {S} shard(s)"] = U / (time.perf_counter() - t0)
        impls[f"ray {S} shard(s)"] = p
    row_bytes = sum(a.nbytes for a in state.export(user_ids(ids[:1]))[0].values())
    print(f"{U} users, d={d}, M={M}, K={K}, {args.dtype}: {row_bytes} bytes of state per user "
          f"({row_bytes * U / 2**20:.0f} MiB per copy)")
    print("populate (new users per second, 4096 per call): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in populate.items()))

    # ---- empty round trip ---------------------------------------------------------------------
    actor = impls[f"ray {args.shards[0]} shard(s)"].actors[0]  # type: ignore[attr-defined]
    for _ in range(20):
        ray.get(actor.info.remote())
    rtt = []
    for _ in range(300):
        t0 = time.perf_counter()
        ray.get(actor.info.remote())
        rtt.append(time.perf_counter() - t0)
    print(f"empty actor call round trip: median {1e3 * statistics.median(rtt):.3f} ms, "
          f"p90 {1e3 * float(np.quantile(rtt, 0.9)):.3f} ms")

    # ---- interleaved rounds -----------------------------------------------------------------
    seq = {"n": U // 4096 + 10}

    def step(name: str, n: int) -> None:
        users = ids[rng.choice(U, n, replace=False)]
        A = rng.standard_normal((n, K, d)).astype(args.dtype)
        r = rng.standard_normal(n)
        if name == "batched kernel":
            agent = kernels[n]
            a = agent.act(A)
            agent.update(A[np.arange(n), a], r)
        elif name == "shard in-process":
            u = user_ids(users)
            seq["n"] += 1
            a = state.act(seq["n"], u, A, None)
            seq["n"] += 1
            state.update(seq["n"], u, A[np.arange(n), a].astype(np.float64), r)
        else:
            p = impls[name]
            a = p.act(users, A)  # type: ignore[attr-defined]
            p.update(users, A[np.arange(n), a], r)  # type: ignore[attr-defined]

    kernels = {n: epp.LinearEnsemble(d, M, n_agents=n, seed=0, dtype=args.dtype) for n in args.batches}
    names = ["batched kernel", *impls]
    per_call: dict[tuple[str, int], list[float]] = {(m, n): [] for m in names for n in args.batches}
    for name in names:  # warm up
        for n in args.batches:
            step(name, n)
    for _ in range(args.rounds):
        for n in args.batches:
            for name in names:
                calls, t0 = 0, time.perf_counter()
                while True:
                    step(name, n)
                    calls += 1
                    el = time.perf_counter() - t0
                    if el > args.seconds and calls >= 2:
                        break
                per_call[(name, n)].append(el / calls)
    print(f"\nload average after: {os.getloadavg()}")
    durability(state, ids, rng, args)
    print(f"\n| implementation | users per request | agent-steps/s | ms per request (act + update) | vs batched kernel |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for n in args.batches:
        base = statistics.median(per_call[("batched kernel", n)])
        for name in names:
            t = statistics.median(per_call[(name, n)])
            print(f"| {name} | {n} | {n / t:,.0f} | {1e3 * t:.3f} | {t / base:.1f}x |")
    one = f"ray {args.shards[0]} shard(s)"
    for n in args.batches:
        extra = statistics.median(per_call[(one, n)]) - statistics.median(per_call[("shard in-process", n)])
        print(f"overhead of Ray per request of {n} user(s), {one} (2 remote calls): {1e3 * extra:.3f} ms "
              f"({1e3 * extra / 2:.3f} ms per call)")
    ray.shutdown()


def durability(state, ids: np.ndarray, rng: np.random.Generator, args: argparse.Namespace) -> None:
    """Checkpoint write and read rates, log bytes per observation, replay rate (one shard)."""
    import shutil
    import tempfile
    from pathlib import Path

    from ensemblepp.distributed._ids import user_ids
    from ensemblepp.distributed._shard import ShardState

    opts = {"dim": args.dim, "ensemble_size": args.ensemble_size, "dtype": args.dtype}
    folder = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    try:
        t0 = time.perf_counter()
        state.checkpoint(folder)  # a snapshot of every user
        write = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        t0 = time.perf_counter()
        durable = ShardState("LinearEnsemble", opts, 0, folder)
        read = time.perf_counter() - t0
        log = next(folder.glob("log-*.bin"))
        start_bytes = log.stat().st_size
        n, calls, K, d = 4096, 20, args.actions, args.dim
        seq = durable.seq
        for _ in range(calls):
            u = user_ids(ids[rng.choice(len(ids), n, replace=False)])
            A = rng.standard_normal((n, K, d)).astype(args.dtype)
            seq += 1
            a = durable.act(seq, u, A, None)
            seq += 1
            durable.update(seq, u, A[np.arange(n), a].astype(np.float64), rng.standard_normal(n))
        durable.close()
        per_obs = (log.stat().st_size - start_bytes) / (n * calls)
        again = ShardState("LinearEnsemble", opts, 0, folder)
        again.close()
        replay = again.recovered["replay_seconds"]
        print(f"\ndurability, one shard of {state.n_users} users: checkpoint {size / 2**20:.0f} MiB written in "
              f"{write:.2f} s ({size / 2**20 / write:.0f} MiB/s), loaded in {read:.2f} s; log {per_obs:.0f} bytes per "
              f"observation (act + update record); replay of {calls} x (act + update) of {n} users: {replay:.2f} s "
              f"({n * calls / max(replay, 1e-9):,.0f} observations/s)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
