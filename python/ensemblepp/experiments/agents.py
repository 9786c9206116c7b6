"""Registry of agents the experiment runner can build by name.

A *batched* agent holds all ``B`` seeds of a run in one object (the linear
policies of the compiled core, ``n_agents=B``); an unbatched agent (the
PyTorch ones) is built once per seed. Agents are registered as import strings
(``"ensemblepp.linear:LinearTS"``), so the registry loads neither the compiled
core nor torch by itself; other code adds agents with :func:`register_agent`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._registry import Entry, Registry, check_options

__all__ = ["AgentSpec", "AGENTS", "register_agent", "make_agent", "agent_label", "RandomAgent",
           "make_text_agent"]

# Short names accepted in configurations and on the command line.
ALIASES = {"M": "ensemble_size"}


@dataclass(frozen=True)
class AgentSpec(Entry):
    """A named agent constructor.

    Attributes
    ----------
    name : str
        Registry name.
    target : str or callable
        The class, or ``"module:attribute"`` imported on first use.
    description : str
        One line for ``ensemblepp agents``.
    defaults : dict
        Options applied before the user's.
    batched : bool
        Built once for all seeds with ``n_agents=B`` (True) or once per seed.
    """

    batched: bool = True

    def resolve(self) -> Callable[..., Any]:
        """Import and return the constructor (see :meth:`Entry.load`)."""
        return self.load()


AGENTS: Registry[AgentSpec] = Registry("agent")


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
    AGENTS.add(AgentSpec(name, target, description, dict(defaults or {}), batched), replace=replace)


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


def make_text_agent(kind: str, dim: int | None = None, *, seed: int = 0, fine_tune: bool = True,
                    device: str = "cpu", **options: Any) -> Any:
    """A neural agent whose feature network is the MiniLM text encoder.

    Parameters
    ----------
    kind : {"ensemble++", "greedy"}
        :class:`~ensemblepp.neural.NeuralEnsemble` or
        :class:`~ensemblepp.neural.NeuralGreedy`.
    dim : int, optional
        Ignored (the runner passes the environment's width; the agent takes
        ``(text, action)`` pairs).
    seed : int, default 0
        Agent seed.
    fine_tune : bool, default True
        Train the encoder with the agent (False freezes its weights).
    device : str, default "cpu"
        Device of the agent and the encoder.
    **options
        Further agent options (``ensemble_size``, ``prior_scale``, ...).

    Returns
    -------
    NeuralEnsemble or NeuralGreedy
    """
    from ..neural import NeuralEnsemble, NeuralGreedy
    from ..text import TextActionEncoder

    classes = {"ensemble++": NeuralEnsemble, "greedy": NeuralGreedy}
    if kind not in classes:
        raise ValueError(f"kind must be one of {sorted(classes)}, got {kind!r}")
    net = TextActionEncoder(device=device, trainable=bool(fine_tune))
    return classes[kind](None, feature_net=net, seed=seed, device=device, **options)


def _text_ensemble(dim: int | None = None, *, seed: int = 0, **options: Any) -> Any:
    return make_text_agent("ensemble++", dim, seed=seed, **options)


def _text_greedy(dim: int | None = None, *, seed: int = 0, **options: Any) -> Any:
    return make_text_agent("greedy", dim, seed=seed, **options)


# name, target, batched, description: the built-in agents.
_HERE, _LIN, _NN = "ensemblepp.experiments.agents", "ensemblepp.linear", "ensemblepp.neural"
for _name, _target, _batched, _description in [
    ("ensemble++", f"{_LIN}:LinearEnsemble", True, "linear Ensemble++ (shared-factor ensemble, closed-form updates)"),
    ("ts", f"{_LIN}:LinearTS", True, "exact linear Thompson sampling"),
    ("es", f"{_LIN}:LinearEnsembleSampling", True, "ensemble sampling (Lu and Van Roy 2017)"),
    ("linucb", f"{_LIN}:LinUCB", True, "LinUCB"),
    ("greedy", f"{_LIN}:LinearGreedy", True, "greedy on the posterior mean"),
    ("random", f"{_HERE}:RandomAgent", True, "uniformly random actions"),
    ("neural-ensemble++", f"{_NN}:NeuralEnsemble", False, "neural Ensemble++ (PyTorch)"),
    ("ensemble+", f"{_NN}:EnsemblePlus", False, "Ensemble+ (Osband et al.), randomized prior ensemble"),
    ("epinet", f"{_NN}:EpiNet", False, "EpiNet (Osband et al. 2023)"),
    ("neural-greedy", f"{_NN}:NeuralGreedy", False, "greedy neural network"),
    ("text-ensemble++", f"{_HERE}:_text_ensemble", False,
     "neural Ensemble++ on (text, action) pairs through MiniLM (fine_tune=True|False)"),
    ("text-greedy", f"{_HERE}:_text_greedy", False,
     "greedy network on (text, action) pairs through MiniLM (fine_tune=True|False)"),
]:
    register_agent(_name, _target, batched=_batched, description=_description)
del _name, _target, _batched, _description
