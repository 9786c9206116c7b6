"""Run agents x one environment x seeds and collect :class:`Results`.

Batched agents (the linear policies) hold every seed in one object and step
all seeds together against a batched environment: one Python iteration per
step, whatever the number of seeds. The neural agents of ``ensemblepp.neural``
are stepped the same way through :class:`~ensemblepp.neural.MultiSeed` on
batched environments; other unbatched agents run seed after seed against
single-instance environments; instance ``b`` of the
batched environment and the single environment with seed ``seeds[b]`` are the
same problem with the same noise, so both kinds of agents meet the same
instances.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import inspect
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import check_options
from ..envs import ENVIRONMENTS, Environment, make_environment
from .agents import agent_label, agent_spec, make_agent, normalize_options
from .results import Results

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the python3.10 smoke test of .ci/run
    import tomli as tomllib

__all__ = ["AgentConfig", "ExperimentConfig", "ConfigError", "run_experiment", "load_config",
           "estimate_memory", "DEFAULT_CONFIG", "use_executor", "neural_seed"]


class ConfigError(ValueError):
    """An experiment configuration that cannot run: unknown or bad keys, names or options, or a
    size that does not fit in memory. The message names the key at fault."""


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
        ConfigError
            A ``ValueError`` naming the offending key; also when the run's arrays (seeds x
            horizon x agents, and the action sets) would not fit in the available memory.
        """
        try:
            return cls._from_dict(raw)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def _from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        if not isinstance(raw, dict):
            raise ValueError("configuration must be a table/mapping")
        known = {"name", "description", "horizon", "seeds", "n_seeds", "seed", "agent_seed",
                 "plot_metric", "environment", "agents"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"configuration: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        horizon = _int(raw.get("horizon", 1000), "horizon", minimum=1)
        seed = _int(raw.get("seed", 0), "seed", minimum=0)
        # Seeds given as a count are only listed after the size check below.
        seeds: list[int] | None = None
        if "seeds" in raw:
            if "n_seeds" in raw:
                raise ValueError("configuration: give either 'seeds' (a list) or 'n_seeds', not both")
            seeds_raw = raw["seeds"]
            if isinstance(seeds_raw, (int, np.integer)) and not isinstance(seeds_raw, bool):
                n_seeds = _int(seeds_raw, "seeds", minimum=1)
            elif isinstance(seeds_raw, (list, tuple)) and seeds_raw:
                seeds = [_int(s, "seeds", minimum=0) for s in seeds_raw]
                if len(set(seeds)) != len(seeds):
                    raise ValueError("seeds: repeated seed")
                n_seeds = len(seeds)
            else:
                raise ValueError("seeds: expected a non-empty list of ints or a count")
        else:
            n_seeds = _int(raw.get("n_seeds", 10), "n_seeds", minimum=1)
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
        name = check_name(raw.get("name", "experiment"), "name")
        check_memory(n_seeds, horizon, len(agents), _effective_options(spec, env_options))
        if seeds is None:
            seeds = [seed + i for i in range(n_seeds)]
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
    # TOML writes large counts as floats (1e6); an integral float is taken as the integer.
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer() \
            and abs(value) < 2.0**63:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_+=,.@ -]{0,127}")


def check_name(name: Any, what: str = "name") -> str:
    """Validate an experiment name used as a file stem inside the output folder.

    A name is 1 to 128 characters of letters, digits, space and ``_+=,.@-``, not starting with
    ``.``, ``-`` or a space: no path separator, no ``..``, nothing absolute, so ``OUTPUT/NAME.json``
    always stays inside ``OUTPUT``.

    Raises
    ------
    ConfigError
        Naming ``what`` and the rule broken.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what}: expected a non-empty string, got {name!r}")
    if not _NAME.fullmatch(name) or name.rstrip() != name:
        raise ConfigError(f"{what}: {name!r} is not a plain file name (1-128 letters, digits, spaces or _+=,.@-, "
                          f"not starting with '.', '-' or a space; no '/' or '\\')")
    return name


def _effective_options(spec: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The environment factory's defaults, the registry's defaults, then the user's options."""
    try:
        params = inspect.signature(spec.factory).parameters.values()
        base = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):  # a builtin without a signature: only the explicit options
        base = {}
    return {**base, **spec.defaults, **options}


