"""The ``ensemblepp`` command line: runs, plots, listings and bad options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ensemblepp.cli import main, parse_agent_spec, parse_value
from ensemblepp.experiments import load_results

TINY = ["-a", "random", "-a", "random:label=second", "-E", "dim=3", "-E", "n_actions=5", "-T", "20", "-n", "2",
        "-q"]


def _has_linear() -> bool:
    try:
        import ensemblepp.linear  # noqa: F401
    except ImportError:
        return False
    return True


def test_parse_values_and_agent_specs():
    assert parse_value("3") == 3 and parse_value("2.5") == 2.5 and parse_value("true") is True
    assert parse_value("[64, 64]") == [64, 64] and parse_value("cube") == "cube"
    assert parse_agent_spec("ensemble++:M=8,perturbation=cube,hidden=[4, 4]") == {
        "name": "ensemble++", "M": 8, "perturbation": "cube", "hidden": [4, 4]}
    assert parse_agent_spec("ts") == {"name": "ts"}


def test_run_writes_results_and_png_then_plot_redraws(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run", *TINY, "--name", "t", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "second" in out and "final cumulative_regret" in out
    res = load_results(tmp_path / "t.json")
    assert res.agents == ["random", "second"] and res.horizon == 20 and len(res.seeds) == 2
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path / "t.json"), "-o", str(tmp_path / "again.png"), "--logy"]) == 0
    assert (tmp_path / "again.png").stat().st_size > 1000


def test_run_to_csv_file(tmp_path: Path):
    target = tmp_path / "sub" / "r.csv"
    assert main(["run", *TINY, "-o", str(target), "--no-plot"]) == 0
    assert load_results(target).horizon == 20
    assert not target.with_suffix(".png").exists()


def test_run_from_toml(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "fromtoml"\nhorizon = 10\nn_seeds = 2\n[environment]\nname = "changing-linear"\n'
                   'dim = 3\nn_actions = 4\n[[agents]]\nname = "random"\n')
    assert main(["run", "--config", str(cfg), "-T", "12", "-o", str(tmp_path), "-q"]) == 0
    res = load_results(tmp_path / "fromtoml.json")
    assert res.horizon == 12 and res.config["environment"]["name"] == "changing-linear"


@pytest.mark.parametrize("argv, word", [
    (["run", "-a", "nope"], "unknown agent"),
    (["run", "-a", "random:colour=3"], "colour"),
    (["run", "-a", "random:oops"], "key=value"),
    (["run", "-a", "ensemble++:M=4,M=5"], "'M' is given twice"),
    (["run", "-E", "dim=3", "-E", "dim=5"], "'dim' is given twice"),
    (["run", "-T", "0"], "horizon"),
    (["run", "-n", "0"], "seeds"),
    (["run", "--seed", "-1"], "seed"),
    (["run", "--env", "nope"], "unknown name"),
    (["run", "-E", "dimm=3"], "dimm"),
    (["run", "--preset", "nope"], "unknown preset"),
    (["run", "--preset", "default", "-a", "ts"], "cannot be combined"),
    (["run", "--config", "missing.toml"], "not found"),
    (["run", *TINY, "--metric", "nope"], "metric"),
    (["plot", "missing.json"], "not found"),
])
def test_bad_options_exit_2_with_a_message(argv, word, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main([*argv, "-o", str(tmp_path)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ensemblepp: error:") and word in err
    assert not list(tmp_path.glob("*.json"))


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as info:
        main(["run", "--horizon", "abc"])
    assert info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_listings(capsys: pytest.CaptureFixture[str]):
    for command, word in (("presets", "linear-ensemble-size"), ("agents", "ensemble++"), ("envs", "finite-linear")):
        assert main([command]) == 0
        assert word in capsys.readouterr().out


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_default_run_with_no_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # The embedded default: 4 agents, FiniteLinear d=20, K=100, T=2000, 10 seeds (about a second).
    assert main(["run", "-q", "-o", str(tmp_path)]) == 0
    res = load_results(tmp_path / "default.json")
    assert res.horizon == 2000 and len(res.seeds) == 10 and len(res.agents) == 4
    final = {label: res.final(label)[0] for label in res.agents}
    assert final["greedy"] > final["exact TS"]
    assert (tmp_path / "default.png").exists()


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_short_preset_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--preset", "compact-linear", "-T", "10", "-n", "2", "-q", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "compact-linear-d10.json", "compact-linear-d10.png", "compact-linear-d50.json", "compact-linear-d50.png"}


def test_python_dash_m(tmp_path: Path):
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "python")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "ensemblepp", "run", "-a", "bogus"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2 and "unknown agent 'bogus'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "ensemblepp", "--version"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.strip()


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_set_passes_sweep_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--preset", "linear-min-ensemble", "-S", "d_values=[3]", "-S", "k_values=[5]", "-S", "k_dim=3",
            "-S", "d_actions=5", "-S", "candidates=[1, 2]", "-T", "10", "-n", "2", "-q", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "linear-min-ensemble.json").exists()
    assert main(["run", "-S", "colour=1", "-o", str(tmp_path)]) == 2
    assert "colour" in capsys.readouterr().err


def test_custom_run_drops_the_default_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run", *TINY, "--name", "mine", "-o", str(tmp_path), "--no-plot"]) == 0
    assert "FiniteLinear (d=20" not in capsys.readouterr().out
    assert load_results(tmp_path / "mine.json").config["description"] == ""


# -- safe boundaries (issue 10 item 3) -----------------------------------------------------------

_TOML = ('name = {name}\nhorizon = {horizon}\nn_seeds = {n_seeds}\n[environment]\nname = "finite-linear"\n'
         'dim = 2\nn_actions = 3\n[[agents]]\nname = "random"\n')


def _toml(tmp_path: Path, name: str = '"ok"', horizon: str = "5", n_seeds: str = "2") -> str:
    path = tmp_path / "c.toml"
    path.write_text(_TOML.format(name=name, horizon=horizon, n_seeds=n_seeds))
    return str(path)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ['"ABS"', '"../../escape"', '"sub/x"', '".."', '"..\\\\x"', '".hidden"',
                                  '"a\\u0000b"', '""', '" lead"', "3"])
def test_toml_name_cannot_leave_the_output_folder(name, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "a" / "b"
    name = name.replace("ABS", str(tmp_path / "escape-abs"))  # an absolute path
    config = _toml(tmp_path, name=name)
    before = _files(tmp_path)
    assert main(["run", "--config", config, "-o", str(out), "-q", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ensemblepp: error: name:")
    assert _files(tmp_path) == before


def test_name_option_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run", *TINY, "--name", "../x", "-o", str(tmp_path / "o"), "--no-plot"]) == 2
    assert "name:" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


_SIZE_CASES = [("5", "1_000_000_000_000"), ("1e13", "1"), ("10_000_000_000_000", "1"), ("1e9", "1e5")]


def test_sizes_are_checked_against_memory_before_allocating(tmp_path: Path):
    # In a child limited to 8 GiB of address space, so that a regression fails fast instead of
    # filling the machine's memory (listing 1e12 seeds grew by 4 GB in 17 s).
    script = tmp_path / "sizes.py"
    script.write_text(
        "import sys, time\n"
        "try:\n"
        "    import resource\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))\n"
        "except (ImportError, ValueError, OSError):\n"
        "    pass  # no address-space limit on this platform\n"
        "from ensemblepp.cli import main\n"
        "for config in sys.argv[2:]:\n"
        "    start = time.perf_counter()\n"
        "    rc = main(['run', '--config', config, '-o', sys.argv[1], '-q'])\n"
        "    print(rc, round(time.perf_counter() - start, 3), flush=True)\n")
    configs = []
    for i, (horizon, n_seeds) in enumerate(_SIZE_CASES):
        sub = tmp_path / str(i)
        sub.mkdir()
        configs.append(_toml(sub, horizon=horizon, n_seeds=n_seeds))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out"), *configs], capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.split("\n")[: len(configs)]
    assert done.returncode == 0, done.stderr[-2000:]
    for line in lines:
        rc, seconds = line.split()
        assert rc == "2" and float(seconds) < 5  # refused before anything is allocated
    errors = done.stderr.strip().split("\n")
    assert len(errors) == len(configs)
    for err in errors:
        assert err.startswith("ensemblepp: error: n_seeds x horizon") and "memory" in err and "available" in err
    assert not (tmp_path / "out").exists() or not _files(tmp_path / "out")


def test_memory_estimate_and_a_small_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]):
    from ensemblepp.experiments import runner

    # 3 agents x 2 seeds x 10 steps x (regret, reward, 1 metric), 2 cumulative curves while writing,
    # per-seed Python objects, and the batched environment's 2 action sets of 5 x 4.
    assert runner.estimate_memory(2, 10, 3, {"n_actions": 5, "dim": 4}, 1) == (
        3 * 2 * 10 * 8 * 3 + 2 * 2 * 10 * 8 + 120 * 2 + 2 * 5 * 4 * 8)
    monkeypatch.setattr(runner, "available_memory", lambda: 10_000)
    assert main(["run", *TINY, "-T", "1000", "-o", str(tmp_path)]) == 2
    assert "available" in capsys.readouterr().err and not _files(tmp_path)
    monkeypatch.setattr(runner, "available_memory", lambda: None)  # unknown: no check
    assert main(["run", *TINY, "-o", str(tmp_path), "--no-plot"]) == 0


def test_output_path_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "r.json").mkdir()
    assert main(["run", *TINY, "-o", str(tmp_path / "r.json")]) == 2
    assert "is a folder" in capsys.readouterr().err
    # The results path inside an output folder is itself a folder.
    (tmp_path / "o" / "t.json").mkdir(parents=True)
    assert main(["run", *TINY, "--name", "t", "-o", str(tmp_path / "o"), "--no-plot"]) == 2
    assert "is a folder" in capsys.readouterr().err
    # An output "folder" that is a file.
    (tmp_path / "plain").write_text("x")
    assert main(["run", *TINY, "-o", str(tmp_path / "plain")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_existing_results_are_not_replaced_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", *TINY, "--name", "t", "-o", str(tmp_path)]
    assert main(argv) == 0
    first = (tmp_path / "t.json").read_bytes()
    capsys.readouterr()
    assert main([*argv, "-T", "7"]) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err and str(tmp_path / "t.json") in err
    assert (tmp_path / "t.json").read_bytes() == first
    assert main([*argv, "-T", "7", "--force"]) == 0
    assert load_results(tmp_path / "t.json").horizon == 7
    # A file path, and a preset's files, likewise.
    target = tmp_path / "f.csv"
    assert main(["run", *TINY, "-o", str(target), "--no-plot"]) == 0
    assert main(["run", *TINY, "-o", str(target), "--no-plot"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_preset_files_are_not_replaced_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--preset", "compact-linear", "-T", "5", "-n", "2", "-q", "-o", str(tmp_path)]
    (tmp_path / "compact-linear-d50.png").write_bytes(b"keep")
    assert main(argv) == 2
    assert "compact-linear-d50.png" in capsys.readouterr().err
    assert _files(tmp_path) == {"compact-linear-d50.png"}
    assert main([*argv, "--force"]) == 0
    assert (tmp_path / "compact-linear-d50.png").read_bytes() != b"keep"


def _write_results(tmp_path: Path) -> Path:
    assert main(["run", *TINY, "--name", "r", "-o", str(tmp_path), "--no-plot"]) == 0
    return tmp_path / "r.json"


def _drop(doc, key):
    *parents, last = key.split(".")
    for p in parents:
        doc = doc[p]
    del doc[last]


@pytest.mark.parametrize("key", ["format", "version", "config", "agents", "seeds", "horizon", "results",
                                 "results.second", "results.second.cumulative_regret",
                                 "results.random.cumulative_reward"])
def test_results_file_missing_a_key_is_a_user_error(key, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import json

    path = _write_results(tmp_path)
    doc = json.loads(path.read_text())
    _drop(doc, key)
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["plot", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ensemblepp: error:") and str(path) in err
    assert key.split(".")[-1] in err or "not an ensemblepp results file" in err


@pytest.mark.parametrize("damage", ["truncate", "shape", "nan", "bool", "seeds", "horizon", "csv-row", "csv-cell",
                                    "csv-missing", "binary"])
def test_damaged_results_files_are_user_errors(damage, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import json

    path = _write_results(tmp_path)
    text = path.read_text()
    doc = json.loads(text)
    rows = doc["results"]["random"]["cumulative_regret"]
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage in ("shape", "nan", "bool", "seeds", "horizon"):
        if damage == "shape":
            rows[0].pop()
        elif damage == "nan":
            rows[1][3] = float("nan")
        elif damage == "bool":
            rows[1][3] = True
        elif damage == "seeds":
            doc["seeds"] = [0, 0]
        else:
            doc["horizon"] = 0
        path.write_text(json.dumps(doc))
    elif damage == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        csv_path = tmp_path / "r.csv"
        assert main(["run", *TINY, "--name", "r", "-o", str(csv_path), "--no-plot"]) == 0
        lines = csv_path.read_text().splitlines()
        if damage == "csv-row":
            lines[5] = lines[5] + ",extra"
        elif damage == "csv-cell":
            lines[5] = lines[5].replace(lines[5].split(",")[3], "abc", 1)
        else:
            del lines[7]
        csv_path.write_text("\n".join(lines) + "\n")
        path = csv_path
    capsys.readouterr()
    assert main(["plot", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"ensemblepp: error: {path}")


@pytest.mark.parametrize("exc", [TypeError("a bug"), RuntimeError("a bug"), KeyError("a bug"), ValueError("a bug")])
def test_bugs_end_in_a_traceback(exc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import ensemblepp.experiments as experiments

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(experiments, "run_experiment", broken)
    with pytest.raises(type(exc), match="a bug"):
        main(["run", *TINY, "-o", str(tmp_path)])


def test_interrupted_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ensemblepp.experiments import Results

    path = _write_results(tmp_path)
    before = path.read_bytes()
    res = load_results(path)

    def dies(self, fh):
        fh.write('{"format": "ensemblepp-results/1", "ver')
        raise KeyboardInterrupt

    monkeypatch.setattr(Results, "_write_json", dies)
    with pytest.raises(KeyboardInterrupt):
        res.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left
    with pytest.raises(FileExistsError):
        res.save(path, overwrite=False)


class _DeviceArray:
    """Stands in for a CuPy array: device memory that NumPy may not convert implicitly."""

    __cuda_array_interface__: dict = {}  # noqa: RUF012 - its presence is what marks a device array
    copies = 0

    def __init__(self, a):
        self._a = np.array(a)

    def get(self):
        _DeviceArray.copies += 1
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (as CuPy)")


class _OnHost:
    """A CPU LinearTS behind the runner's agent interface."""

    wrap = staticmethod(lambda a: a)

    def __init__(self, dim, n_agents=None, seed=0, stream_ids=None):
        from ensemblepp.linear import LinearTS

        self._agent = LinearTS(dim, n_agents=n_agents, seed=seed, stream_ids=stream_ids)

    def act(self, actions, mask=None):
        return self.wrap(self._agent.act(actions) if mask is None else self._agent.act(actions, mask=mask))

    def act_sphere(self):
        return self.wrap(self._agent.act_sphere())

    def update(self, x, r, mask=None):
        self._agent.update(x, r)


