"""The ``obd-ope`` preset: off-policy evaluation on the Open Bandit Dataset.

``ensemblepp run --preset obd-ope`` reads the small Open Bandit Dataset
(:func:`ensemblepp.datasets.load_obd`: three campaigns, each logged once by a
uniform random policy and once by Bernoulli Thompson sampling, 10,000
impressions per file, about 0.4% clicks) and reports, per campaign:

(a) the on-policy click rate of each logging policy, with its binomial interval;
(b) the value of the uniform random policy estimated from the Bernoulli TS logs
    by IPS, SNIPS, DM and DR, against the random policy's own on-policy click
    rate (the ground truth this data set was built for), with relative errors
    and 95% intervals;
(c) linear Ensemble++ (M=8), exact TS and greedy trained on the random-policy
    logs by replay (Li et al. 2011: act on every impression, learn only when the
    choice equals the logged item) and evaluated by replay and by the
    estimators, using the agents' probabilities of the logged items.

Features (:func:`ensemblepp.datasets.obd_features`): per item a constant, the
standardised ``item_feature_0``, the one-hot hashed ``item_feature_1..3``, and
the user-item affinity of the impression. User features are left out of the
agents' action vectors because a term shared by every item cannot change a
linear policy's choice. Agents use a Gaussian model for 0/1 clicks with
``noise_std = 0.1`` (a click's standard deviation is about 0.06) and prior
variance 0.01 per coefficient; these were fixed before looking at any result.

Reward model of DM and DR: the click rate of each item, shrunk towards the
overall rate by a Beta prior worth 200 impressions, cross-fitted on two folds
(even and odd rows; each row is predicted from the other fold) so that a row's
own click never enters its prediction.

Action probabilities of the learned policies go through one function,
:func:`action_probabilities`: the agents' own ``action_probabilities`` (issue
12, item 1) with ties going to the first index, as ``act`` breaks them, so that
the policy evaluated is the one that acted. Greedy and LinUCB are exact;
Thompson-type agents are estimated from ``n_samples`` posterior draws of a
separate random stream, so the acting agent's stream is never advanced. Each
probability then has Monte Carlo standard error at most
``sqrt(p (1 - p) / n_samples)``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import ope
from ..datasets import OBD_CAMPAIGNS, BanditLog, OBDFeatures, load_obd, obd_features
from ..linear import LinearEnsemble, LinearEnsembleSampling, LinearGreedy, LinearPolicy, LinearTS, LinUCB
from .presets import PresetContext
from .runner import ConfigError

__all__ = ["action_probabilities", "ActionProbabilities", "item_ctr_model", "dm_refit_bootstrap", "replay_run",
           "obd_ope_report", "format_report", "AGENT_SPECS"]

#: The agents of part (c): label -> (class, options).
AGENT_SPECS: dict[str, tuple[type, dict[str, Any]]] = {
    "Ensemble++ (M=8)": (LinearEnsemble, {"ensemble_size": 8}),
    "exact TS": (LinearTS, {}),
    "greedy": (LinearGreedy, {}),
}
PRIOR_VAR = 0.01
NOISE_STD = 0.1


# ---- action probabilities ---------------------------------------------------------------


class ActionProbabilities:
    """The probability that an agent's current policy picks each action.

    A thin wrapper of :meth:`~ensemblepp.linear.LinearPolicy.action_probabilities`
    with ``ties="first"`` (the policy evaluated is the one that acted: ``act``
    keeps the first of tied maxima, so an untrained greedy agent plays item 0).

    Parameters
    ----------
    agent : LinearPolicy
        A single (unbatched) CPU agent.
    n_samples : int, default 256
        Posterior draws per call (Ensemble++ and Thompson sampling; greedy,
        LinUCB and ensemble sampling are exact).
    seed : int, default 0
        Kept for the preset's interface; the draws come from the agent's own
        probability stream (keyed by its seed, stream id and step), so they
        never advance the stream the agent acts with.
    """

    def __init__(self, agent: LinearPolicy, n_samples: int = 256, seed: int = 0) -> None:
        if agent.n_agents is not None:
            raise ValueError("agent: expected a single agent (n_agents=None)")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        self.agent = agent
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        exact = isinstance(agent, (LinearGreedy, LinUCB, LinearEnsembleSampling))
        self.method = "exact" if exact else f"monte-carlo ({n_samples} draws)"

    def refresh(self) -> None:
        """Nothing to do: every call reads the agent's current state."""

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        """Probabilities ``(K,)`` of the actions ``(K, d)``."""
        X = np.asarray(actions, dtype=np.float64)
        return self.agent.action_probabilities(X, n_samples=self.n_samples, ties="first")


