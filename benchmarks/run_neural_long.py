"""Long runs of the neural presets, one results file per agent as soon as it finishes.

Runs the agents of the ``quadratic`` or ``neural-bandit`` preset (``--set
paper``: the paper's scales and SGD steps with every baseline in its official
form; ``--set tuned``: the agents at the defaults chosen by
``benchmarks/sweep_neural.py``) through :func:`ensemblepp.experiments.run_experiment`,
all seeds of an agent in one :class:`~ensemblepp.neural.MultiSeed` batch, and
writes ``OUT/<env>-<set>-<agent>.json`` (a :class:`Results` file) after each
agent, so that a run stopped early still leaves the finished agents.
``--summary`` prints the table of every file in ``OUT``.

Usage::

    python benchmarks/run_neural_long.py --env quadratic --set paper --horizon 20000 --seeds 5 --out DIR
    python benchmarks/run_neural_long.py --summary --out DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from ensemblepp.experiments import run_experiment
from ensemblepp.experiments.results import Results
from ensemblepp.experiments.presets import neural_agent_set


def _slug(label: str) -> str:
    # "+" is spelled out so that Ensemble++ and Ensemble+ get different file names.
    return re.sub(r"[^a-z0-9]+", "-", label.lower().replace("+", "p")).strip("-")


def run(env: str, which: str, horizon: int, n_seeds: int, out: Path, only: list[str] | None) -> None:
    agents = neural_agent_set(env, which)
    out.mkdir(parents=True, exist_ok=True)
    for agent in agents:
        if only and not any(o in agent["label"] for o in only):
            continue
        path = out / f"{env}-{which}-{_slug(agent['label'])}.json"
        if path.exists():
            print(f"skip {path} (exists)", flush=True)
            continue
        t0 = time.perf_counter()
        res = run_experiment({"name": f"{env}-{which}", "horizon": horizon, "n_seeds": n_seeds, "seed": 0,
                              "environment": {"name": env}, "agents": [agent]}, progress=False)
        res.save(path, fmt="json")
        final = res.regret[agent["label"]].sum(axis=1)
        print(f"{env} {which} {agent['label']}: {final.mean():.1f} ± {final.std(ddof=1) / np.sqrt(len(final)):.1f} "
              f"in {time.perf_counter() - t0:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)


def summary(outs: list[Path], marks: tuple[int, ...] = (3000, 5000, 10000, 20000)) -> None:
    """Print one table row per agent of every results file in the folders ``outs``."""
    rows = []
    for out in outs:
        for path in sorted(out.glob("*.json")):
            res = Results.load(path)
            for lab in res.agents:
                cum = res.cumulative_regret(lab)
                final = cum[:, -1]
                T = cum.shape[1]
                half = cum[:, -1] - cum[:, T // 2 - 1]
                at = [f"{cum[:, t - 1].mean():.1f}" if t <= T else "" for t in marks]
                which = "tuned" if "-tuned-" in path.stem else "paper"
                rows.append((res.config["environment"]["name"], which, lab, T, len(final), final.mean(),
                             final.std(ddof=1) / np.sqrt(len(final)), at, half.mean(),
                             1e3 * res.seconds_per_step[lab] / len(final)))
    print("| environment | set | agent | T | seeds | final regret | " + " | ".join(f"regret at t={t}" for t in marks)
          + " | regret in the 2nd half | ms per seed-step |")
    print("| --- | --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in marks) + " | ---: | ---: |")
    for env, which, lab, T, n, m, se, at, half, ms in sorted(rows):
        print(f"| {env} | {which} | {lab} | {T} | {n} | {m:.1f} ± {se:.1f} | " + " | ".join(at)
              + f" | {half:.1f} | {ms:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=("quadratic", "neural-bandit"), default="quadratic")
    parser.add_argument("--set", dest="which", choices=("paper", "tuned"), default="paper")
    parser.add_argument("--horizon", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="run only agents whose label contains one of these")
    parser.add_argument("--out", type=Path, nargs="+", required=True,
                        help="results folder (--summary: one or more)")
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.summary:
        summary(args.out)
    else:
        if len(args.out) != 1:
            parser.error("a run writes to one --out folder")
        run(args.env, args.which, args.horizon, args.seeds, args.out[0], args.only)


if __name__ == "__main__":
    main()
