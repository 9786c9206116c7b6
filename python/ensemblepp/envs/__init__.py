"""Bandit environments sharing one protocol (:class:`Environment`).

Every environment is seeded, and the synthetic ones are batched over ``B``
independent instances so that ``B`` seeds of an experiment step together
through one batched agent. Environments are also reachable by name through a
registry (:data:`ENVIRONMENTS`, :func:`make_environment`), which the
experiment runner and the CLI use and other code extends with
:func:`register_environment`. Registered constructors are import strings
resolved on first use, so listing the names imports no data loader or text
encoder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._registry import Entry, Registry, check_options
from .base import Environment, instance_seeds
from .classification import ClassificationBandit, disjoint_actions
from .drift import DriftingLinear
from .linear import ChangingLinear, CompactLinear, FiniteLinear
from .nonlinear import NeuralBandit, Quadratic

__all__ = [
    "Environment", "FiniteLinear", "ChangingLinear", "CompactLinear", "Quadratic", "NeuralBandit",
    "DriftingLinear", "ClassificationBandit", "disjoint_actions",
    "ENVIRONMENTS", "EnvironmentSpec", "register_environment", "make_environment", "instance_seeds",
]

# The moderation environment needs the text extra (PyTorch): loaded on first
# access (PEP 562) so that `import ensemblepp.envs` does not import torch.
_LAZY = {name: "ensemblepp.envs.moderation" for name in ("ContentModeration", "PUBLISH", "BLOCK")}
_LAZY.update({name: "ensemblepp.text" for name in (
    "EMBEDDING_DIM", "ENCODER_NAME", "MissingTextExtra", "embed_texts", "encoder_id", "load_encoder")})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


@dataclass(frozen=True)
class EnvironmentSpec(Entry):
    """A named environment constructor.

    Attributes
    ----------
    name : str
        Registry name (as used by ``ensemblepp run --env``).
    target : callable or str
        ``target(n_instances=..., seed=..., **options)`` returns an
        :class:`Environment`; a ``"module:attribute"`` string is imported on
        first use.
    description : str
        One line for ``ensemblepp envs``.
    defaults : dict
        Options applied before the user's.
    batched : bool
        Whether the factory accepts ``n_instances`` (all seeds in one object).
    """

    batched: bool = True

    @property
    def factory(self) -> Callable[..., Environment]:
        """The constructor (imported on first access)."""
        return self.load()


ENVIRONMENTS: Registry[EnvironmentSpec] = Registry("environment")


def register_environment(name: str, factory: Callable[..., Environment] | str, description: str = "",
                         defaults: dict[str, Any] | None = None, batched: bool = True,
                         replace: bool = False) -> None:
    """Register an environment constructor under ``name``.

    Parameters
    ----------
    name : str
        Registry name.
    factory : callable or str
        Class or function called as ``factory(n_instances=B or None, seed=..., **options)``
        (``n_instances`` is passed only when ``batched``), or its import
        string ``"module:attribute"``.
    description : str
        One-line description.
    defaults : dict, optional
        Default options (the user's options override them).
    batched : bool, default True
        Whether the factory builds ``B`` instances at once.
    replace : bool, default False
        Allow overwriting an existing name.
    """
    ENVIRONMENTS.add(EnvironmentSpec(name, factory, description, dict(defaults or {}), batched), replace=replace)


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
    spec = ENVIRONMENTS[name]
    opts = {**spec.defaults, **options}
    check_options(spec.factory, opts, f"environment {name!r}", reserved=("n_instances", "seed"))
    if spec.batched:
        return spec.factory(n_instances=n_instances, seed=seed, **opts)
    if n_instances is not None:
        raise ValueError(f"environment {name!r} is not batched: n_instances must be None")
    return spec.factory(seed=seed, **opts)


_ENV = "ensemblepp.envs"
for _name, _target, _description, _defaults in [
    ("finite-linear", f"{_ENV}.linear:FiniteLinear",
     "fixed K actions U(-1/sqrt5, 1/sqrt5)^d, theta* ~ N(0, 10 I), N(0, 1) noise", {}),
    ("changing-linear", f"{_ENV}.linear:ChangingLinear",
     "fresh K unit-sphere actions every step, theta* ~ N(0, 10 I)", {}),
    ("compact-linear", f"{_ENV}.linear:CompactLinear",
     "the unit sphere as action set, regret |theta*| - <x, theta*>", {}),
    ("drifting-linear", f"{_ENV}.drift:DriftingLinear",
     "fixed K actions, theta* a Gaussian random walk (drift_std) and/or redrawn every switch_every "
     "steps or with probability switch_prob; regret against the current theta*", {}),
    ("quadratic", f"{_ENV}.nonlinear:Quadratic",
     "r = 0.01 x^T Th Th^T x + N(0, 0.1^2), 50 of 1000 unit arms per step, d = 100", {}),
    ("neural-bandit", f"{_ENV}.nonlinear:NeuralBandit",
     "frozen random MLP d -> 50 -> 50 -> 1 with Gaussian noise, 50 of 1000 arms", {}),
    ("neural-classification", f"{_ENV}.nonlinear:NeuralBandit",
     "frozen random MLP d -> 50 -> 50 -> 2, Bernoulli(softmax(logits / T)[1]) reward", {"task": "classification"}),
    ("mushroom", f"{_ENV}.classification:ClassificationBandit",
     "UCI Mushroom (8124 rows, 2 classes), disjoint encoding, reward 1{a = y}", {"dataset": "mushroom"}),
    ("shuttle", f"{_ENV}.classification:ClassificationBandit",
     "UCI Statlog Shuttle (58000 rows, 7 classes), disjoint encoding, reward 1{a = y}", {"dataset": "shuttle"}),
    ("hate-speech", f"{_ENV}.moderation:ContentModeration",
     "Davidson et al. tweets, publish/block, rewards 1 / -0.5 / 0.5, MiniLM embeddings", {"mode": "frozen"}),
]:
    register_environment(_name, _target, _description, _defaults)
del _name, _target, _description, _defaults