def action_probabilities(agent: LinearPolicy, actions: Any, *, n_samples: int = 256, seed: int = 0) -> np.ndarray:
    """Probability that ``agent`` picks each of ``actions`` (K, d) now: ``(K,)``.

    :meth:`~ensemblepp.linear.LinearPolicy.action_probabilities` with ties
    going to the first index, as ``act`` breaks them. Monte Carlo entries have
    standard error ``sqrt(p (1 - p) / n_samples)``.
    """
    return ActionProbabilities(agent, n_samples, seed)(actions)


# ---- reward model -----------------------------------------------------------------------


def item_ctr_model(log: BanditLog, strength: float = 200.0) -> np.ndarray:
    """Cross-fitted per-item click rates ``(n, K)`` for DM and DR.

    Rows are split into two folds (even and odd positions in the file); the
    rows of one fold get the other fold's click rate of every item,
    ``(clicks_k + strength * c) / (shown_k + strength)``, where ``c`` is that
    fold's overall click rate.
    """
    n, K = len(log), log.n_actions
    fold = np.arange(n) % 2
    out = np.empty((n, K))
    for f in (0, 1):
        train = fold != f
        shown = np.bincount(log.action[train], minlength=K)
        clicks = np.bincount(log.action[train], weights=log.reward[train], minlength=K)
        rate = log.reward[train].mean()
        out[fold == f] = (clicks + strength * rate) / (shown + strength)
    return out


def dm_refit_bootstrap(log: BanditLog, policy: np.ndarray, *, strength: float = 200.0, n_bootstrap: int = 200,
                       level: float = 0.95, seed: int = 0) -> ope.Estimate:
    """DM with :func:`item_ctr_model` and a bootstrap that refits the model on every resample.

    :func:`ensemblepp.ope.dm` only sees the spread of its per-row terms, which
    for a per-item model and a context-free policy is nearly zero; resampling
    the rows *and refitting the model* also carries the model's estimation
    error (though not its misspecification) into the interval.

    Parameters
    ----------
    log : BanditLog
        The logs the model is fitted on and the policy evaluated over.
    policy : numpy.ndarray
        (n, K) the evaluated policy's probabilities.
    strength, n_bootstrap, level, seed
        Shrinkage of :func:`item_ctr_model`; resamples, confidence level and seed of the bootstrap.

    Returns
    -------
    Estimate
        ``value`` is the DM estimate on the data as logged; ``low`` / ``high``
        the percentile interval and ``stderr`` the bootstrap standard deviation.
    """
    n, K = len(log), log.n_actions
    fold = np.arange(n) % 2

    def value(idx: np.ndarray) -> float:
        total = 0.0
        for f in (0, 1):
            train = idx[fold[idx] != f]
            shown = np.bincount(log.action[train], minlength=K)
            clicks = np.bincount(log.action[train], weights=log.reward[train], minlength=K)
            q = (clicks + strength * log.reward[train].mean()) / (shown + strength)
            total += float((policy[idx[fold[idx] == f]] @ q).sum())
        return total / idx.shape[0]

    rng = np.random.default_rng(seed)
    boot = np.array([value(rng.integers(0, n, n)) for _ in range(int(n_bootstrap))])
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return ope.Estimate("dm", value(np.arange(n)), float(boot.std(ddof=1)), float(lo), float(hi), float(level), n,
                        "bootstrap (model refitted)")


# ---- replay -----------------------------------------------------------------------------


