"""How far a float32 linear agent drifts from a float64 twin fed the same observations.

Usage: ``python benchmarks/float32_accuracy.py [--steps 1000000] [--replays 400000]``.

Part 1, every policy: one float32 agent acts on K fixed actions of a linear bandit (d, M, K as
in issue 9: 32, 16, 100) for ``--steps`` steps; a float64 agent with the same seed receives the
same observations (the float32 agent's choices and rewards). At the end it prints, from the two
states (both evaluated in float64 from their stored factors):

- the smallest eigenvalue of Sigma, float32 over float64 (target: within 10%);
- the relative error of the posterior mean |mu32 - mu64| / |mu64| (target: below 1e-3);
- the largest action-value error max_k |x_k.(mu32 - mu64)| over the best-action gap of the
  float64 mean (target: below 1%);
- the largest error of the mean in units of the posterior standard deviation along each
  eigenvector of the float64 Sigma (how much the error matters statistically).

Part 2, the replayed arm: ``--replays`` nearly identical actions (one arm plus 1e-4 noise) at
d=20; x' Sigma x of the float32 agent against the exact float64 value of the same sums
(target: within 10%).

The figures are recorded in docs/design.md (state representation).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import ensemblepp as epp

POLICIES = {
    "LinearEnsemble": lambda **kw: epp.LinearEnsemble(ensemble_size=16, **kw),
    "LinearTS": lambda **kw: epp.LinearTS(**kw),
    "LinearEnsembleSampling": lambda **kw: epp.LinearEnsembleSampling(ensemble_size=16, **kw),
    "LinUCB": lambda **kw: epp.LinUCB(alpha=1.0, **kw),
    "LinearGreedy": lambda **kw: epp.LinearGreedy(**kw),
}


def posterior64(agent) -> tuple[np.ndarray, np.ndarray]:
    """Mean (stored in float64) and covariance (from the stored root L, Sigma = L^T L in float64).

    Agents of ensemblepp 0.1.0 (covariance form, ``--baseline`` runs) report their stored
    mean and covariance instead.
    """
    state = agent._state_arrays()
    if "cov_root" not in state:
        return np.asarray(agent.mean, np.float64), np.asarray(agent.covariance, np.float64)
    L = np.tril(state["cov_root"][0].astype(np.float64))
    return state["mean"][0], L.T @ L


def drift(name: str, steps: int, d: int = 32, K: int = 100, seed: int = 0, chunk: int = 2000) -> dict[str, float]:
    """Runs the float32 agent and its float64 twin; the three figures of part 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d)) / math.sqrt(d)
    theta = rng.normal(size=d)
    X32 = X.astype(np.float32)
    a32 = POLICIES[name](dim=d, dtype="float32", seed=seed)
    a64 = POLICIES[name](dim=d, dtype="float64", seed=seed)
    noise = rng.normal(size=steps)
    xs = np.empty((chunk, d), np.float32)
    rs = np.empty(chunk, np.float32)
    for t0 in range(0, steps, chunk):
        n = min(chunk, steps - t0)
        for j in range(n):
            k = a32.act(X32)
            r = float(np.float32(X[k] @ theta + noise[t0 + j]))
            a32.update(X32[k], r)
            xs[j], rs[j] = X32[k], r
        a64.update(xs[:n].astype(np.float64), rs[:n].astype(np.float64))
    m32, S32 = posterior64(a32)
    m64, S64 = posterior64(a64)
    values = np.sort(X @ m64)
    gap = values[-1] - values[-2]
    w, V = np.linalg.eigh(S64)
    return {
        "err_std": float(np.max(np.abs(V.T @ (m32 - m64)) / np.sqrt(w))),
        "eig_ratio": float(np.linalg.eigvalsh(S32)[0] / np.linalg.eigvalsh(S64)[0]),
        "eig64": float(np.linalg.eigvalsh(S64)[0]),
        "mean_rel": float(np.linalg.norm(m32 - m64) / np.linalg.norm(m64)),
        "value_gap": float(np.max(np.abs(X @ (m32 - m64))) / gap),
    }


def replayed_arm(replays: int, d: int = 20, seed: int = 0, chunk: int = 10000) -> dict[str, float]:
    """x' Sigma x after ``replays`` nearly identical actions, float32 agent vs exact float64."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=d)
    x /= np.linalg.norm(x)
    agent = epp.LinearEnsemble(d, 16, dtype="float32", seed=seed)
    gram = np.zeros((d, d))
    for t0 in range(0, replays, chunk):
        n = min(chunk, replays - t0)
        xs = (x + 1e-4 * rng.normal(size=(n, d))).astype(np.float32)
        agent.update(xs, np.zeros(n, np.float32))
        x64 = xs.astype(np.float64)
        gram += x64.T @ x64
    exact = x @ np.linalg.solve(np.eye(d) / 10.0 + gram, x)  # prior_var 10, noise_std 1
    _, S32 = posterior64(agent)
    return {"exact": float(exact), "float32": float(x @ S32 @ x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--replays", type=int, default=400_000)
    parser.add_argument("--policies", nargs="*", default=list(POLICIES))
    args = parser.parse_args()
    print(f"ensemblepp {epp.__version__} from {epp.__file__}")
    print(f"float32 vs float64, d=32, M=16, K=100, {args.steps} steps")
    print(f"{'policy':24s} {'lambda_min 32/64':>17s} {'mean rel. error':>16s} {'value err / gap':>16s} "
          f"{'err / post. std':>16s} {'seconds':>8s}")
    for name in args.policies:
        t0 = time.perf_counter()
        r = drift(name, args.steps)
        print(f"{name:24s} {r['eig_ratio']:17.4f} {r['mean_rel']:16.2e} {r['value_gap']:16.2e} "
              f"{r['err_std']:16.2e} {time.perf_counter() - t0:8.0f}", flush=True)
    r = replayed_arm(args.replays)
    print(f"replayed arm, d=20, {args.replays} replays: x' Sigma x float32 {r['float32']:.4e}, exact {r['exact']:.4e}, "
          f"ratio {r['float32'] / r['exact']:.4f}")


if __name__ == "__main__":
    main()