def estimate_memory(n_seeds: int, horizon: int, n_agents: int, env_options: dict[str, Any] | None = None,
                    n_metrics: int = 0) -> int:
    """Bytes a run holds at once, at least (a lower bound used to refuse impossible runs).

    Per agent and seed, the per-step regret and reward and any extra metric are kept for the
    whole run (8 bytes each per step); the batched environment holds ``n_seeds`` action sets of
    ``n_actions x dim`` values when those options are integers; each seed also costs a few
    Python objects.
    """
    n, T, A = int(n_seeds), int(horizon), int(n_agents)
    total = A * n * T * 8 * (2 + int(n_metrics)) + 2 * n * T * 8 + 120 * n
    opts = env_options or {}
    K, d = opts.get("n_actions"), opts.get("dim")
    if isinstance(K, int) and isinstance(d, int) and not isinstance(K, bool) and not isinstance(d, bool):
        total += n * max(K, 0) * max(d, 0) * 8
    return total


def available_memory() -> int | None:
    """Bytes of memory this process can still get (MemAvailable, within a cgroup limit), or None."""
    avail: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    try:  # a container's own limit (cgroup v2)
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            room = max(int(limit) - used, 0)
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def check_memory(n_seeds: int, horizon: int, n_agents: int, env_options: dict[str, Any] | None = None,
                 n_metrics: int = 0) -> None:
    """Refuse a run whose arrays cannot fit in the available memory, before allocating any.

    Raises
    ------
    ConfigError
        With the sizes, the estimate and what is available.
    """
    need = estimate_memory(n_seeds, horizon, n_agents, env_options, n_metrics)
    avail = available_memory()
    if avail is not None and need > avail:
        raise ConfigError(
            f"n_seeds x horizon x agents: {n_seeds} seeds x {horizon} steps x {n_agents} agent(s) need at least "
            f"{_bytes(need)} of memory but {_bytes(avail)} is available; lower n_seeds or horizon")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML configuration file into a mapping.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable or not valid TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc


def _check_runnable(cfg: ExperimentConfig) -> tuple[str, ...]:
    """Build the environment and one of each agent once; return the environment's extra metrics.

    This is the boundary between user errors and bugs: an error raised while building from the
    user's options is a :class:`ConfigError`; nothing is caught once the run has started.
    """
    for ac in cfg.agents:
        try:
            check_options(agent_spec(ac.name).resolve(), ac.options, f"agent {ac.name!r}",
                          reserved=("dim", "n_agents", "seed"))
        except (ValueError, RuntimeError) as exc:  # RuntimeError: an optional dependency is missing
            raise ConfigError(str(exc)) from exc
    try:
        probe = make_environment(cfg.environment, seed=cfg.seeds[0], **cfg.env_options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"environment {cfg.environment!r}: {exc}") from exc
    metrics = tuple(probe.metrics)
    check_memory(len(cfg.seeds), cfg.horizon, len(cfg.agents),
                 _effective_options(ENVIRONMENTS[cfg.environment], cfg.env_options), len(metrics))
    for ac in cfg.agents:
        try:
            make_agent(ac.name, probe.dim, n_agents=None, seed=cfg.agent_seed, **ac.options)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(f"agent {ac.label!r}: {exc}") from exc
    return metrics


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


def _host(a: Any) -> np.ndarray:
    """A NumPy copy of an agent's answer: CuPy (``.get()``) and torch arrays come to the host here,
    once per step; NumPy arrays and Python numbers pass through."""
    if isinstance(a, (np.ndarray, np.generic, int, float)):
        return np.asarray(a)
    if hasattr(a, "__cuda_array_interface__") and hasattr(a, "get"):
        return np.asarray(a.get())  # CuPy: one device-to-host copy (implicit conversion is refused)
    if type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _choose(agent: Any, env: Environment, batch: int | None) -> tuple[Any, np.ndarray]:
    """Ask ``agent`` for an action; return what ``env.step`` takes and the played vector(s)."""
    if env.compact:
        if hasattr(agent, "act_sphere"):
            x = _host(agent.act_sphere()).astype(np.float64, copy=False)
            return x, x
        theta = _host(agent.sample()).astype(np.float64, copy=False)
        norm = np.linalg.norm(theta, axis=-1, keepdims=True)
        # A zero draw has no direction; any unit vector is then as good a guess.
        x = np.where(norm > 0, theta / np.where(norm > 0, norm, 1.0), 1.0 / np.sqrt(theta.shape[-1]))
        return x, x
    actions = env.actions()
    mask = env.mask()
    if batch is None:
        if mask is None:
            a = int(_host(agent.act(actions)))
        else:
            avail = np.flatnonzero(mask)
            a = int(avail[int(_host(agent.act(actions[avail])))])
        return a, actions[a]
    a = _host(agent.act(actions, mask=mask) if mask is not None else agent.act(actions)).astype(np.int64, copy=False)
    # Actions are (K, d) when shared by all instances, (B, K, d) otherwise.
    return a, (actions[a] if actions.ndim == 2 else actions[np.arange(batch), a])