def replay_run(agent: LinearPolicy, log: BanditLog, feats: OBDFeatures, *, n_samples: int = 256,
               seed: int = 0) -> dict[str, Any]:
    """Train ``agent`` on a uniformly logged ``log`` by replay and record its policy.

    At every impression ``t`` the agent's probabilities of all items are
    recorded (state before ``t``), then it acts; when its choice equals the
    logged item it learns that impression's click.

    Returns
    -------
    dict
        ``chosen`` (n,), ``policy`` (n, K), ``matched`` (int), ``method`` (how
        the probabilities were obtained) and ``seconds``.
    """
    log.validate()
    n, K = len(log), log.n_actions
    if feats.affinity.shape != (n, K) or feats.item.shape[0] != K:
        raise ValueError(f"feats: encodes {feats.affinity.shape[0]} impressions of {feats.item.shape[0]} items, "
                         f"the log has {n} of {K}")
    if agent.dim != feats.dim():
        raise ValueError(f"agent: dim {agent.dim} does not match the features' width {feats.dim()}")
    chosen = np.empty(n, dtype=np.int64)
    policy = np.empty((n, K))
    probs = ActionProbabilities(agent, n_samples, seed)
    matched = 0
    start = time.perf_counter()
    for t in range(n):
        X = feats.actions(t)
        policy[t] = probs(X)
        a = int(agent.act(X))
        chosen[t] = a
        if a == log.action[t]:
            agent.update(X[a], float(log.reward[t]))
            probs.refresh()
            matched += 1
    return {"chosen": chosen, "policy": policy, "matched": matched, "method": probs.method,
            "seconds": time.perf_counter() - start}


# ---- the report -------------------------------------------------------------------------


def _head(log: BanditLog, rows: int) -> BanditLog:
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 2:
        raise ValueError(f"max_rows must be an int >= 2, got {rows!r}")
    cut = slice(0, int(rows))
    return BanditLog(log.behaviour, log.campaign, log.n_actions, log.action[cut], log.position[cut],
                     log.reward[cut], log.propensity[cut], log.timestamp[cut], log.user_features[cut],
                     log.affinity[cut], log.item_numeric, log.item_categorical)


def _rate(reward: np.ndarray) -> dict[str, Any]:
    e = ope.wilson(reward, estimator="on-policy")
    return {"value": e.value, "stderr": e.stderr, "low": e.low, "high": e.high, "n": e.n}


def _est(e: ope.Estimate, truth: float | None = None) -> dict[str, Any]:
    out = {"value": e.value, "stderr": e.stderr, "low": e.low, "high": e.high, "n": e.n}
    if truth is not None:
        out["relative_error"] = e.relative_error(truth)
        out["covers_truth"] = e.covers(truth)
    return out


def _estimators(log: BanditLog, target: np.ndarray, policy: np.ndarray, predicted: np.ndarray,
                seed: int = 0) -> dict[str, ope.Estimate]:
    dm = ope.dm(policy, predicted)
    refit = dm_refit_bootstrap(log, policy, seed=seed)
    if abs(refit.value - dm.value) > 1e-12 * max(1.0, abs(dm.value)):  # the same model, so the same value
        raise AssertionError(f"DM by ope.dm ({dm.value}) and by the refit bootstrap ({refit.value}) differ")
    return {
        "IPS": ope.ips(log.reward, log.propensity, target),
        "SNIPS": ope.snips(log.reward, log.propensity, target),
        "DM": refit,
        "DR": ope.dr(log.reward, log.propensity, log.action, policy, predicted),
    }


