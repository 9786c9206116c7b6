"""Off-policy evaluation: the value of a policy estimated from another policy's logs.

A log holds, for every round ``i``, the action ``a_i`` the logging policy
took, its probability ``p_i = pi_0(a_i | x_i)`` (the propensity) and the reward
``r_i``. The evaluated policy ``pi`` enters through ``target_i = pi(a_i | x_i)``,
its probability of the logged action, and, for the model-based estimators,
through its whole action distribution ``policy[i, a] = pi(a | x_i)`` and a
reward model ``predicted[i, a] = q(x_i, a)``. With ``w_i = target_i / p_i``:

* :func:`ips` (inverse propensity scoring): ``mean(w r)``; unbiased when every
  action ``pi`` can take has ``p > 0``.
* :func:`snips` (self-normalised IPS): ``sum(w r) / sum(w)``; slightly biased,
  often much less variable, and always inside the reward range.
* :func:`dm` (direct method): ``mean_i sum_a policy[i, a] predicted[i, a]``;
  as good as the reward model.
* :func:`dr` (doubly robust): DM plus the IPS-weighted residual of the model on
  the logged action; unbiased when the propensities are right, whatever the model.
* :func:`replay` (Li et al. 2011): with a uniform logging policy, the mean
  reward over the rounds where a deterministic policy picks the logged action.

Intervals. ``interval="normal"`` (the default) is the CLT interval
``value +- z * se`` with ``se`` the sample standard deviation of the per-round
terms over ``sqrt(n)`` (IPS, DM, DR), the delta-method standard error of the
ratio for SNIPS, and the binomial-style standard error of the matched rounds'
mean for replay. ``interval="bootstrap"`` resamples rounds with replacement
``n_bootstrap`` times from a generator seeded by ``seed`` and reports the
percentile interval (``se`` is then the bootstrap standard deviation).
:func:`replay` of 0/1 rewards also offers ``interval="wilson"``, the Wilson
score interval of a proportion, which stays honest when the matched rounds
hold no click at all (where the normal interval collapses to a point). The DM
interval covers only the sampling of contexts, not the error of the reward
model, which can be far larger: read it as a lower bound on the uncertainty.

The estimators are written here rather than taken from the Open Bandit
Pipeline (``obp``), whose current release (0.5.7) requires Python < 3.11 and
pins old versions of scikit-learn, pandas and PyTorch: depending on it would
constrain every user of this package for a few lines of arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["Estimate", "ips", "snips", "dm", "dr", "replay", "wilson", "INTERVALS"]

#: Interval methods accepted by every estimator.
INTERVALS = ("normal", "bootstrap")


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its uncertainty.

    Attributes
    ----------
    estimator : str
        ``"ips"``, ``"snips"``, ``"dm"``, ``"dr"`` or ``"replay"``.
    value : float
        Estimated expected reward per round of the evaluated policy.
    stderr : float
        Standard error (see the module docstring for how each is computed).
    low, high : float
        Confidence interval at ``level``.
    level : float
        Confidence level of the interval, e.g. 0.95.
    n : int
        Rounds the estimate used (matched rounds for replay).
    interval : str
        ``"normal"`` or ``"bootstrap"``.
    """

    estimator: str
    value: float
    stderr: float
    low: float
    high: float
    level: float
    n: int
    interval: str

    def relative_error(self, truth: float) -> float:
        """``(value - truth) / truth``; raises ValueError for ``truth == 0``."""
        if truth == 0 or not np.isfinite(truth):
            raise ValueError(f"truth must be finite and non-zero, got {truth!r}")
        return (self.value - truth) / truth

    def covers(self, truth: float) -> bool:
        """Whether ``truth`` lies inside ``[low, high]``."""
        return bool(self.low <= truth <= self.high)

    def __str__(self) -> str:
        pct = round(100 * self.level)
        return (f"{self.estimator}: {self.value:.6g} (se {self.stderr:.2g}, {pct}% "
                f"[{self.low:.6g}, {self.high:.6g}], n={self.n}, {self.interval})")


# ---- validation -------------------------------------------------------------------------