class _OnDevice(_OnHost):
    """The same agent answering with device arrays, as a device='cuda' agent does."""

    wrap = _DeviceArray


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
@pytest.mark.parametrize("env", [{"name": "finite-linear", "dim": 3, "n_actions": 5},
                                 {"name": "compact-linear", "dim": 3}])
@pytest.mark.parametrize("batched", [True, False])
def test_runner_steps_agents_that_answer_with_device_arrays(env, batched):
    from ensemblepp.experiments import AGENTS, register_agent, run_experiment

    register_agent("on-host-ts", _OnHost, batched=batched, description="test stand-in")
    register_agent("on-device-ts", _OnDevice, batched=batched, description="test stand-in")
    try:
        cfg = {"name": "dev", "horizon": 15, "n_seeds": 3, "seed": 2, "environment": env,
               "agents": [{"name": "on-host-ts", "label": "host"}, {"name": "on-device-ts", "label": "device"}]}
        _DeviceArray.copies = 0
        res = run_experiment(cfg, progress=False)
    finally:
        AGENTS.remove("on-host-ts")
        AGENTS.remove("on-device-ts")
    # One device-to-host copy per step: of all seeds when batched, of each seed otherwise.
    assert _DeviceArray.copies == 15 * (1 if batched else 3)
    np.testing.assert_array_equal(res.regret["device"], res.regret["host"])
    np.testing.assert_array_equal(res.reward["device"], res.reward["host"])
    assert res.regret["device"].shape == (3, 15) and np.isfinite(res.regret["device"]).all()


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_cuda_agent_without_a_gpu_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from ensemblepp import has_cuda

    if has_cuda():
        pytest.skip("a CUDA device is usable here")
    assert main(["run", "-a", "ts:device=cuda", "-E", "dim=3", "-E", "n_actions=4", "-T", "3", "-n", "2", "-q",
                 "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ensemblepp: error: agent") and "cuda" in err and not _files(tmp_path)


@pytest.mark.parametrize("override, word", [("colour=1", "unsupported override"), ("d_values=abc", "d_values"),
                                            ("k_dim=0", "k_dim"), ("candidates=[1, true]", "candidates")])
def test_sweep_driver_options_are_user_errors_before_any_cell_runs(override, word, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--preset", "linear-min-ensemble", "-S", override, "-S", "k_values=[5]", "-S", "k_dim=3",
            "-T", "5", "-n", "2", "-q", "-o", str(tmp_path)]
    if override.startswith("k_dim"):
        argv[argv.index("k_dim=3")] = "d_actions=5"
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("ensemblepp: error:") and word in captured.err
    assert "TS" not in captured.out  # no cell ran