def obd_ope_report(campaigns: tuple[str, ...] = ("all", "men", "women"), *, data_dir: Any = None,
                   download: bool = True, n_samples: int = 256, seeds: tuple[int, ...] = (0,),
                   agents: tuple[str, ...] = tuple(AGENT_SPECS), max_rows: int | None = None,
                   log: Any = print) -> dict[str, Any]:
    """Compute the three parts of the ``obd-ope`` preset (see the module docstring).

    Parameters
    ----------
    campaigns : tuple of str
        Subset of ``("all", "men", "women")``.
    data_dir : path-like, optional
        Folder with ``obd/...`` (else ``ENSEMBLEPP_DATA``, the cache, or a download).
    download : bool, default True
        Download missing files.
    n_samples : int, default 256
        Posterior draws per impression for the Monte Carlo probabilities.
    seeds : tuple of int, default (0,)
        Agent seeds of part (c); each is a full replay pass.
    agents : tuple of str
        Labels of :data:`AGENT_SPECS` to run in part (c).
    max_rows : int, optional
        Use only the first ``max_rows`` impressions of each random log in part (c).
    log : callable
        Receives progress lines.

    Returns
    -------
    dict
        ``on_policy``, ``uniform_from_bts`` and ``replay`` tables, JSON-serialisable.
    """
    unknown = sorted(set(campaigns) - set(OBD_CAMPAIGNS))
    if unknown or not campaigns:
        raise ValueError(f"campaigns must be a non-empty subset of {list(OBD_CAMPAIGNS)}, got {list(campaigns)}")
    bad_agents = sorted(set(agents) - set(AGENT_SPECS))
    if bad_agents:
        raise ValueError(f"agents: unknown {bad_agents}; known: {list(AGENT_SPECS)}")
    on_policy: list[dict[str, Any]] = []
    uniform: list[dict[str, Any]] = []
    replay: list[dict[str, Any]] = []
    for campaign in campaigns:
        logs = {b: load_obd(b, campaign, data_dir, download=download) for b in ("random", "bts")}
        K = OBD_CAMPAIGNS[campaign]
        for b, lg in logs.items():
            on_policy.append({"campaign": campaign, "behaviour": b, "clicks": int(lg.reward.sum()),
                              **_rate(lg.reward)})
        truth = float(logs["random"].reward.mean())
        bts = logs["bts"]
        n = len(bts)
        est = _estimators(bts, np.full(n, 1.0 / K), np.full((n, K), 1.0 / K), item_ctr_model(bts))
        uniform.append({"campaign": campaign, "truth": _rate(logs["random"].reward),
                        "max_weight": float((1.0 / K / bts.propensity).max()),
                        "estimates": {k: _est(e, truth) for k, e in est.items()}})
        rnd = logs["random"] if max_rows is None else _head(logs["random"], max_rows)
        feats = obd_features(rnd)
        predicted = item_ctr_model(rnd)
        for label in agents:
            cls, options = AGENT_SPECS[label]
            for seed in seeds:
                agent = cls(feats.dim(), prior_var=PRIOR_VAR, noise_std=NOISE_STD, seed=seed, **options)
                run = replay_run(agent, rnd, feats, n_samples=n_samples, seed=seed + 1_000_003)
                rows = np.arange(len(rnd))
                target = run["policy"][rows, rnd.action]
                found = {"replay": ope.replay(rnd.reward, rnd.action, run["chosen"], interval="wilson"),
                         **_estimators(rnd, target, run["policy"], predicted)}
                replay.append({"campaign": campaign, "agent": label, "seed": seed, "matched": run["matched"],
                               "clicks_matched": int(rnd.reward[run["chosen"] == rnd.action].sum()),
                               "probabilities": run["method"], "seconds": run["seconds"],
                               "estimates": {k: _est(e) for k, e in found.items()}})
                log(f"  {campaign:5s} {label:18s} seed {seed}: {run['matched']} matched rounds, "
                    f"replay CTR {found['replay'].value:.4f}, DR {found['DR'].value:.4f} ({run['seconds']:.1f} s)")
    return {"on_policy": on_policy, "uniform_from_bts": uniform, "replay": replay,
            "settings": {"n_samples": n_samples, "seeds": list(seeds), "prior_var": PRIOR_VAR,
                         "noise_std": NOISE_STD, "reward_model": "cross-fitted per-item CTR, Beta(200) shrinkage",
                         "interval": "95%: Wilson for click rates and replay; normal (CLT; delta method "
                                     "for SNIPS) for IPS, SNIPS, DR; DM: percentile bootstrap over rows "
                                     "refitting the reward model (200 resamples)"}}