def _vector(a: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values (one per logged round), got {arr.shape[0]}")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return out


def _matrix(a: Any, name: str, n: int, k: int | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != n or (k is not None and arr.shape[1] != k):
        want = f"({n}, K)" if k is None else f"({n}, {k})"
        raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return out


def _rounds(reward: Any) -> np.ndarray:
    r = _vector(reward, "reward")
    if r.shape[0] < 2:
        raise ValueError(f"reward: need at least 2 logged rounds for a standard error, got {r.shape[0]}")
    return r


def _propensity(propensity: Any, n: int) -> np.ndarray:
    p = _vector(propensity, "propensity", n)
    if np.any(p <= 0) or np.any(p > 1):
        bad = p[(p <= 0) | (p > 1)][0]
        raise ValueError(f"propensity: every logged probability must lie in (0, 1], found {float(bad)!r}")
    return p


def _probability(a: Any, name: str, n: int) -> np.ndarray:
    q = _vector(a, name, n)
    if np.any(q < 0) or np.any(q > 1):
        bad = q[(q < 0) | (q > 1)][0]
        raise ValueError(f"{name}: probabilities must lie in [0, 1], found {float(bad)!r}")
    return q


def _policy(a: Any, n: int, atol: float = 1e-6) -> np.ndarray:
    pol = _matrix(a, "policy", n)
    # Entries beyond [0, 1] (up to the rows' rounding tolerance) are refused before the row
    # sums, which they could overflow.
    out_of_range = (pol < 0) | (pol > 1 + atol)
    if np.any(out_of_range):
        bad = pol[out_of_range][0]
        raise ValueError(f"policy: probabilities must lie in [0, 1], found {float(bad)!r}")
    sums = pol.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > atol):
        i = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"policy: every row must sum to 1, row {i} sums to {float(sums[i])!r}")
    return pol


def _actions(a: Any, n: int, k: int | None, name: str = "action") -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer indices, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    bad = (arr < 0) if k is None else (arr < 0) | (arr >= k)
    if np.any(bad):
        where = "be non-negative" if k is None else f"lie in [0, {k})"
        raise ValueError(f"{name}: indices must {where}, found {int(arr[bad][0])}")
    return arr.astype(np.int64)


