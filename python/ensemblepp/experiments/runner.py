"""Run agents x one environment x seeds and collect :class:`Results`.

Batched agents (the linear policies) hold every seed in one object and step
all seeds together against a batched environment: one Python iteration per
step, whatever the number of seeds. Unbatched agents (the neural ones) run
seed after seed against single-instance environments; instance ``b`` of the
batched environment and the single environment with seed ``seeds[b]`` are the
same problem with the same noise, so both kinds of agents meet the same
instances.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import inspect
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import ENVIRONMENTS, Environment, check_options, make_environment
from .agents import agent_label, agent_spec, make_agent, normalize_options
from .results import Results

__all__ = ["AgentConfig", "ExperimentConfig", "run_experiment", "load_config", "DEFAULT_CONFIG", "use_executor"]

# Where run_experiment sends its cells (ensemblepp.distributed's Ray executor); None: here.
_EXECUTOR: contextvars.ContextVar[Any] = contextvars.ContextVar("ensemblepp_executor", default=None)


@contextlib.contextmanager
def use_executor(executor: Any) -> Iterator[None]:
    """Run every :func:`run_experiment` call in this block with ``executor.run(cfg, progress, log)``.

    Parameters
    ----------
    executor : object or None
        For example :func:`ensemblepp.distributed.ray_executor` (``ensemblepp run --workers N``);
        None runs in this process.
    """
    token = _EXECUTOR.set(executor)
    try:
        yield
    finally:
        _EXECUTOR.reset(token)

#: The embedded default comparison run by ``ensemblepp run`` with no arguments.
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "default",
    "description": "Ensemble++ vs exact TS vs ensemble sampling vs greedy on FiniteLinear (d=20, K=100)",
    "horizon": 2000,
    "n_seeds": 10,
    "seed": 0,
    "environment": {"name": "finite-linear", "dim": 20, "n_actions": 100},
    "agents": [
        {"name": "ensemble++", "label": "Ensemble++ (M=16)", "ensemble_size": 16},
        {"name": "ts", "label": "exact TS"},
        {"name": "es", "label": "ensemble sampling (M=16)", "ensemble_size": 16},
        {"name": "greedy", "label": "greedy"},
    ],
}


@dataclass
class AgentConfig:
    """One agent of an experiment: registry name, display label, options."""

    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """A validated experiment configuration.

    Attributes
    ----------
    name : str
        Short name (used for default file names and plot titles).
    environment : str
        Registry name of the environment.
    env_options : dict
        Environment constructor options.
    agents : list of AgentConfig
        Agents to compare.
    horizon : int
        Steps ``T``.
    seeds : list of int
        Environment seeds, one per independent run.
    agent_seed : int
        Seed of the batched agents' generators (unbatched agents use ``seeds``).
    description : str
        Free text.
    plot_metric : str
        Metric drawn by default.
    """

    name: str
    environment: str
    env_options: dict[str, Any]
    agents: list[AgentConfig]
    horizon: int
    seeds: list[int]
    agent_seed: int = 0
    description: str = ""
    plot_metric: str = "cumulative_regret"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        """Validate a configuration mapping (the TOML schema).

        Keys: ``name``, ``description``, ``horizon``, ``seeds`` (a list) or
        ``n_seeds`` with base ``seed``, ``agent_seed``, ``plot_metric``,
        ``environment = {name, **options}``, ``agents = [{name, label?, **options}]``.

        Raises
        ------
        ValueError
            Naming the offending key.
        """
        if not isinstance(raw, dict):
            raise ValueError("configuration must be a table/mapping")
        known = {"name", "description", "horizon", "seeds", "n_seeds", "seed", "agent_seed",
                 "plot_metric", "environment", "agents"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"configuration: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        horizon = _int(raw.get("horizon", 1000), "horizon", minimum=1)
        seed = _int(raw.get("seed", 0), "seed", minimum=0)
        if "seeds" in raw:
            if "n_seeds" in raw:
                raise ValueError("configuration: give either 'seeds' (a list) or 'n_seeds', not both")
            seeds_raw = raw["seeds"]
            if isinstance(seeds_raw, (int, np.integer)) and not isinstance(seeds_raw, bool):
                seeds = [seed + i for i in range(_int(seeds_raw, "seeds", minimum=1))]
            elif isinstance(seeds_raw, (list, tuple)) and seeds_raw:
                seeds = [_int(s, "seeds", minimum=0) for s in seeds_raw]
                if len(set(seeds)) != len(seeds):
                    raise ValueError("seeds: repeated seed")
            else:
                raise ValueError("seeds: expected a non-empty list of ints or a count")
        else:
            n = _int(raw.get("n_seeds", 10), "n_seeds", minimum=1)
            seeds = [seed + i for i in range(n)]
        env = raw.get("environment")
        if not isinstance(env, dict) or "name" not in env:
            raise ValueError("environment: expected a table with a 'name' key")
        env_name = env["name"]
        if env_name not in ENVIRONMENTS:
            raise ValueError(f"environment: unknown name {env_name!r}; known: {', '.join(sorted(ENVIRONMENTS))}")
        env_options = {k: v for k, v in env.items() if k != "name"}
        spec = ENVIRONMENTS[env_name]
        check_options(spec.factory, {**spec.defaults, **env_options}, f"environment {env_name!r}",
                      reserved=("n_instances", "seed"))
        agents_raw = raw.get("agents")
        if not isinstance(agents_raw, list) or not agents_raw:
            raise ValueError("agents: expected a non-empty list of tables with a 'name' key")
        agents: list[AgentConfig] = []
        for i, a in enumerate(agents_raw):
            if not isinstance(a, dict) or "name" not in a:
                raise ValueError(f"agents[{i}]: expected a table with a 'name' key")
            agent_spec(a["name"])  # raises for an unknown name
            opts = normalize_options({k: v for k, v in a.items() if k not in ("name", "label")})
            label = a.get("label") or agent_label(a["name"], opts)
            if not isinstance(label, str):
                raise ValueError(f"agents[{i}].label: expected a string")
            agents.append(AgentConfig(a["name"], label, opts))
        labels = [a.label for a in agents]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"agents: repeated label(s) {', '.join(dupes)}; give each a distinct 'label'")
        name = raw.get("name", "experiment")
        if not isinstance(name, str) or not name:
            raise ValueError("name: expected a non-empty string")
        return cls(name=name, environment=env_name, env_options=env_options, agents=agents,
                   horizon=horizon, seeds=seeds, agent_seed=_int(raw.get("agent_seed", seed), "agent_seed", minimum=0),
                   description=str(raw.get("description", "")),
                   plot_metric=str(raw.get("plot_metric", "cumulative_regret")))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (round-trips through :meth:`from_dict`)."""
        return {"name": self.name, "description": self.description, "horizon": self.horizon,
                "seeds": list(self.seeds), "agent_seed": self.agent_seed, "plot_metric": self.plot_metric,
                "environment": {"name": self.environment, **copy.deepcopy(self.env_options)},
                "agents": [{"name": a.name, "label": a.label, **copy.deepcopy(a.options)} for a in self.agents]}


