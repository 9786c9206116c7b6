"""The ``ensemblepp`` command line (also ``python -m ensemblepp``).

``ensemblepp run`` runs an experiment (the embedded default comparison when
given no arguments, a preset, a TOML file or options), writes a results file
and a PNG and prints a summary table; ``ensemblepp plot RESULTS`` redraws the
plot of a results file; ``ensemblepp presets|agents|envs`` list what exists.

Errors: a user error (bad option, configuration, file, missing data or GPU, a
run too large for memory, an output that exists) prints ``ensemblepp: error:
...`` and exits with status 2; anything else is a bug and ends in a traceback.
User errors are the exception types listed in :func:`is_user_error`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the python3.10 smoke test of .ci/run
    import tomli as tomllib

__all__ = ["main", "build_parser", "parse_value", "parse_agent_spec", "UserError", "is_user_error"]


class UserError(Exception):
    """A user error of the command line, reported as ``ensemblepp: error: ...`` with exit status 2."""


CLIError = UserError  # the former name

# Exception types, by module and name, that report bad input rather than a bug. They are looked up
# in the modules already imported, so that checking an error never imports anything.
_USER_ERRORS = (
    ("ensemblepp.experiments.runner", "ConfigError"),
    ("ensemblepp.experiments.results", "ResultsFileError"),
    ("ensemblepp.datasets", "DownloadError"),
    ("ensemblepp.datasets", "ChecksumError"),
    ("ensemblepp.files", "ModelFileError"),
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad input (printed as ``error: ...``) rather than a bug.

    User errors are :class:`UserError`, the experiment's ``ConfigError`` (invalid configuration,
    options an agent or environment rejects, a run too large for memory), ``ResultsFileError``
    (a damaged or foreign results file), the data sets' ``DownloadError`` and ``ChecksumError``,
    and ``ModelFileError`` where that module exists.
    """
    if isinstance(exc, UserError):
        return True
    for module, name in _USER_ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return False