def _options(level: Any, interval: Any, n_bootstrap: Any, seed: Any, allowed: tuple[str, ...] = INTERVALS) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < float(level) < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    if interval not in allowed:
        raise ValueError(f"interval must be one of {list(allowed)}, got {interval!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 100:
        raise ValueError(f"n_bootstrap must be an int >= 100, got {n_bootstrap!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")


# ---- shared machinery -------------------------------------------------------------------


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _finite(terms: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        ok = bool(np.all(np.isfinite(terms))) and bool(np.isfinite(np.sum(terms * terms)))
    if not ok:
        raise ValueError(f"{name}: the per-round terms overflow float64 (rewards or weights too large)")
    return terms


def _mean_estimate(name: str, terms: np.ndarray, level: float, interval: str, n_bootstrap: int,
                   seed: int | None) -> Estimate:
    terms = _finite(terms, "reward" if name in ("ips", "dr", "replay") else "predicted")
    n = terms.shape[0]
    value = float(terms.mean())
    if interval == "normal":
        se = float(terms.std(ddof=1) / np.sqrt(n))
        z = _z(level)
        return Estimate(name, value, se, value - z * se, value + z * se, float(level), n, interval)
    boot = np.concatenate([terms[idx].mean(axis=1) for idx in _resamples(n, n_bootstrap, seed)])
    return _bootstrap(name, value, boot, level, n)


def _resamples(n: int, n_bootstrap: int, seed: int | None) -> Any:
    """Row indices of the bootstrap resamples, a block at a time (about 4M indices per block)."""
    rng = np.random.default_rng(seed)
    per_block = max(1, (1 << 22) // n)
    done = 0
    while done < n_bootstrap:
        count = min(per_block, n_bootstrap - done)
        yield rng.integers(0, n, size=(count, n))
        done += count


def _bootstrap(name: str, value: float, boot: np.ndarray, level: float, n: int) -> Estimate:
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Estimate(name, value, float(boot.std(ddof=1)), float(lo), float(hi), float(level), n, "bootstrap")


# ---- estimators -------------------------------------------------------------------------


def ips(reward: Any, propensity: Any, target: Any, *, level: float = 0.95, interval: str = "normal",
        n_bootstrap: int = 2000, seed: int | None = 0) -> Estimate:
    """Inverse propensity scoring: ``mean(target / propensity * reward)``.

    Parameters
    ----------
    reward : array_like
        (n,) observed rewards.
    propensity : array_like
        (n,) the logging policy's probability of each logged action, in (0, 1].
    target : array_like
        (n,) the evaluated policy's probability of each logged action, in [0, 1].
    level : float, default 0.95
        Confidence level.
    interval : {"normal", "bootstrap"}, default "normal"
        CLT interval from the per-round terms' sample variance, or percentile bootstrap.
    n_bootstrap : int, default 2000
        Bootstrap resamples.
    seed : int or None, default 0
        Seed of the bootstrap generator.

    Returns
    -------
    Estimate

    Raises
    ------
    ValueError, TypeError
        Naming the argument: wrong shape or dtype, NaN or inf, a propensity
        outside (0, 1] or a target outside [0, 1], fewer than 2 rounds.

    Examples
    --------
    >>> ips([1.0, 0.0], [0.5, 0.5], [1.0, 0.0]).value
    1.0
    """
    _options(level, interval, n_bootstrap, seed)
    r = _rounds(reward)
    p = _propensity(propensity, r.shape[0])
    t = _probability(target, "target", r.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _finite
        terms = t / p * r
    return _mean_estimate("ips", terms, float(level), interval, int(n_bootstrap), seed)


def snips(reward: Any, propensity: Any, target: Any, *, level: float = 0.95, interval: str = "normal",
          n_bootstrap: int = 2000, seed: int | None = 0) -> Estimate:
    """Self-normalised IPS: ``sum(w * reward) / sum(w)`` with ``w = target / propensity``.

    The normal interval uses the delta method: ``se^2 = sum(w_i^2 (r_i - V)^2) / sum(w)^2``.
    Parameters and errors as in :func:`ips`; also raises ValueError when every
    weight is zero (the evaluated policy never takes a logged action).

    Returns
    -------
    Estimate
    """
    _options(level, interval, n_bootstrap, seed)
    r = _rounds(reward)
    p = _propensity(propensity, r.shape[0])
    t = _probability(target, "target", r.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _finite
        w = t / p
        _finite(w * r, "reward")
    total = w.sum()
    if total <= 0:
        raise ValueError("target: the evaluated policy gives probability 0 to every logged action")
    value = float((w * r).sum() / total)
    n = r.shape[0]
    if interval == "normal":
        se = float(np.sqrt(np.sum((w * (r - value)) ** 2)) / total)
        z = _z(float(level))
        return Estimate("snips", value, se, value - z * se, value + z * se, float(level), n, interval)
    parts = []
    for idx in _resamples(n, int(n_bootstrap), seed):
        wb = w[idx]
        sums = wb.sum(axis=1)
        # A resample whose weights are all zero has no defined ratio; it is dropped.
        ok = sums > 0
        parts.append((wb * r[idx]).sum(axis=1)[ok] / sums[ok])
    return _bootstrap("snips", value, np.concatenate(parts), float(level), n)


def dm(policy: Any, predicted: Any, *, level: float = 0.95, interval: str = "normal",
       n_bootstrap: int = 2000, seed: int | None = 0) -> Estimate:
    """Direct method: ``mean_i sum_a policy[i, a] * predicted[i, a]``.

    Parameters
    ----------
    policy : array_like
        (n, K) the evaluated policy's probability of every action in every
        logged context; rows sum to 1.
    predicted : array_like
        (n, K) a reward model's prediction for every action in every logged context.
    level, interval, n_bootstrap, seed
        As in :func:`ips`. The interval reflects the sampling of contexts only,
        not the reward model's error.

    Returns
    -------
    Estimate
    """
    _options(level, interval, n_bootstrap, seed)
    pol = np.asarray(policy)
    n = pol.shape[0] if pol.ndim == 2 else -1
    if n < 2:
        raise ValueError(f"policy: expected shape (n, K) with n >= 2, got {pol.shape}")
    pol = _policy(pol, n)
    q = _matrix(predicted, "predicted", n, pol.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _finite
        terms = (pol * q).sum(axis=1)
    return _mean_estimate("dm", terms, float(level), interval, int(n_bootstrap), seed)


def dr(reward: Any, propensity: Any, action: Any, policy: Any, predicted: Any, *, level: float = 0.95,
       interval: str = "normal", n_bootstrap: int = 2000, seed: int | None = 0) -> Estimate:
    """Doubly robust: DM plus the weighted residual on the logged action.

    Per round, ``sum_a policy[i, a] predicted[i, a] + policy[i, a_i] / p_i *
    (r_i - predicted[i, a_i])``; the estimate is their mean (Dudik, Langford and
    Li 2011).

    Parameters
    ----------
    reward, propensity : array_like
        (n,) as in :func:`ips`.
    action : array_like of int
        (n,) logged action indices in ``0 .. K - 1``.
    policy, predicted : array_like
        (n, K) as in :func:`dm`.
    level, interval, n_bootstrap, seed
        As in :func:`ips`.

    Returns
    -------
    Estimate
    """
    _options(level, interval, n_bootstrap, seed)
    r = _rounds(reward)
    n = r.shape[0]
    p = _propensity(propensity, n)
    pol = _policy(policy, n)
    q = _matrix(predicted, "predicted", n, pol.shape[1])
    a = _actions(action, n, pol.shape[1])
    rows = np.arange(n)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _finite
        terms = (pol * q).sum(axis=1) + pol[rows, a] / p * (r - q[rows, a])
    return _mean_estimate("dr", terms, float(level), interval, int(n_bootstrap), seed)


def replay(reward: Any, action: Any, chosen: Any, *, level: float = 0.95, interval: str = "normal",
           n_bootstrap: int = 2000, seed: int | None = 0) -> Estimate:
    """Replay (Li et al. 2011): mean reward over the rounds where ``chosen == action``.

    Unbiased for the value of the policy that chose ``chosen`` when the logging
    policy was uniform over the same actions (and, for a learning policy, when it
    learns only from the matched rounds, as replay prescribes).

    Parameters
    ----------
    reward : array_like
        (n,) logged rewards.
    action : array_like of int
        (n,) logged actions.
    chosen : array_like of int
        (n,) the evaluated policy's action in each logged context.
    level, n_bootstrap, seed
        As in :func:`ips` (the bootstrap resamples matched rounds).
    interval : {"normal", "bootstrap", "wilson"}, default "normal"
        ``"wilson"``: the Wilson score interval for 0/1 rewards (``stderr`` is
        then ``sqrt(p (1 - p) / n)``).

    Returns
    -------
    Estimate
        ``n`` is the number of matched rounds; raises ValueError when fewer than 2 match.
    """
    _options(level, interval, n_bootstrap, seed, INTERVALS + ("wilson",))
    r = _rounds(reward)
    n = r.shape[0]
    a = _actions(action, n, None)
    c = _actions(chosen, n, None, name="chosen")
    matched = r[a == c]
    if matched.shape[0] < 2:
        raise ValueError(f"chosen: only {matched.shape[0]} round(s) match the logged action; replay needs 2")
    if interval == "wilson":
        return wilson(matched, level=float(level), estimator="replay")
    return _mean_estimate("replay", matched, float(level), interval, int(n_bootstrap), seed)


def wilson(reward: Any, *, level: float = 0.95, estimator: str = "mean") -> Estimate:
    """Mean of 0/1 rewards with the Wilson score interval.

    ``low, high = (p + z^2 / 2n -+ z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n)``;
    ``stderr`` is ``sqrt(p (1 - p) / n)``.

    Parameters
    ----------
    reward : array_like
        (n,) rewards, each 0 or 1.
    level : float, default 0.95
        Confidence level.
    estimator : str, default "mean"
        Name recorded in the result.

    Returns
    -------
    Estimate
    """
    _options(level, "normal", 100, None)
    r = _rounds(reward)
    if not np.all((r == 0) | (r == 1)):
        raise ValueError("reward: the Wilson interval needs rewards that are 0 or 1")
    n = r.shape[0]
    p = float(r.mean())
    z = _z(float(level))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The bounds lie in [0, 1] exactly; clip the rounding of p = 0 or 1.
    low, high = max(0.0, float(centre - half)), min(1.0, float(centre + half))
    return Estimate(estimator, p, float(np.sqrt(p * (1 - p) / n)), low, high, float(level), n, "wilson")
