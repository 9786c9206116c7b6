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

``--stage check`` runs given configurations on held-out environments
(other sizes, reward scales, classification, UCI Mushroom; see ``HELD_OUT``);
a configuration ``["greedy", {...}]`` is the greedy network with other
options than the reference greedy's (e.g. the tuned agents' learning rate).

The stages run in separate processes (one per environment and agent if you
like), each writing a JSON table; later stages read the earlier files.

Usage::

    python benchmarks/sweep_neural.py --stage 1 --env quadratic --agent epinet --json s1-q-epinet.json
    python benchmarks/sweep_neural.py --stage 2 --env quadratic --inputs s1-*.json --json s2-q.json
    python benchmarks/sweep_neural.py --stage table --inputs s1-*.json s2-*.json
    python benchmarks/sweep_neural.py --stage check --configs chosen.json --json check.json
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
        for a, o in configs:
            if a == "greedy":  # greedy with other options than the reference's (e.g. its lr)
                agents.append({"name": "neural-greedy", "label": _label(a, o), "n_updates": 1, **o, **extra})
            else:
                agents.append({"name": AGENTS[a], "label": _label(a, o), **BASE, **o, **extra})
        t0 = time.perf_counter()
        out = _run(env, agents, horizon, n_seeds)
        log(f"{env_name}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}")
        for lab, v in out.items():
            table.setdefault(lab, {})[env_name] = v
    return table


def _merge(paths: list[Path]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for path in paths:
        for lab, vals in json.loads(path.read_text())["table"].items():
            table.setdefault(lab, {}).update(vals)
    return table


def _rel(table: dict[str, dict[str, float]], lab: str, envs: list[str]) -> float:
    return float(np.mean([table[lab][e] / table["greedy"][e] for e in envs]))


def best_configs(table: dict[str, dict[str, float]], envs: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The best stage-1 configuration of every agent (lowest mean regret relative to greedy)."""
    best = {}
    for a in AGENTS:
        cands = [(a, {"prior_scale": p, "lr": lr, "style": "official"}) for p, lr in itertools.product(PRIORS, LRS)]
        cands = [c for c in cands if _label(*c) in table and all(e in table[_label(*c)] for e in envs)]
        if cands:
            best[a] = min(cands, key=lambda c: _rel(table, _label(*c), envs))
    return best


def stage2_configs(best: dict[str, tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for a, (_, o) in best.items():
        if o["prior_scale"] == min(PRIORS):  # the best prior is at the grid's edge: look one step past it
            out.append((a, {**o, "prior_scale": round(o["prior_scale"] / 3, 4)}))
        out.append((a, {**o, "style": "ensemblepp"}))
        if a in ("ensemble++", "epinet"):
            out.append((a, {**o, "posterior_scale": 0.1}))
        if a == "ensemble++":
            out.append((a, {**o, "reference": "gaussian"}))
    return out


def print_table(table: dict[str, dict[str, float]], envs: list[str]) -> None:
    print("\n| configuration | " + " | ".join(envs) + " | mean regret / greedy |")
    print("| --- | " + " | ".join("---:" for _ in envs) + " | ---: |")
    rows = [(_rel(table, lab, envs), lab, vals) for lab, vals in table.items() if all(e in vals for e in envs)]
    for r, lab, vals in sorted(rows):
        print(f"| {lab} | " + " | ".join(f"{vals[e]:.1f}" for e in envs) + f" | {r:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizon", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--stage", choices=("1", "2", "table", "check"), default="1")
    parser.add_argument("--env", nargs="+", help="environments to run (default: all of the stage)")
    parser.add_argument("--agent", nargs="+", choices=sorted(AGENTS), help="stage 1 and 2: agents to sweep")
    parser.add_argument("--control", action="store_true", help="stage 2: re-run each stage-1 best as well")
    parser.add_argument("--inputs", type=Path, nargs="*", default=[], help="earlier JSON files (stage 2, table)")
    parser.add_argument("--configs", type=Path, help="JSON list of [agent, options] for --stage check")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def log(msg: str) -> None:
        print(msg, flush=True)

    pool = HELD_OUT if args.stage == "check" else TUNING
    envs = {e: pool[e] for e in (args.env or list(pool))}
    if args.stage == "1":
        agents = args.agent or list(AGENTS)
        configs = [(a, {"prior_scale": p, "lr": lr, "style": "official"})
                   for a in agents for p, lr in itertools.product(PRIORS, LRS)]
        table = score(configs, envs, args.horizon, args.seeds, log)
    elif args.stage == "2":
        earlier = _merge(args.inputs)
        best = best_configs(earlier, list(TUNING))
        if args.agent:
            best = {a: c for a, c in best.items() if a in args.agent}
        log("best stage-1 configurations: " + "; ".join(_label(*c) for c in best.values()))
        configs = stage2_configs(best)
        if args.control:  # the stage-1 best again: shows that stage 1 reproduces with this code
            configs = list(best.values()) + configs
        table = score(configs, envs, args.horizon, args.seeds, log)
    elif args.stage == "check":
        configs = [tuple(c) for c in json.loads(args.configs.read_text())]
        table = score(configs, envs, args.horizon, args.seeds, log)
    else:
        table = _merge(args.inputs)
        print_table(table, list(TUNING))
        return
    print_table(table, list(envs))
    if args.json is not None:
        args.json.write_text(json.dumps({"horizon": args.horizon, "n_seeds": args.seeds, "envs": list(envs),
                                         "table": table}, indent=1))


if __name__ == "__main__":
    main()