def _int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML configuration file into a mapping.

    Raises
    ------
    ValueError
        If the file is missing or not valid TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from exc


class _Progress:
    """A tqdm bar over all steps of all agents; silent when not on a terminal.

    ``enabled`` may also be a callable, which then receives every count instead of a bar.
    """

    def __init__(self, total: int, enabled: bool | Callable[[int], None]) -> None:
        self._bar = None
        self._report = enabled if callable(enabled) else None
        if self._report is None and enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is in the plot extra
                return
            self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.5)

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def update(self, n: int) -> None:
        if self._report is not None:
            self._report(n)
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _choose(agent: Any, env: Environment, batch: int | None) -> tuple[Any, np.ndarray]:
    """Ask ``agent`` for an action; return what ``env.step`` takes and the played vector(s)."""
    if env.compact:
        if hasattr(agent, "act_sphere"):
            x = np.asarray(agent.act_sphere(), dtype=np.float64)
            return x, x
        theta = np.asarray(agent.sample(), dtype=np.float64)
        norm = np.linalg.norm(theta, axis=-1, keepdims=True)
        # A zero draw has no direction; any unit vector is then as good a guess.
        x = np.where(norm > 0, theta / np.where(norm > 0, norm, 1.0), 1.0 / np.sqrt(theta.shape[-1]))
        return x, x
    actions = env.actions()
    mask = env.mask()
    if batch is None:
        if mask is None:
            a = int(agent.act(actions))
        else:
            avail = np.flatnonzero(mask)
            a = int(avail[int(agent.act(actions[avail]))])
        return a, actions[a]
    a = np.asarray(agent.act(actions, mask=mask) if mask is not None else agent.act(actions), dtype=np.int64)
    # Actions are (K, d) when shared by all instances, (B, K, d) otherwise.
    return a, (actions[a] if actions.ndim == 2 else actions[np.arange(batch), a])


def _stream_ids(name: str, ids: Any) -> dict[str, Any]:
    """``{"stream_ids": ids}`` for agents keyed by (seed, stream id), else nothing."""
    params = inspect.signature(agent_spec(name).resolve()).parameters
    accepts = "stream_ids" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {"stream_ids": ids} if accepts else {}


