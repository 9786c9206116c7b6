"""Sweep of the neural agents' hyperparameters, every agent on the same budget.

Stage 1: for each of Ensemble++, Ensemble+ and EpiNet, ``prior_scale`` x
``lr`` (with ``style="official"``, one optimiser step per observation).
Stage 2: at each agent's best stage-1 point, the other choices: the
``"ensemblepp"`` style (initial laws, Ensemble+ index scale, EpiNet shared
indices), the acting-index distribution of Ensemble++ and the posterior
scale. Every configuration runs on the tuning environments (the quadratic
and the neural regression bandit at their default sizes) for the same
horizon and seeds; the score of a configuration is its final regret divided
by that of the greedy network, averaged over the tuning environments.

``--check`` instead runs given configurations on held-out environments
(other sizes, reward scales, classification; see ``HELD_OUT``).

Usage::

    python benchmarks/sweep_neural.py --horizon 2000 --seeds 3 --json sweep.json
    python benchmarks/sweep_neural.py --check --horizon 2000 --seeds 3 --json check.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemblepp.experiments import run_experiment

TUNING = {"quadratic": {"name": "quadratic"}, "neural-bandit": {"name": "neural-bandit"}}
HELD_OUT = {
    "quadratic d=50 K=20": {"name": "quadratic", "dim": 50, "n_actions": 20},
    "quadratic reward x10": {"name": "quadratic", "scale": 0.1, "noise_std": 1.0},
    "neural-bandit d=50 K=20": {"name": "neural-bandit", "dim": 50, "n_actions": 20},
    "quadratic reward x0.1": {"name": "quadratic", "scale": 0.001, "noise_std": 0.01},
    "neural-classification": {"name": "neural-classification"},
    "mushroom (UCI)": {"name": "mushroom"},
}
AGENTS = {"ensemble++": "neural-ensemble++", "ensemble+": "ensemble+", "epinet": "epinet"}
PRIORS = (0.1, 0.3, 1.0, 3.0)
LRS = (1e-4, 1e-3)
BASE = {"ensemble_size": 8, "n_updates": 1}


def _run(env: dict[str, Any], agents: list[dict[str, Any]], horizon: int, n_seeds: int) -> dict[str, float]:
    res = run_experiment({"name": "sweep", "horizon": horizon, "n_seeds": n_seeds, "seed": 0,
                          "environment": env, "agents": agents}, progress=False)
    return {lab: float(res.regret[lab].sum(axis=1).mean()) for lab in res.agents}


def _label(agent: str, opts: dict[str, Any]) -> str:
    return agent + " " + " ".join(f"{k}={v}" for k, v in sorted(opts.items()))


def _env_options(env: dict[str, Any], agent: str) -> dict[str, Any]:
    if env["name"] == "neural-classification":
        return {"loss": "ce", "n_outputs": 2}
    return {}


def score(configs: list[tuple[str, dict[str, Any]]], envs: dict[str, dict[str, Any]], horizon: int,
          n_seeds: int, log: Any) -> dict[str, Any]:
    """Final regret of every configuration and of greedy on every environment."""
    table: dict[str, dict[str, float]] = {}
    for env_name, env in envs.items():
        env = dict(env)
        extra = _env_options(env, "")
        agents = [{"name": "neural-greedy", "label": "greedy", "n_updates": 1, **extra}]
        agents += [{"name": AGENTS[a], "label": _label(a, o), **BASE, **o, **extra} for a, o in configs]
        t0 = time.perf_counter()
        out = _run(env, agents, horizon, n_seeds)
        log(f"{env_name}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}")
        for lab, v in out.items():
            table.setdefault(lab, {})[env_name] = v
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizon", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="run --configs on the held-out environments")
    parser.add_argument("--configs", type=Path, help="JSON list of [agent, options] for --check")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.check:
        configs = [tuple(c) for c in json.loads(args.configs.read_text())]
        table = score(configs, HELD_OUT, args.horizon, args.seeds, log)
        envs = list(HELD_OUT)
    else:
        stage1 = [(a, {"prior_scale": p, "lr": lr, "style": "official"})
                  for a in AGENTS for p, lr in itertools.product(PRIORS, LRS)]
        table = score(stage1, TUNING, args.horizon, args.seeds, log)
        envs = list(TUNING)

        def rel(lab: str) -> float:
            return float(np.mean([table[lab][e] / table["greedy"][e] for e in envs]))

        best = {a: min((c for c in stage1 if c[0] == a), key=lambda c: rel(_label(*c))) for a in AGENTS}
        stage2 = []
        for a, (_, o) in best.items():
            stage2.append((a, {**o, "style": "ensemblepp"}))
            if a in ("ensemble++", "epinet"):
                stage2.append((a, {**o, "posterior_scale": 0.1}))
            if a == "ensemble++":
                stage2.append((a, {**o, "reference": "gaussian"}))
        table.update(score(stage2, TUNING, args.horizon, args.seeds, log))
    envs_all = envs
    print(f"\n| configuration | " + " | ".join(envs_all) + " | mean regret / greedy |")
    print("| --- | " + " | ".join("---:" for _ in envs_all) + " | ---: |")
    rows = []
    for lab, vals in table.items():
        r = float(np.mean([vals[e] / table["greedy"][e] for e in envs_all]))
        rows.append((r, lab, vals))
    for r, lab, vals in sorted(rows):
        print(f"| {lab} | " + " | ".join(f"{vals[e]:.1f}" for e in envs_all) + f" | {r:.3f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"horizon": args.horizon, "n_seeds": args.seeds, "envs": envs_all,
                                         "table": table}, indent=1))


if __name__ == "__main__":
    main()
