"""Registry of agents the experiment runner can build by name.

A *batched* agent holds all ``B`` seeds of a run in one object (the linear
policies of the compiled core, ``n_agents=B``); an unbatched agent (the
PyTorch ones) is built once per seed. Other modules add agents with
:func:`register_agent`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..envs import check_options

__all__ = ["AgentSpec", "AGENTS", "register_agent", "make_agent", "agent_label", "RandomAgent"]

# Short names accepted in configurations and on the command line.
ALIASES = {"M": "ensemble_size"}


@dataclass(frozen=True)
class AgentSpec:
    """A named agent constructor.

    Attributes
    ----------
    name : str
        Registry name.
    target : str or callable
        The class, or ``"module:attribute"`` imported on first use (so that the
        registry loads neither the compiled core nor torch by itself).
    batched : bool
        Built once for all seeds with ``n_agents=B`` (True) or once per seed.
    description : str
        One line for ``ensemblepp agents``.
    defaults : dict
        Options applied before the user's.
    """

    name: str
    target: str | Callable[..., Any]
    batched: bool
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def resolve(self) -> Callable[..., Any]:
        """Import and return the constructor."""
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise RuntimeError(f"agent {self.name!r} needs {self.target}, which is not available: {exc}") from exc


AGENTS: dict[str, AgentSpec] = {}


def register_agent(name: str, target: str | Callable[..., Any], *, batched: bool,
                   description: str = "", defaults: dict[str, Any] | None = None,
                   replace: bool = False) -> None:
    """Register an agent constructor.

    Parameters
    ----------
    name : str
        Registry name (``ensemblepp run --agent NAME``).
    target : str or callable
        Constructor, or ``"module:attribute"`` imported lazily. It is called as
        ``target(dim, n_agents=B, seed=seed, **options)`` when ``batched``, else
        ``target(dim, seed=seed, **options)``.
    batched : bool
        Whether one object serves all seeds.
    description : str
        One-line description.
    defaults : dict, optional
        Default options.
    replace : bool, default False
        Allow overwriting an existing name.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if name in AGENTS and not replace:
        raise ValueError(f"agent {name!r} is already registered")
    AGENTS[name] = AgentSpec(name, target, batched, description, dict(defaults or {}))


def normalize_options(options: dict[str, Any]) -> dict[str, Any]:
    """Apply :data:`ALIASES` (``M`` -> ``ensemble_size``)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        real = ALIASES.get(key, key)
        if real in out:
            raise ValueError(f"option {real!r} given twice (as {key!r} and {real!r})")
        out[real] = value
    return out


def agent_spec(name: str) -> AgentSpec:
    """Return the registered spec or raise ValueError listing the known names."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]


def make_agent(name: str, dim: int, n_agents: int | None, seed: int, **options: Any) -> Any:
    """Build a registered agent.

    Parameters
    ----------
    name : str
        Registry name.
    dim : int
        Feature dimension.
    n_agents : int or None
        ``B`` for a batched agent (ignored for unbatched agents, which must get None).
    seed : int
        Seed of the agent's generator.
    **options
        Constructor options; ``M`` is accepted for ``ensemble_size``.

    Raises
    ------
    ValueError
        For an unknown name or option.
    """
    spec = agent_spec(name)
    opts = normalize_options({**spec.defaults, **options})
    ctor = spec.resolve()
    check_options(ctor, opts, f"agent {name!r}", reserved=("dim", "n_agents", "seed"))
    if spec.batched:
        return ctor(dim, n_agents=n_agents, seed=seed, **opts)
    return ctor(dim, seed=seed, **opts)


def agent_label(name: str, options: dict[str, Any]) -> str:
    """Default display label: the name plus its options, e.g. ``ensemble++ (M=16)``."""
    opts = normalize_options(options)
    parts = []
    for key, value in opts.items():
        short = "M" if key == "ensemble_size" else key
        parts.append(f"{short}={value}")
    return f"{name} ({', '.join(parts)})" if parts else name


class RandomAgent:
    """Uniformly random choice among the available actions (a reference point).

    Parameters
    ----------
    dim : int
        Feature dimension.
    n_agents : int or None
        ``B`` agents, or None for one.
    seed : int
        Seed of the generator.
    """

    def __init__(self, dim: int, n_agents: int | None = None, seed: int = 0) -> None:
        self.dim = int(dim)
        self.n_agents = n_agents
        self._rng = np.random.default_rng(seed)

    def act(self, actions: np.ndarray, mask: np.ndarray | None = None) -> Any:
        """Pick a uniformly random available action per agent."""
        a = np.asarray(actions)
        k = a.shape[-2]
        b = 1 if self.n_agents is None else self.n_agents
        u = self._rng.random((b, k))
        if mask is not None:
            u = np.where(np.asarray(mask).reshape(-1, k), u, -1.0)
        idx = u.argmax(axis=1).astype(np.int64)
        return int(idx[0]) if self.n_agents is None else idx

    def sample(self) -> np.ndarray:
        """A random direction (used on compact action sets)."""
        b = 1 if self.n_agents is None else self.n_agents
        v = self._rng.standard_normal((b, self.dim))
        return v[0] if self.n_agents is None else v

    def update(self, x: Any, r: Any, mask: Any = None) -> None:
        """Nothing to learn."""


_LIN = "ensemblepp.linear"
_NN = "ensemblepp.neural"
register_agent("ensemble++", f"{_LIN}:LinearEnsemble", batched=True,
               description="linear Ensemble++ (shared-factor ensemble, closed-form updates)")
register_agent("ts", f"{_LIN}:LinearTS", batched=True, description="exact linear Thompson sampling")
register_agent("es", f"{_LIN}:LinearEnsembleSampling", batched=True,
               description="ensemble sampling (Lu and Van Roy 2017)")
register_agent("linucb", f"{_LIN}:LinUCB", batched=True, description="LinUCB")
register_agent("greedy", f"{_LIN}:LinearGreedy", batched=True, description="greedy on the posterior mean")
register_agent("random", RandomAgent, batched=True, description="uniformly random actions")
register_agent("neural-ensemble++", f"{_NN}:NeuralEnsemble", batched=False,
               description="neural Ensemble++ (PyTorch)")
register_agent("ensemble+", f"{_NN}:EnsemblePlus", batched=False,
               description="Ensemble+ (Osband et al.), randomized prior ensemble")
register_agent("epinet", f"{_NN}:EpiNet", batched=False, description="EpiNet (Osband et al. 2023)")
register_agent("neural-greedy", f"{_NN}:NeuralGreedy", batched=False, description="greedy neural network")
