"""Experiments on Ray: the (agent, seed-chunk) cells of a run as Ray tasks.

A cell runs :func:`ensemblepp.experiments.run_experiment` on a worker for one agent and a chunk of
the seeds. Every agent's random stream is keyed by its environment seed (the runner's stream-id
contract), so seed ``s`` of a chunk is seed ``s`` of the whole run, and the assembled
:class:`~ensemblepp.experiments.Results` equal the serial run's except for the wall times.

``with use_executor(ray_executor(workers=2)):`` around any code that calls ``run_experiment``
(a configuration, a preset, a sweep driver) sends its cells to Ray; ``ensemblepp run --workers N``
and ``--address ADDR`` do exactly that.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

__all__ = ["RayExecutor", "ray_executor", "plan_cells"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the tests skip without ray
        raise ImportError('--workers/--address need Ray: pip install "ensemblepp[ray]"') from exc
    return ray


def plan_cells(cfg: Any, workers: int, seeds_per_task: int | None = None) -> list[tuple[int, list[int]]]:
    """The cells of an experiment: (agent index, positions of its seeds), in run order.

    An agent that the runner steps over all seeds at once (the linear policies, and the neural
    agents through ``MultiSeed``) is split into as few chunks as keep about two cells per worker
    over all agents: its step cost grows slowly with the chunk, so fewer, larger cells waste
    less. An agent stepped seed after seed gets one seed per cell. ``seeds_per_task`` overrides both. A batched agent without per-seed streams (no
    ``stream_ids``: its draws depend on the whole batch) stays one cell, so that its results
    still equal the serial run's.
    """
    from ensemblepp.envs import ENVIRONMENTS
    from ensemblepp.experiments import runner
    from ensemblepp.experiments.agents import agent_spec

    n = len(cfg.seeds)
    env_batched = ENVIRONMENTS[cfg.environment].batched
    cells = []
    for i, ac in enumerate(cfg.agents):
        spec = agent_spec(ac.name)
        multi = getattr(runner, "_multiseed_class", None)
        stepped_together = env_batched and (spec.batched or (
            multi is not None and multi(spec) is not None and not runner._is_compact(cfg)))
        if spec.batched and not runner._stream_ids(ac.name, 0):
            size = n
        elif seeds_per_task is not None:
            size = seeds_per_task
        elif stepped_together:
            chunks = min(n, math.ceil(2 * max(1, workers) / len(cfg.agents)))
            size = math.ceil(n / chunks)
        else:
            size = 1
        cells += [(i, list(range(lo, min(n, lo + size)))) for lo in range(0, n, size)]
    return cells


def _run_cell(raw: dict[str, Any], sink: Any) -> tuple[dict[str, Any], float]:
    """Worker side: run one cell, reporting finished steps to ``sink``; return arrays and seconds."""
    from ensemblepp.experiments import run_experiment

    def report(steps: int) -> None:
        sink.add.remote(steps)

    start = time.perf_counter()
    res = run_experiment(raw, progress=report if sink is not None else False)
    seconds = time.perf_counter() - start
    (label,) = res.agents
    return {"regret": res.regret[label], "reward": res.reward[label],
            "metrics": res.metrics.get(label, {}), "wall": res.wall_seconds[label]}, seconds


class _Sink:
    """Counts the steps finished by all cells (one progress bar for the whole run)."""

    def __init__(self) -> None:
        self.steps = 0

    def add(self, n: int) -> None:
        self.steps += n

    def total(self) -> int:
        return self.steps


class RayExecutor:
    """Runs experiment cells as Ray tasks and assembles one :class:`Results`.

    Parameters
    ----------
    workers : int, optional
        Local run: start Ray with this many CPUs (unless Ray is already running). With
        ``address``: at most this many cells at once. Default: every CPU Ray has.
    address : str, optional
        Address of an existing Ray cluster (``ray start --head`` prints it; ``"auto"`` finds a
        local one). ensemblepp must be installed on every node.
    seeds_per_task : int, optional
        Seeds per cell (see :func:`plan_cells`).
    task_options : dict, optional
        ``ray.remote`` options of the cell tasks (default ``num_cpus=1``).
    """

    def __init__(self, workers: int | None = None, address: str | None = None, seeds_per_task: int | None = None,
                 task_options: dict[str, Any] | None = None) -> None:
        for name, v in (("workers", workers), ("seeds_per_task", seeds_per_task)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address: expected a non-empty string, got {address!r}")
        self.workers = workers
        self.address = address
        self.seeds_per_task = seeds_per_task
        self.task_options = {"num_cpus": 1, **(task_options or {})}
        self._started = False

    def connect(self) -> Any:
        """Start a local Ray instance or join the cluster (once); return the ``ray`` module."""
        ray = _ray()
        if not ray.is_initialized():
            if self.address is not None:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            self._started = True
        return ray

    def shutdown(self) -> None:
        """Stop Ray if this executor started it."""
        if self._started:
            _ray().shutdown()
            self._started = False

    def run(self, cfg: Any, progress: Any = True, log: Any = None) -> Any:
        """Run every cell of ``cfg`` (an :class:`~ensemblepp.experiments.ExperimentConfig`).

        Returns
        -------
        Results
            As :func:`~ensemblepp.experiments.run_experiment` would; ``wall_seconds`` of an agent
            is the sum of its cells' times.
        """
        from ensemblepp import __version__
        from ensemblepp.experiments.results import Results
        from ensemblepp.experiments.runner import _Progress

        ray = self.connect()
        slots = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        cells = plan_cells(cfg, slots, self.seeds_per_task)
        base = cfg.to_dict()
        task = ray.remote(_run_cell).options(**self.task_options)
        bar = _Progress(cfg.horizon * len(cells), bool(progress))
        shown_bar = bar._bar is not None or bar._report is not None
        sink = ray.remote(_Sink).options(num_cpus=0).remote() if shown_bar else None
        n, T = len(cfg.seeds), cfg.horizon
        regret = {ac.label: np.zeros((n, T)) for ac in cfg.agents}
        reward = {ac.label: np.zeros((n, T)) for ac in cfg.agents}
        extra: dict[str, dict[str, np.ndarray]] = {ac.label: {} for ac in cfg.agents}
        wall = {ac.label: 0.0 for ac in cfg.agents}
        left = {i: sum(1 for a, _ in cells if a == i) for i in range(len(cfg.agents))}
        pending: dict[Any, tuple[int, list[int]]] = {}
        queue = list(cells)
        shown = 0
        try:
            while queue or pending:
                while queue and len(pending) < slots:
                    i, rows = queue.pop(0)
                    raw = {**base, "agents": [base["agents"][i]], "seeds": [cfg.seeds[j] for j in rows]}
                    raw.pop("n_seeds", None)
                    pending[task.remote(raw, sink)] = (i, rows)
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    i, rows = pending.pop(ref)
                    out, _seconds = ray.get(ref)
                    label = cfg.agents[i].label
                    regret[label][rows] = out["regret"]
                    reward[label][rows] = out["reward"]
                    for m, v in out["metrics"].items():
                        extra[label].setdefault(m, np.zeros((n, T)))[rows] = v
                    wall[label] += out["wall"]
                    left[i] -= 1
                    if left[i] == 0 and log is not None:
                        g = regret[label]
                        log(f"{label}: final cumulative regret {g.sum(axis=1).mean():.2f} in {wall[label]:.1f} s "
                            "(sum over cells)")
                if sink is not None:
                    steps = ray.get(sink.total.remote())
                    if steps > shown:
                        bar.update(steps - shown)
                        shown = steps
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
            if sink is not None:
                ray.kill(sink)
        return Results(config=base, version=__version__, agents=[a.label for a in cfg.agents],
                       seeds=list(cfg.seeds), regret=regret, reward=reward,
                       metrics={k: v for k, v in extra.items() if v}, wall_seconds=wall,
                       seconds_per_step={k: v / T for k, v in wall.items()})


def ray_executor(workers: int | None = None, address: str | None = None, **options: Any) -> RayExecutor:
    """A :class:`RayExecutor` (what ``ensemblepp run --workers N --address ADDR`` uses)."""
    return RayExecutor(workers=workers, address=address, **options)
