"""Bandit environments sharing one protocol (:class:`Environment`).

Every environment is seeded, and the synthetic ones are batched over ``B``
independent instances so that ``B`` seeds of an experiment step together
through one batched agent. Environments are also reachable by name through a
registry (:func:`make_environment`), which the experiment runner and the CLI
use and other modules extend with :func:`register_environment`.

Real-data environments (``ClassificationBandit``, ``ContentModeration``) live in
``envs/classification.py`` and ``envs/moderation.py``; when those modules exist
they are imported here and register themselves by calling
:func:`register_environment` at import time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Environment, instance_seeds
from .drift import DriftingLinear
from .linear import ChangingLinear, CompactLinear, FiniteLinear
from .nonlinear import NeuralBandit, Quadratic

__all__ = [
    "Environment", "FiniteLinear", "ChangingLinear", "CompactLinear", "Quadratic", "NeuralBandit", "DriftingLinear",
    "ENVIRONMENTS", "EnvironmentSpec", "register_environment", "make_environment", "instance_seeds",
]


@dataclass(frozen=True)
class EnvironmentSpec:
    """A named environment constructor.

    Attributes
    ----------
    name : str
        Registry name (as used by ``ensemblepp run --env``).
    factory : callable
        ``factory(n_instances=..., seed=..., **options)`` returns an
        :class:`Environment`.
    description : str
        One line for ``ensemblepp envs``.
    defaults : dict
        Options applied before the user's.
    batched : bool
        Whether the factory accepts ``n_instances`` (all seeds in one object).
    """

    name: str
    factory: Callable[..., Environment]
    description: str
    defaults: dict[str, Any]
    batched: bool = True


ENVIRONMENTS: dict[str, EnvironmentSpec] = {}


def register_environment(name: str, factory: Callable[..., Environment], description: str = "",
                         defaults: dict[str, Any] | None = None, batched: bool = True,
                         replace: bool = False) -> None:
    """Register an environment constructor under ``name``.

    Parameters
    ----------
    name : str
        Registry name.
    factory : callable
        Class or function called as ``factory(n_instances=B or None, seed=..., **options)``
        (``n_instances`` is passed only when ``batched``).
    description : str
        One-line description.
    defaults : dict, optional
        Default options (the user's options override them).
    batched : bool, default True
        Whether the factory builds ``B`` instances at once.
    replace : bool, default False
        Allow overwriting an existing name.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if name in ENVIRONMENTS and not replace:
        raise ValueError(f"environment {name!r} is already registered")
    ENVIRONMENTS[name] = EnvironmentSpec(name, factory, description, dict(defaults or {}), batched)


def _accepted_options(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` accepts, following ``**kwargs`` up a class's MRO; None if unknown."""
    targets = [c.__init__ for c in factory.__mro__ if "__init__" in vars(c)] if inspect.isclass(factory) else [factory]
    names: set[str] = set()
    for target in targets:
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # builtins without a signature
            return None
        names |= {n for n, p in params.items()
                  if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                  and not n.startswith("_") and n != "self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return None


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str,
                  reserved: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming any option that ``factory`` does not accept.

    Parameters
    ----------
    factory : callable
        A class (its ``__init__`` chain is followed through ``**kwargs``) or function.
    options : dict
        Options the caller wants to pass.
    what : str
        Prefix of the error message (e.g. ``"agent 'ts'"``).
    reserved : tuple of str
        Names the caller sets itself, not accepted from ``options``.
    """
    allowed = _accepted_options(factory)
    bad_reserved = sorted(set(options) & set(reserved))
    if bad_reserved:
        raise ValueError(f"{what}: option(s) {', '.join(bad_reserved)} are set by the runner, not by the user")
    if allowed is None:
        return
    allowed -= set(reserved)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown option(s) {', '.join(unknown)}; "
                         f"valid options: {', '.join(sorted(allowed))}")


def make_environment(name: str, n_instances: int | None = None, seed: Any = 0,
                     **options: Any) -> Environment:
    """Build a registered environment.

    Parameters
    ----------
    name : str
        Registry name, see ``ENVIRONMENTS``.
    n_instances : int or None
        ``B`` instances, or None for one (only for batched environments).
    seed : int or sequence of int
        Seed(s), see :func:`instance_seeds`.
    **options
        Constructor options (``dim``, ``n_actions``, ...).

    Returns
    -------
    Environment

    Raises
    ------
    ValueError
        For an unknown name or option.
    """
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(sorted(ENVIRONMENTS))}")
    spec = ENVIRONMENTS[name]
    opts = {**spec.defaults, **options}
    check_options(spec.factory, opts, f"environment {name!r}", reserved=("n_instances", "seed"))
    if spec.batched:
        return spec.factory(n_instances=n_instances, seed=seed, **opts)
    if n_instances is not None:
        raise ValueError(f"environment {name!r} is not batched: n_instances must be None")
    return spec.factory(seed=seed, **opts)


register_environment("finite-linear", FiniteLinear,
                     "fixed K actions U(-1/sqrt5, 1/sqrt5)^d, theta* ~ N(0, 10 I), N(0, 1) noise")
register_environment("changing-linear", ChangingLinear,
                     "fresh K unit-sphere actions every step, theta* ~ N(0, 10 I)")
register_environment("compact-linear", CompactLinear,
                     "the unit sphere as action set, regret |theta*| - <x, theta*>")
register_environment("drifting-linear", DriftingLinear,
                     "fixed K actions, theta* a Gaussian random walk (drift_std) and/or redrawn every switch_every "
                     "steps or with probability switch_prob; regret against the current theta*")
register_environment("quadratic", Quadratic,
                     "r = 0.01 x^T Th Th^T x + N(0, 0.1^2), 50 of 1000 unit arms per step, d = 100")
register_environment("neural-bandit", NeuralBandit,
                     "frozen random MLP d -> 50 -> 50 -> 1 with Gaussian noise, 50 of 1000 arms")
register_environment("neural-classification", NeuralBandit,
                     "frozen random MLP d -> 50 -> 50 -> 2, Bernoulli(softmax(logits / T)[1]) reward",
                     defaults={"task": "classification"})

# Hook for the real-data environments: each module registers itself on import.
try:  # pragma: no cover - depends on which modules exist in the tree
    from .classification import *  # noqa: F401,F403
    from . import classification as _classification
    __all__ += list(getattr(_classification, "__all__", []))
except ImportError:
    pass
try:  # pragma: no cover
    from .moderation import *  # noqa: F401,F403
    from . import moderation as _moderation
    __all__ += list(getattr(_moderation, "__all__", []))
except ImportError:
    pass