def _stream_ids(name: str, ids: Any) -> dict[str, Any]:
    """``{"stream_ids": ids}`` for agents keyed by (seed, stream id), else nothing."""
    params = inspect.signature(agent_spec(name).resolve()).parameters
    accepts = "stream_ids" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {"stream_ids": ids} if accepts else {}


def neural_seed(agent_seed: int, env_seed: int) -> int:
    """Seed of the unbatched (neural) agent that meets environment seed ``env_seed``.

    Derived from both numbers by :class:`numpy.random.SeedSequence`, so that
    the agent of seed ``s`` is the same whichever other seeds run beside it
    (alone or in a :class:`~ensemblepp.neural.MultiSeed` batch) and different
    ``agent_seed`` values give unrelated agents.

    Parameters
    ----------
    agent_seed : int
        The configuration's ``agent_seed``.
    env_seed : int
        The environment seed.

    Returns
    -------
    int
        A seed in ``[0, 2**63)``.
    """
    state = np.random.SeedSequence([int(agent_seed), int(env_seed)]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def _multiseed_class(spec: Any) -> Any:
    """The NeuralAgent subclass behind an unbatched registry entry, or None."""
    if spec.batched:
        return None
    target = spec.target
    if isinstance(target, str) and not target.startswith("ensemblepp.neural:"):
        return None
    ctor = spec.resolve()
    from ..neural import NeuralAgent

    return ctor if isinstance(ctor, type) and issubclass(ctor, NeuralAgent) else None


def _is_compact(cfg: ExperimentConfig) -> bool:
    return bool(getattr(ENVIRONMENTS[cfg.environment].factory, "compact", False))


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
    multiseed = _multiseed_class(spec)
    if env_spec.batched and (spec.batched or (multiseed is not None and not _is_compact(cfg))):
        env = make_environment(cfg.environment, n_instances=n, seed=cfg.seeds, **cfg.env_options)
        if spec.batched:
            # The environment seeds are the agents' stream ids: seed s of this run is the run of s alone.
            agent = make_agent(ac.name, env.dim, n_agents=n, seed=cfg.agent_seed,
                               **_stream_ids(ac.name, list(cfg.seeds)), **ac.options)
        else:
            # Neural agents: every seed in one batched computation, each seed exactly
            # the agent run_experiment would build for it alone (neural_seed).
            from ..neural import MultiSeed

            opts = normalize_options({**spec.defaults, **ac.options})
            agent = MultiSeed(multiseed, env.dim, [neural_seed(cfg.agent_seed, s) for s in cfg.seeds], **opts)
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
                agent = make_agent(ac.name, env.dim, n_agents=None, seed=neural_seed(cfg.agent_seed, seed),
                                   **ac.options)
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

    Raises
    ------
    ConfigError
        Before anything runs, when the configuration is invalid, an environment or agent cannot
        be built from its options (a ``ValueError``, ``TypeError`` or ``RuntimeError`` from its
        constructor, e.g. ``device="cuda"`` without a GPU), or the run would not fit in memory.
        Errors raised once the run has started propagate unchanged.
    """
    from .. import __version__

    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
    metrics = _check_runnable(cfg)
    executor = _EXECUTOR.get()
    if executor is not None:
        return executor.run(cfg, progress=progress, log=log)
    total = 0
    for ac in cfg.agents:
        spec = agent_spec(ac.name)
        together = ENVIRONMENTS[cfg.environment].batched and (
            spec.batched or (_multiseed_class(spec) is not None and not _is_compact(cfg)))
        total += cfg.horizon * (1 if together else len(cfg.seeds))
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
