"""Paired comparison of ensemblepp's neural agents with the authors' own code.

The authors' implementation (szrlee/Ensemble_Plus_Plus) is not part of this
repository and is never imported by the package. Obtain it yourself, outside
the clone, e.g.::

    git clone https://github.com/szrlee/Ensemble_Plus_Plus /tmp/official

and pass its source folder with ``--official``. This script drives the
official agent class (``agent.nonlinear_sol.Ensemble_exp_Solution`` with
``model_type`` ``"ensemble++"``, ``"ensemble"`` or ``"epinet"``, the settings
of its ``scripts/run_nonlinear.py``) and ensemblepp's agents on the same
ensemblepp environment instances with the same reward noise: for every seed
``s`` both codes meet ``make_environment(env, seed=s)``. The environment's
context and noise streams do not depend on the actions, so the two regrets of
one seed are paired.

Only the official ``network`` modules the three agents need are loaded (the
LLM network needs ``transformers`` and ``loralib``), and its logger is
replaced by a silent one. Two shims keep the official code running under
NumPy 2, which it predates: its Ensemble+ ``int(np.where(z == 1)[1])`` (a
one-element array, an error since NumPy 2) sees a ``np.where`` that returns
0-d arrays for one hit, and its index draws (``float32 array * np.sqrt(M)``,
float64 under NumPy 2's promotion rules, which the float32 network rejects)
are cast back to float32 as NumPy 1 did. Nothing else of the official code is
changed. The
loop is that of the official ``agent/solution.py``: act on the argmax of
``predict`` (random tie-breaking), ``put`` the transition, and from
``t >= update_start`` (0-based) run ``update_num`` updates every
``update_freq`` steps. ensemblepp gets ``update_start + 1`` because it counts
observations, not steps, so both train first after the same observation.

Usage::

    python benchmarks/official_compare.py --official /tmp/official --env quadratic \\
        --horizon 2000 --seeds 0 1 2 3 4 [--agents ensemble++ ensemble+ epinet] \\
        [--style official] [--json out.json]

It prints, per agent, the mean final cumulative regret and its standard error
for both codes, and the paired difference (ensemblepp - official) with its
standard error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemblepp.envs import make_environment

# The paper's settings per environment (scripts/run_nonlinear.py of the official code).
PAPER = {
    "quadratic": {"prior_scale": 5.0, "posterior_scale": 1.0, "n_updates": 4, "update_every": 1},
    "neural-bandit": {"prior_scale": 0.2, "posterior_scale": 0.1, "n_updates": 10, "update_every": 1},
}
COMMON = {"ensemble_size": 8, "lr": 1e-4, "batch_size": 128, "weight_decay": 0.01,
          "buffer_capacity": 10000, "update_start": 128, "perturbation_scale": 0.01,
          "hidden": (64, 64), "n_index_samples": 16}
# Official agent: (model_type, action noise, update noise, buffer noise), from run_nonlinear.py.
OFFICIAL_KIND = {
    "ensemble++": ("ensemble++", "sp", "pm", "sp"),
    "ensemble+": ("ensemble", "oh", "oh", "gs"),
    "epinet": ("epinet", "gs", "gs", "sp"),
}


class _SilentLogger:
    def info(self, *args: Any, **kwargs: Any) -> None:
        pass


class _NumpyOneHit:
    """NumPy, except that ``where`` returns 0-d index arrays when there is exactly one hit."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def where(*args: Any) -> Any:
        out = np.where(*args)
        if len(args) == 1 and all(a.size == 1 for a in out):
            return tuple(a.reshape(()) for a in out)
        return out


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_official(root: Path) -> Any:
    """Import the official ``Ensemble_exp_Solution`` from the source folder ``root``."""
    needed = [root / "agent" / "nonlinear_sol.py", root / "utils.py", root / "network" / "ensemble_exp.py",
              root / "network" / "ensemble_ori.py", root / "network" / "epinet.py"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise SystemExit(f"--official {root}: not the Ensemble_Plus_Plus source folder (missing {missing})")
    logger = types.ModuleType("logger")
    logger.Logger = _SilentLogger  # type: ignore[attr-defined]
    logger.configure = lambda *a, **k: _SilentLogger()  # type: ignore[attr-defined]
    sys.modules["logger"] = logger
    _load_file("utils", root / "utils.py")
    network = types.ModuleType("network")
    network.__path__ = []  # type: ignore[attr-defined]
    sys.modules["network"] = network
    network.Ensemble_exp_Net = _load_file("network.ensemble_exp", root / "network" / "ensemble_exp.py").Ensemble_exp_Net
    ori = _load_file("network.ensemble_ori", root / "network" / "ensemble_ori.py")
    ori.np = _NumpyOneHit()  # type: ignore[attr-defined]
    network.EnsembleNet = ori.EnsembleNet
    network.EpiNet = _load_file("network.epinet", root / "network" / "epinet.py").EpiNet
    return _load_file("official_nonlinear_sol", root / "agent" / "nonlinear_sol.py").Ensemble_exp_Solution


def run_official(solution_cls: Any, kind: str, env_name: str, seed: int, horizon: int,
                 settings: dict[str, Any]) -> float:
    """Final cumulative regret of the official agent on instance ``seed``."""
    model_type, action_noise, update_noise, buffer_noise = OFFICIAL_KIND[kind]
    # The official code draws from NumPy's and torch's global generators.
    np.random.seed(10_000 + seed)
    torch.manual_seed(10_000 + seed)
    import random
    random.seed(10_000 + seed)
    env = make_environment(env_name, seed=seed)
    agent = solution_cls(
        env.n_actions, env.dim, noise_dim=COMMON["ensemble_size"], NpS=COMMON["n_index_samples"],
        noise_coef=COMMON["perturbation_scale"], buffer_noise=buffer_noise, action_noise=action_noise,
        update_noise=update_noise, prior_scale=settings["prior_scale"],
        posterior_scale=settings["posterior_scale"], based_prior=False, feature_sg=True,
        hidden_sizes=list(COMMON["hidden"]), ensemble_sizes=[], class_num=1, optim="Adam",
        lr=COMMON["lr"], batch_size=COMMON["batch_size"], weight_decay=COMMON["weight_decay"],
        buffer_size=COMMON["buffer_capacity"], model_type=model_type, logger=_SilentLogger())
    for name in ("gen_action_noise", "gen_update_noise"):
        draw = getattr(agent, name)
        setattr(agent, name, lambda *a, _draw=draw, **k: np.asarray(_draw(*a, **k), dtype=np.float32))
    total = 0.0
    rd_argmax = sys.modules["utils"].rd_argmax
    for t in range(horizon):
        feats = env.actions().astype(np.float32)
        value = np.asarray(agent.predict(feats)).reshape(-1)
        a = int(rd_argmax(value))
        r, g = env.step(a)
        total += float(g)
        agent.put({"f": feats[a], "r": np.float32(r), "a": a})
        if t >= COMMON["update_start"] and (t + 1) % settings["update_every"] == 0:
            for _ in range(settings["n_updates"]):
                agent.update()
    return total


def run_ours(kind: str, env_name: str, seed: int, horizon: int, settings: dict[str, Any],
             style: str) -> float:
    """Final cumulative regret of ensemblepp's agent on instance ``seed``."""
    from ensemblepp.neural import EnsemblePlus, EpiNet, NeuralEnsemble

    env = make_environment(env_name, seed=seed)
    opts = {k: COMMON[k] for k in ("ensemble_size", "lr", "batch_size", "weight_decay", "buffer_capacity",
                                   "perturbation_scale", "hidden")}
    opts.update(update_start=COMMON["update_start"] + 1, n_updates=settings["n_updates"],
                update_every=settings["update_every"], prior_scale=settings["prior_scale"],
                posterior_scale=settings["posterior_scale"], style=style, seed=20_000 + seed)
    if kind == "ensemble++":
        agent: Any = NeuralEnsemble(env.dim, **opts)
    elif kind == "ensemble+":
        agent = EnsemblePlus(env.dim, **opts)
    else:
        agent = EpiNet(env.dim, n_index_samples=COMMON["n_index_samples"], **opts)
    total = 0.0
    for _ in range(horizon):
        feats = env.actions()
        a = agent.act(feats)
        r, g = env.step(a)
        total += float(g)
        agent.update(feats[a], r)
    return total


def _mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def _print_table(docs: list[dict[str, Any]]) -> None:
    print("\n| environment | T | SGD steps | seeds | agent | official | ensemblepp | paired diff "
          "| within 2 SE | ms/step official | ms/step ensemblepp |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | :---: | ---: | ---: |")
    for doc in docs:
        for kind, r in doc["rows"].items():
            print(f"| {doc['env']} | {doc['horizon']} | {doc['settings']['n_updates']} | {len(doc['seeds'])} | "
                  f"{kind} ({doc['style']}) | {r['official_mean']:.1f} ± {r['official_se']:.1f} | "
                  f"{r['ensemblepp_mean']:.1f} ± {r['ensemblepp_se']:.1f} | "
                  f"{r['diff_mean']:+.1f} ± {r['diff_se']:.1f} | {'yes' if r['within_2se'] else 'no'} | "
                  f"{r['ms_per_step_official']:.2f} | {r['ms_per_step_ensemblepp']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path,
                        help="source folder of szrlee/Ensemble_Plus_Plus (git clone it yourself)")
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of earlier --json files and exit")
    parser.add_argument("--env", choices=sorted(PAPER), default="quadratic")
    parser.add_argument("--horizon", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--agents", nargs="+", choices=sorted(OFFICIAL_KIND), default=sorted(OFFICIAL_KIND))
    parser.add_argument("--style", choices=("official", "ensemblepp"), default="official",
                        help="ensemblepp style compared with the official code")
    parser.add_argument("--n-updates", type=int, help="SGD steps per step for both codes (default: the paper's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every per-seed regret here")
    args = parser.parse_args(argv)
    if args.table:
        _print_table([json.loads(p.read_text()) for p in args.table])
        return 0
    if args.official is None:
        parser.error("--official is required (the source folder of the authors' code)")
    torch.set_num_threads(args.threads)
    solution_cls = load_official(args.official.expanduser().resolve())
    settings = dict(PAPER[args.env])
    if args.n_updates is not None:
        settings["n_updates"] = args.n_updates
    rows: dict[str, Any] = {}
    print(f"{args.env}: T={args.horizon}, seeds {args.seeds}, paper settings {settings}, "
          f"ensemblepp style={args.style!r}", flush=True)
    for kind in args.agents:
        off, ours, secs = [], [], [0.0, 0.0]
        for s in args.seeds:
            t0 = time.perf_counter()
            off.append(run_official(solution_cls, kind, args.env, s, args.horizon, settings))
            t1 = time.perf_counter()
            ours.append(run_ours(kind, args.env, s, args.horizon, settings, args.style))
            t2 = time.perf_counter()
            secs[0] += t1 - t0
            secs[1] += t2 - t1
            print(f"  {kind} seed {s}: official {off[-1]:.1f} ({t1 - t0:.0f} s), "
                  f"ensemblepp {ours[-1]:.1f} ({t2 - t1:.0f} s)", flush=True)
        mo, so = _mean_se(off)
        me, se_ = _mean_se(ours)
        md, sd = _mean_se([a - b for a, b in zip(ours, off)])
        within = abs(md) <= 2 * sd
        rows[kind] = {"official": off, "ensemblepp": ours, "official_mean": mo, "official_se": so,
                      "ensemblepp_mean": me, "ensemblepp_se": se_, "diff_mean": md, "diff_se": sd,
                      "within_2se": bool(within),
                      "ms_per_step_official": 1e3 * secs[0] / (len(args.seeds) * args.horizon),
                      "ms_per_step_ensemblepp": 1e3 * secs[1] / (len(args.seeds) * args.horizon)}
    doc = {"env": args.env, "horizon": args.horizon, "seeds": args.seeds, "style": args.style,
           "settings": settings, "rows": rows}
    _print_table([doc])
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