def _ci(e: dict[str, Any], scale: float = 100.0) -> str:
    return f"{scale * e['value']:.3f} [{scale * e['low']:.3f}, {scale * e['high']:.3f}]"


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables of a report (click rates in percent)."""
    lines = ["(a) On-policy click rate (%) with 95% interval", "",
             "| campaign | logging policy | impressions | clicks | click rate % [95% CI] |",
             "| --- | --- | ---: | ---: | --- |"]
    for r in report["on_policy"]:
        lines.append(f"| {r['campaign']} | {r['behaviour']} | {r['n']} | {r['clicks']} | {_ci(r)} |")
    lines += ["", "(b) Value (%) of the uniform random policy estimated from the Bernoulli TS logs", "",
              "| campaign | truth (random logs) | estimator | estimate [95% CI] | relative error | CI covers truth |",
              "| --- | --- | --- | --- | ---: | --- |"]
    for r in report["uniform_from_bts"]:
        for name, e in r["estimates"].items():
            lines.append(f"| {r['campaign']} | {_ci(r['truth'])} | {name} | {_ci(e)} | "
                         f"{100 * e['relative_error']:+.0f}% | {'yes' if e['covers_truth'] else 'no'} |")
    methods = {r["agent"]: r["probabilities"] for r in report["replay"]}
    lines += ["", "(c) Agents trained by replay on the random logs: value (%) by replay and by the estimators", ""]
    if methods:
        lines += ["Probabilities of the logged items: " + "; ".join(f"{a}: {m}" for a, m in methods.items()), ""]
    lines += ["| campaign | agent | seed | matched rounds (clicks) | replay | IPS | SNIPS | DM | DR |",
              "| --- | --- | ---: | ---: | --- | --- | --- | --- | --- |"]
    for r in report["replay"]:
        e = r["estimates"]
        lines.append(f"| {r['campaign']} | {r['agent']} | {r['seed']} | {r['matched']} ({r['clicks_matched']}) | "
                     + " | ".join(_ci(e[k]) for k in ("replay", "IPS", "SNIPS", "DM", "DR")) + " |")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["replay"]:
        groups.setdefault((r["campaign"], r["agent"]), []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        lines += ["", "(c) Mean over agent seeds (min to max); the seeds share one log, so their spread is the "
                  "agents' randomness, not the data's", "",
                  "| campaign | agent | seeds | matched rounds | replay | IPS | DR |",
                  "| --- | --- | ---: | ---: | --- | --- | --- |"]
        for (campaign, agent), g in groups.items():
            def span(key: str) -> str:
                v = 100 * np.array([r["estimates"][key]["value"] for r in g])
                return f"{v.mean():.3f} ({v.min():.3f} to {v.max():.3f})"
            matched = np.mean([r["matched"] for r in g])
            lines.append(f"| {campaign} | {agent} | {len(g)} | {matched:.0f} | {span('replay')} | {span('IPS')} | "
                         f"{span('DR')} |")
    return "\n".join(lines)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_OVERRIDES = {"campaigns", "n_samples", "seeds", "n_seeds", "seed", "agents", "data_dir", "horizon"}


def _driver(ctx: PresetContext) -> list[Path]:
    ov = dict(ctx.overrides)
    unknown = sorted(set(ov) - _OVERRIDES)
    if unknown:
        raise ConfigError(f"obd-ope: unsupported override(s) {', '.join(unknown)}; supported: {sorted(_OVERRIDES)}")

    def ints(key: str, values: Any, low: int) -> tuple[int, ...]:
        seq = values if isinstance(values, (list, tuple)) else [values]
        if not seq or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in seq):
            raise ConfigError(f"obd-ope: {key} must be an int >= {low} (or a list of them), got {values!r}")
        return tuple(int(v) for v in seq)

    def names(key: str, values: Any, known: Any) -> tuple[str, ...]:
        seq = [values] if isinstance(values, str) else values
        if not isinstance(seq, (list, tuple)) or not seq or any(v not in known for v in seq):
            raise ConfigError(f"obd-ope: {key} must be a non-empty list of {list(known)}, got {values!r}")
        return tuple(seq)

    campaigns = names("campaigns", ov.get("campaigns", list(OBD_CAMPAIGNS)), OBD_CAMPAIGNS)
    agents = names("agents", ov.get("agents", list(AGENT_SPECS)), AGENT_SPECS)
    (first,) = ints("seed", ov.get("seed", 0), 0)
    (count,) = ints("n_seeds", ov.get("n_seeds", 1), 1)
    seeds = ints("seeds", ov["seeds"], 0) if "seeds" in ov else tuple(range(first, first + count))
    (n_samples,) = ints("n_samples", ov.get("n_samples", 256), 1)
    max_rows = ints("horizon", ov["horizon"], 2)[0] if "horizon" in ov else None
    data_dir = ov.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise ConfigError(f"obd-ope: data_dir must be a folder path, got {data_dir!r}")
    start = time.perf_counter()
    ctx.log("== obd-ope: Open Bandit Dataset (small sample), off-policy evaluation")
    report = obd_ope_report(campaigns, data_dir=data_dir, n_samples=n_samples, seeds=seeds, agents=agents,
                            max_rows=max_rows, log=ctx.log)
    from .. import __version__

    report.update(format="ensemblepp-obd-ope/1", version=__version__, wall_seconds=time.perf_counter() - start)
    out = ctx.output_dir / "obd-ope.json"
    _write_json(out, report)
    table = format_report(report)
    ctx.log(table)
    md = ctx.output_dir / "obd-ope.md"
    fd, tmp = tempfile.mkstemp(dir=md.parent, prefix=".obd-ope.md.")
    with os.fdopen(fd, "w") as handle:
        handle.write(table + "\n")
    os.replace(tmp, md)
    ctx.log(f"wall time {report['wall_seconds']:.1f} s; wrote {out} and {md}")
    return [out, md]