def parse_value(text: str) -> Any:
    """Read an option value as a TOML value (int, float, bool, list, quoted string), else a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_key_values(items: Sequence[str], what: str) -> dict[str, Any]:
    """Parse ``key=value`` strings into a mapping (values via :func:`parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"{what}: expected key=value, got {item!r}")
        if key in out:  # a typo, not an override: TOML configurations refuse a repeated key too
            raise UserError(f"{what}: {key!r} is given twice")
        out[key] = parse_value(value.strip())
    return out


def parse_agent_spec(spec: str) -> dict[str, Any]:
    """Parse ``NAME`` or ``NAME:key=value,key=value`` (``label=...`` sets the label).

    Examples
    --------
    >>> parse_agent_spec("ensemble++:M=8,perturbation=cube")
    {'name': 'ensemble++', 'M': 8, 'perturbation': 'cube'}
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise UserError(f"--agent: missing agent name in {spec!r}")
    return {"name": name, **parse_key_values(_split_top(rest), f"--agent {name}")}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ensemblepp`` command."""
    parser = argparse.ArgumentParser(
        prog="ensemblepp", description="Scalable approximate Thompson sampling with Ensemble++: experiments.")
    parser.add_argument("--version", action="store_true", help="print the package version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run an experiment (with no options: the embedded default comparison)",
                         description="Run agents on an environment over several seeds; write a results file "
                                     "and a PNG; print a summary table.")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--preset", metavar="NAME", help="a named experiment (see `ensemblepp presets`)")
    src.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    run.add_argument("--env", metavar="NAME", help="environment (see `ensemblepp envs`)")
    run.add_argument("-E", "--env-option", action="append", default=[], metavar="KEY=VALUE",
                     help="environment option, e.g. -E dim=50 -E n_actions=1000 (repeatable)")
    run.add_argument("-a", "--agent", action="append", default=[], metavar="SPEC",
                     help="agent NAME or NAME:key=value,... e.g. ensemble++:M=8,label=E8 (repeatable)")
    run.add_argument("-T", "--horizon", type=int, metavar="T", help="number of steps")
    run.add_argument("-n", "--seeds", type=int, metavar="N", help="number of seeds")
    run.add_argument("--seed", type=int, metavar="S", help="first seed (seeds are S, S+1, ...)")
    run.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                     help="top-level configuration override, e.g. -S agent_seed=3, or a sweep parameter "
                          "such as -S d_values=[10,20,50,100] for linear-min-ensemble (repeatable)")
    run.add_argument("--name", help="experiment name (file names and plot title)")
    run.add_argument("-o", "--output", default="results", metavar="PATH",
                     help="output folder, or a .json/.csv results file path (default: results/)")
    run.add_argument("--format", choices=("json", "csv"), help="results file format (default json)")
    run.add_argument("--metric", help="metric to plot and summarise (default: the experiment's)")
    run.add_argument("--no-plot", action="store_true", help="do not write a PNG")
    run.add_argument("-f", "--force", action="store_true",
                     help="replace results files and PNGs that already exist (default: refuse)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--workers", type=int, metavar="N",
                     help="run the (agent, seed-chunk) cells as N parallel Ray tasks on this machine "
                          "(needs the ray extra); the results equal the serial run's")
    run.add_argument("--address", metavar="ADDR",
                     help="run the cells on an existing Ray cluster (e.g. HOST:6379 or auto); with --workers, "
                          "at most N cells at once")

    plot = sub.add_parser("plot", help="redraw the plot of a results file")
    plot.add_argument("results", metavar="RESULTS", help="a .json or .csv results file")
    plot.add_argument("-o", "--output", metavar="PNG", help="PNG path (default: next to RESULTS)")
    plot.add_argument("--metric", default=None, help="metric to draw (default: the experiment's)")
    plot.add_argument("--logy", action="store_true", help="logarithmic y axis")
    plot.add_argument("--title", help="figure title")

    sub.add_parser("presets", help="list the named experiments")
    sub.add_parser("agents", help="list the agents")
    sub.add_parser("envs", help="list the environments")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    ov: dict[str, Any] = {}
    if args.horizon is not None:
        if args.horizon < 1:
            raise UserError(f"--horizon must be positive, got {args.horizon}")
        ov["horizon"] = args.horizon
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"--seeds must be positive, got {args.seeds}")
        ov["n_seeds"] = args.seeds
    if args.seed is not None:
        if args.seed < 0:
            raise UserError(f"--seed must be non-negative, got {args.seed}")
        ov["seed"] = args.seed
    for key, value in parse_key_values(args.set, "--set").items():
        if key in ("environment", "agents"):
            raise UserError(f"--set {key}: use --env/--env-option or --agent instead")
        ov[key] = value
    env_opts = parse_key_values(args.env_option, "--env-option")
    if env_opts:
        ov["environment"] = env_opts
    return ov


def _output_paths(output: str, name: str, fmt: str | None) -> tuple[Path, Path, str]:
    path = Path(output)
    if path.suffix.lower() in (".json", ".csv"):
        if path.is_dir():
            raise UserError(f"--output: {path} is a folder, not a results file; give a file path ending in "
                            f".json or .csv, or a folder name without that suffix")
        chosen = fmt or path.suffix.lower().lstrip(".")
        if fmt and path.suffix.lower() != f".{fmt}":
            raise UserError(f"--format {fmt} does not match the output file {path}")
        _check_folder(path.parent)
        return path, path.with_suffix(".png"), chosen
    chosen = fmt or "json"
    _check_folder(path)
    # The name was checked to be a plain file name (runner.check_name); this is the last guard.
    res = path / f"{name}.{chosen}"
    if os.path.dirname(os.path.normpath(res)) != os.path.normpath(path):
        raise UserError(f"name: {name!r} would write outside the output folder {path}")
    return res, path / f"{name}.png", chosen


def _check_folder(folder: Path) -> None:
    """The output folder exists (or can be made) and takes new files; checked before a run."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output: {folder} exists and is not a folder (give a folder, or a .json/.csv file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"--output: cannot write into {folder} ({exc.strerror or exc})") from exc


def _check_targets(paths: Sequence[Path], force: bool) -> None:
    """Refuse, before running, to write over a folder or (without ``--force``) an existing file."""
    for p in paths:
        if p.is_dir():
            raise UserError(f"--output: {p} is a folder; give a folder, or a file path ending in .json or .csv")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise UserError(f"{', '.join(existing)} already exist(s); pass --force to replace, "
                        f"or choose another --name or --output")


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiments import (DEFAULT_CONFIG, ExperimentConfig, PresetContext, get_preset, load_config,
                              run_experiment, run_preset)
    from .experiments.presets import apply_overrides

    overrides = _overrides(args)
    progress = not args.quiet
    if args.preset:
        if args.env or args.agent:
            raise UserError("--env and --agent cannot be combined with --preset (use --config to customise)")
        try:
            preset = get_preset(args.preset)
        except ValueError as exc:  # an unknown name: the lookup is the whole call
            raise UserError(str(exc)) from exc
        out = Path(args.output)
        if out.suffix.lower() in (".json", ".csv"):
            raise UserError("--output must be a folder for a preset (it may write several files)")
        fmt = args.format or "json"
        ctx = PresetContext(overrides=overrides, output_dir=out, fmt=fmt, progress=progress,
                            log=lambda line: print(line, flush=True))
        _check_folder(out)
        if preset.config is not None:
            # Validate every configuration, and look for files it would replace, before running any.
            from .experiments import preset_configs

            names = [ExperimentConfig.from_dict(cfg).name for cfg in preset_configs(args.preset, overrides)]
            _check_targets([out / f"{n}.{ext}" for n in names for ext in (fmt, "png")], args.force)
        elif not args.force:
            # A sweep driver names its own files; they all start with the preset's name.
            _check_targets(sorted(p for p in out.glob(f"{args.preset}*") if p.suffix in (".json", ".csv", ".png")),
                           False)
        files = run_preset(args.preset, ctx)
        print(f"preset {args.preset}: wrote {len(files)} file(s) under {out}")
        return 0

    raw = load_config(args.config) if args.config else dict(DEFAULT_CONFIG)
    if not isinstance(raw.get("environment", {}), dict):
        raise UserError("environment: expected a table with a 'name' key")
    if args.env:
        if args.env != raw.get("environment", {}).get("name"):
            raw["environment"] = {"name": args.env}
    if args.agent:
        raw["agents"] = [parse_agent_spec(s) for s in args.agent]
    if not args.config and (args.env or args.agent):
        # No longer the embedded default: drop its name and description.
        raw["name"] = "experiment"
        raw["description"] = ""
    if args.name:
        raw["name"] = args.name
    raw = apply_overrides(raw, overrides)
    config = ExperimentConfig.from_dict(raw)
    metric = args.metric or config.plot_metric
    res_path, png_path, fmt = _output_paths(args.output, config.name, args.format)
    _check_targets([res_path] if args.no_plot else [res_path, png_path], args.force)
    if config.description:
        print(f"{config.name}: {config.description}", flush=True)
    print(f"{config.environment} {config.env_options}, T={config.horizon}, {len(config.seeds)} seeds, "
          f"{len(config.agents)} agents", flush=True)
    results = run_experiment(config, progress=progress)
    if metric not in results.metric_names():
        raise UserError(f"--metric: unknown {metric!r}; available: {', '.join(results.metric_names())}")
    results.save(res_path, fmt=fmt, overwrite=args.force)
    print(results.summary(metric))
    print(f"results: {res_path}")
    if not args.no_plot:
        try:
            results.plot(png_path, metric=metric)
            print(f"plot: {png_path}")
        except ImportError:
            # The results file is already written; a missing optional dependency only costs the figure.
            print("ensemblepp: warning: matplotlib is not installed, no plot written "
                  "(pip install 'ensemblepp[plot]')", file=sys.stderr)
    return 0


def _cmd_run_on_ray(args: argparse.Namespace) -> int:
    """``run`` with ``--workers``/``--address``: every run_experiment call goes to Ray."""
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be positive, got {args.workers}")
    try:
        from .distributed import ray_executor
        from .distributed.experiments import _ray

        _ray()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    from .experiments.runner import use_executor

    executor = ray_executor(workers=args.workers, address=args.address)
    try:
        executor.connect()
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ... for a bad cluster
        raise CLIError(f"cannot start or reach Ray ({'--address ' + args.address if args.address else 'local'}): "
                       f"{exc}") from None
    try:
        with use_executor(executor):
            return _cmd_run(args)
    finally:
        executor.shutdown()


def _cmd_plot(args: argparse.Namespace) -> int:
    from .experiments import load_results

    results = load_results(args.results)
    metric = args.metric or results.config.get("plot_metric", "cumulative_regret")
    if metric not in results.metric_names():
        raise UserError(f"--metric: unknown {metric!r}; available: {', '.join(results.metric_names())}")
    out = Path(args.output) if args.output else Path(args.results).with_suffix(".png")
    if out.suffix.lower() != ".png":
        raise UserError(f"--output must end in .png, got {out}")
    results.plot(out, metric=metric, title=args.title, logy=args.logy)
    print(results.summary(metric))
    print(f"plot: {out}")
    return 0


def _cmd_list(what: str) -> int:
    if what == "presets":
        from .experiments import PRESETS

        for name, p in sorted(PRESETS.items()):
            print(f"{name}\n    {p.description}")
    elif what == "agents":
        from .experiments import AGENTS

        for name, a in sorted(AGENTS.items()):
            print(f"{name:<20} {'batched' if a.batched else 'per seed':<9} {a.description}")
    else:
        from .envs import ENVIRONMENTS

        for name, e in sorted(ENVIRONMENTS.items()):
            print(f"{name:<22} {e.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ensemblepp`` console script.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad options or input, 130 when interrupted.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command is None:
        # `ensemblepp` alone behaves like `ensemblepp run` with no arguments.
        args = parser.parse_args(["run", *argv])
    try:
        if args.command == "run":
            distributed = getattr(args, "workers", None) is not None or getattr(args, "address", None) is not None
            return _cmd_run_on_ray(args) if distributed else _cmd_run(args)
        if args.command == "plot":
            return _cmd_plot(args)
        return _cmd_list(args.command)
    except KeyboardInterrupt:
        print("ensemblepp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_user_error(exc):
            raise  # a bug: the traceback is what a report needs
        print(f"ensemblepp: error: {exc}", file=sys.stderr)
        return 2
