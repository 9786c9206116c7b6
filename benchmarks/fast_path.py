"""Single-agent fast path: the cost of the per-agent lock and of input conversion.

Usage: ``python benchmarks/fast_path.py``. Prints, in one run:

- the time of one uncontended ``std::mutex`` try_lock + unlock pair, as the kernels take it on
  every call (a small C++ program, compiled with the C++ compiler that built the package, or
  ``$CXX``), next to the time of one act + update step of a single agent (d=16, K=100, M=8):
  the lock's share of the step is two pairs over the step;
- ``act`` on actions of the agent's dtype, of another dtype (converted once, explicitly, no
  exception on the way) and in big-endian byte order.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ensemblepp as epp

LOCK_BENCH = r"""
#include <chrono>
#include <cstdio>
#include <mutex>
int main() {
  std::mutex m;
  const long n = 20000000;
  volatile long sink = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    std::unique_lock<std::mutex> lock(m, std::try_to_lock);
    sink = sink + lock.owns_lock();
  }
  auto t1 = std::chrono::steady_clock::now();
  std::printf("%.3f\n", std::chrono::duration<double, std::nano>(t1 - t0).count() / n);
}
"""


def lock_pair_ns() -> float | None:
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "lock.cpp", Path(tmp) / "lock"
        src.write_text(LOCK_BENCH)
        subprocess.run([cxx, "-O2", "-pthread", str(src), "-o", str(exe)], check=True)
        return statistics.median(float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
                                 for _ in range(5))


def per_call(f, n: int = 20000, repeat: int = 7) -> float:
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    d, K, M = 16, 100, 8
    X = rng.normal(size=(K, d))
    rew = rng.normal(size=K)
    agent = epp.LinearEnsemble(d, M, seed=0)

    def step() -> None:
        a = agent.act(X)
        agent.update(X[a], float(rew[a]))

    step_s = per_call(step)
    lock = lock_pair_ns()
    print(f"ensemblepp {epp.__version__} ({epp._core.ISA}), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"single-agent step (act + update, d={d}, K={K}, M={M}): {step_s * 1e6:.2f} us")
    if lock is not None:
        print(f"uncontended lock (try_lock + unlock): {lock:.1f} ns; two per step = {200 * lock * 1e-9 / step_s:.2f}% "
              "of the step")
    a32 = epp.LinearEnsemble(d, M, seed=0, dtype="float32")
    for label, actions in (("float32 actions", X.astype(np.float32)), ("float64 actions (converted)", X),
                           ("big-endian >f4 (converted)", X.astype(">f4"))):
        print(f"float32 agent, act on {label:28s} {per_call(lambda a=actions: a32.act(a)) * 1e6:7.2f} us")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