def _run_agent(cfg: ExperimentConfig, ac: AgentConfig, progress: _Progress,
               metrics: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], float]:
    spec = agent_spec(ac.name)
    env_spec = ENVIRONMENTS[cfg.environment]
    n, T = len(cfg.seeds), cfg.horizon
    regret = np.zeros((n, T))
    reward = np.zeros((n, T))
    extra = {m: np.zeros((n, T)) for m in metrics}
    chunk = max(1, T // 100)
    start = time.perf_counter()
    if spec.batched and env_spec.batched:
        env = make_environment(cfg.environment, n_instances=n, seed=cfg.seeds, **cfg.env_options)
        # The environment seeds are the agents' stream ids: seed s of this run is the run of s alone.
        agent = make_agent(ac.name, env.dim, n_agents=n, seed=cfg.agent_seed,
                           **_stream_ids(ac.name, list(cfg.seeds)), **ac.options)
        for t in range(T):
            a, x = _choose(agent, env, n)
            r, g = env.step(a)
            agent.update(x, r)
            reward[:, t] = r
            regret[:, t] = g
            if metrics:
                info = env.info()
                for m in metrics:
                    extra[m][:, t] = info[m]
            if (t + 1) % chunk == 0 or t + 1 == T:
                progress.update(chunk if (t + 1) % chunk == 0 else (t + 1) % chunk)
    else:
        for i, seed in enumerate(cfg.seeds):
            if env_spec.batched:
                env = make_environment(cfg.environment, n_instances=None, seed=seed, **cfg.env_options)
            else:
                env = make_environment(cfg.environment, seed=seed, **cfg.env_options)
            if spec.batched:
                keyed = _stream_ids(ac.name, seed)
                agent = make_agent(ac.name, env.dim, n_agents=None,
                                   seed=cfg.agent_seed if keyed else cfg.agent_seed + i, **keyed, **ac.options)
            else:
                agent = make_agent(ac.name, env.dim, n_agents=None, seed=seed, **ac.options)
            for t in range(T):
                a, x = _choose(agent, env, None)
                r, g = env.step(a)
                agent.update(x, r)
                reward[i, t] = r
                regret[i, t] = g
                if metrics:
                    info = env.info()
                    for m in metrics:
                        extra[m][i, t] = info[m]
                if (t + 1) % chunk == 0 or t + 1 == T:
                    progress.update(chunk if (t + 1) % chunk == 0 else (t + 1) % chunk)
    return regret, reward, extra, time.perf_counter() - start


def run_experiment(config: ExperimentConfig | dict[str, Any], progress: bool | Callable[[int], None] = True,
                   log: Callable[[str], None] | None = None) -> Results:
    """Run every agent of ``config`` on its environment for all seeds.

    Parameters
    ----------
    config : ExperimentConfig or dict
        The experiment (a mapping is validated with :meth:`ExperimentConfig.from_dict`).
    progress : bool or callable, default True
        Show a tqdm progress bar (only when stderr is a terminal), or call ``progress(steps)``
        as steps finish.
    log : callable, optional
        Called with one line per finished agent.

    Returns
    -------
    Results
        Per-step regret, reward and extra metrics ``(n_seeds, horizon)`` per agent.
    """
    from .. import __version__

    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
    for ac in cfg.agents:
        # Fail on a bad option before any agent has run, not after an hour.
        check_options(agent_spec(ac.name).resolve(), ac.options, f"agent {ac.name!r}",
                      reserved=("dim", "n_agents", "seed"))
    executor = _EXECUTOR.get()
    if executor is not None:
        return executor.run(cfg, progress=progress, log=log)
    probe = make_environment(cfg.environment, seed=cfg.seeds[0], **cfg.env_options)
    metrics = tuple(probe.metrics)
    del probe
    total = 0
    for ac in cfg.agents:
        total += cfg.horizon * (1 if agent_spec(ac.name).batched and ENVIRONMENTS[cfg.environment].batched
                                else len(cfg.seeds))
    bar = _Progress(total, progress)
    regret, reward, extra, wall, per_step = {}, {}, {}, {}, {}
    try:
        for ac in cfg.agents:
            bar.describe(ac.label)
            g, r, m, seconds = _run_agent(cfg, ac, bar, metrics)
            regret[ac.label], reward[ac.label], extra[ac.label] = g, r, m
            wall[ac.label] = seconds
            per_step[ac.label] = seconds / cfg.horizon
            if log is not None:
                log(f"{ac.label}: final cumulative regret {g.sum(axis=1).mean():.2f} in {seconds:.1f} s")
    finally:
        bar.close()
    return Results(config=cfg.to_dict(), version=__version__, agents=[a.label for a in cfg.agents],
                   seeds=list(cfg.seeds), regret=regret, reward=reward,
                   metrics={k: v for k, v in extra.items() if v}, wall_seconds=wall,
                   seconds_per_step=per_step)
