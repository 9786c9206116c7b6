"""Model files: atomic writes, and a loader that refuses every damaged or crafted file cleanly.

Each case below was accepted, or failed with an unrelated exception, by the former ``.npz``
loader; now every one is a :class:`ensemblepp.ModelFileError` naming the file and the field,
and an undamaged file restores an agent that continues the same trajectory.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ensemblepp as epp
from ensemblepp import files

LINEAR = {
    "LinearEnsemble": lambda **kw: epp.LinearEnsemble(4, 3, **kw),
    "LinearTS": lambda **kw: epp.LinearTS(4, **kw),
    "LinearEnsembleSampling": lambda **kw: epp.LinearEnsembleSampling(4, 3, **kw),
    "LinUCB": lambda **kw: epp.LinUCB(4, alpha=0.7, **kw),
    "LinearGreedy": lambda **kw: epp.LinearGreedy(4, **kw),
}


def _trained(name: str, n_agents: int | None = 2, steps: int = 6, **kw: Any) -> Any:
    agent = LINEAR[name](n_agents=n_agents, seed=5, **kw)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        X = rng.normal(size=(5, 4))
        a = np.asarray(agent.act(X))
        agent.update(X[a], rng.normal(size=a.shape) if n_agents else float(rng.normal()))
    return agent


def _state(agent: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in agent._state_arrays().items()}


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b) and repr(a) == repr(b)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        assert sa[k].dtype == sb[k].dtype, k
    np.testing.assert_array_equal(a._prior_cov, b._prior_cov)
    np.testing.assert_array_equal(a._prior_mean, b._prior_mean)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Trusted reader of a file this test wrote (the test's own view, not the loader's)."""
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("meta.json"))
        arrays = {n[:-4]: np.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in zf.namelist() if n != "meta.json"}
    return meta, arrays


def _write_raw(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, seal: bool = True) -> None:
    """Write an archive exactly as given (valid CRCs, the digest left as it is); with ``seal``
    the whole-file checksum is recomputed as ``save`` does, so deeper checks are reached."""
    with zipfile.ZipFile(path, "w") as zf:
        if seal:
            zf.comment = bytes(files._SEAL_BYTES)
        zf.writestr("meta.json", json.dumps(meta))
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=True)
            zf.writestr(k + ".npy", buf.getvalue())
    if seal:
        with open(path, "r+b") as f:
            files._seal(f)


def _craft(path: Path, edit: Callable[[dict[str, Any], dict[str, np.ndarray]], None], *, redigest: bool = True) -> None:
    """Edit a saved file's meta and arrays and write it back; with ``redigest`` the digest and the
    array table are recomputed, so only the loader's semantic checks can find the change."""
    meta, arrays = _read(path)
    edit(meta, arrays)
    if redigest:
        meta = {k: v for k, v in meta.items() if k not in ("arrays", "digest", "format", "version")} | {
            k: meta[k] for k in ("format", "version") if k in meta}
        fmt, ver = meta.pop("format", files.FORMAT), meta.pop("version", files.VERSION)
        table = {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()}
        meta.update(format=fmt, version=ver, arrays=table)
        meta["digest"] = files._digest(meta, arrays)
    _write_raw(path, meta, arrays)


def _refused(path: Path, field: str | None = None, device: str | None = None) -> files.ModelFileError:
    with pytest.raises(epp.ModelFileError) as info:
        epp.load(path, device=device)
    assert str(path) in str(info.value) and info.value.field
    if field is not None:
        assert field in str(info.value).replace(str(path), ""), str(info.value)
    return info.value


# ---- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LINEAR))
def test_a_version_1_file_is_converted_and_continues_the_trajectory(tmp_path: Path, name: str) -> None:
    # Version 1 stored the precision factor U (P = U^T U) as "prec" and the accumulator F = P A;
    # build such a file from a saved agent, independently of the loader's conversion.
    rng = np.random.default_rng(3)
    d = 4
    agent = LINEAR[name](n_agents=2, seed=4)
    agent.update(rng.normal(size=(2, 6, d)), rng.normal(size=(2, 6)))
    path = tmp_path / "v1.epp"
    agent.save(path)

    def to_version_1(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        L = arrays.pop("cov_root")
        U = np.stack([np.linalg.inv(Lb).T for Lb in L])  # Sigma = L^T L = U^-1 U^-T
        arrays["prec"] = np.triu(U)
        if "factor" in arrays:
            P = np.swapaxes(U, 1, 2) @ U
            arrays["factor"] = (P @ arrays["factor"].astype(np.float64)).astype(arrays["factor"].dtype)
        meta["version"] = 1

    _craft(path, to_version_1)
    loaded = epp.load(path)
    want, got = agent._state_arrays(), loaded._state_arrays()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)
    X = rng.normal(size=(5, d))
    np.testing.assert_array_equal(loaded.act(X), agent.act(X))
    # Its own invariants are checked: a version 1 factor that is not upper triangular is refused.
    agent.save(path)

    def bad(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        to_version_1(meta, arrays)
        arrays["prec"][0, 2, 0] = 0.5

    _craft(path, bad)
    _refused(path, "prec")


@pytest.mark.parametrize("name", list(LINEAR))
@pytest.mark.parametrize("n_agents", [None, 3])
def test_linear_round_trip_continues_the_trajectory(tmp_path: Path, name: str, n_agents: int | None) -> None:
    agent = _trained(name, n_agents=n_agents)
    agent.save(tmp_path / "a.epp")
    back = epp.load(tmp_path / "a.epp")
    _same(agent, back)
    assert back.device == "cpu" and back.seed == agent.seed
    rng = np.random.default_rng(2)
    for _ in range(5):
        X = rng.normal(size=(6, 4))
        a, b = np.asarray(agent.act(X)), np.asarray(back.act(X))
        np.testing.assert_array_equal(a, b)
        r = rng.normal(size=a.shape) if n_agents else float(rng.normal())
        agent.update(X[a], r)
        back.update(X[b], r)
    _same(agent, back)


def test_float32_and_full_prior_round_trip(tmp_path: Path) -> None:
    S = np.array([[2.0, 0.3, 0, 0], [0.3, 1.0, 0, 0], [0, 0, 1.5, 0.1], [0, 0, 0.1, 0.5]])
    agent = _trained("LinearEnsemble", dtype="float32", prior_var=S, prior_mean=np.arange(4.0))
    agent.save(tmp_path / "a.epp")
    _same(agent, epp.load(tmp_path / "a.epp"))


def test_save_replaces_an_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.epp"
    path.write_bytes(b"old contents")
    agent = _trained("LinearTS")
    agent.save(path)
    _same(agent, epp.load(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.epp"]


def test_a_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.epp"
    old = _trained("LinearTS")
    old.save(path)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="space"):
        _trained("LinearTS", steps=9).save(path)
    monkeypatch.undo()
    _same(old, epp.load(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.epp"]


def test_load_is_the_package_level_function_and_the_error_a_value_error() -> None:
    assert epp.load is files.load
    assert issubclass(epp.ModelFileError, ValueError)
    with pytest.raises(epp.ModelFileError, match="file"):
        epp.load("/nonexistent/x.epp")


# ---- device ------------------------------------------------------------------------------------
def test_a_file_saved_on_a_missing_device_loads_on_the_cpu_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "a.epp"
    agent = _trained("LinearEnsemble")
    agent.save(path)
    _craft(path, lambda m, a: m.update(device="cuda"))
    if epp.has_cuda():
        assert epp.load(path).device == "cuda"
    else:
        with pytest.warns(RuntimeWarning, match="cuda"):
            back = epp.load(path)
        assert back.device == "cpu"
        _same(agent, back)
    assert epp.load(path, device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device"):
        epp.load(path, device="tpu")


# ---- damaged files -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Any]:
    agent = _trained("LinearEnsemble", n_agents=2)
    path = tmp_path_factory.mktemp("saved") / "a.epp"
    agent.save(path)
    return path.read_bytes(), agent


@pytest.mark.parametrize("keep", [0, 1, 21, 100, 0.25, 0.5, 0.75, 0.95, -22, -1])
def test_truncated_files_are_refused(tmp_path: Path, saved: tuple[bytes, Any], keep: float) -> None:
    data, _ = saved
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path = tmp_path / "t.epp"
    path.write_bytes(data[:n])
    _refused(path)


def test_bit_flips_are_refused(tmp_path: Path, saved: tuple[bytes, Any]) -> None:
    """A flipped bit anywhere, zip headers and timestamps included, is a ModelFileError."""
    data, agent = saved
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.integers(0, len(data), 120).tolist()) | set(range(0, 40)) | set(range(len(data) - 60, len(data))))
    path = tmp_path / "f.epp"
    refused = harmless = 0
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            back = epp.load(path)
        except epp.ModelFileError:
            refused += 1
        else:
            _same(agent, back)
            harmless += 1
    assert (refused, harmless) == (len(positions), 0)


CRAFTED: dict[str, tuple[Callable[[dict[str, Any], dict[str, np.ndarray]], None], str]] = {
    "NaN in the mean": (lambda m, a: a["mean"].__setitem__((0, 1), np.nan), "mean"),
    "inf in the factor": (lambda m, a: a["factor"].__setitem__((1, 0, 0), np.inf), "factor"),
    "NaN prior mean": (lambda m, a: a["prior_mean"].__setitem__(0, np.nan), "prior_mean"),
    "non-symmetric prior covariance": (lambda m, a: a["prior_cov"].__setitem__((0, 1), 3.0), "prior_var"),
    "indefinite prior covariance": (lambda m, a: a.__setitem__("prior_cov", np.diag([1.0, -1.0, 1.0, 1.0])), "prior_var"),
    "covariance factor not triangular": (lambda m, a: a["cov_root"].__setitem__((0, 0, 2), 0.5), "cov_root"),
    "covariance factor with a zero pivot": (lambda m, a: a["cov_root"].__setitem__((1, 3, 3), 0.0), "cov_root"),
    "covariance factor with a negative pivot": (lambda m, a: a["cov_root"].__setitem__((1, 0, 0), -1.0), "cov_root"),
    "steps = -1 (wrapped)": (lambda m, a: a["steps"].__setitem__(0, np.uint64(2**64 - 1)), "steps"),
    "steps as signed -1": (lambda m, a: a.__setitem__("steps", np.array([-1, 3], np.int64)), "steps"),
    "repeated stream ids": (lambda m, a: a.__setitem__("stream_ids", np.array([7, 7], np.uint64)), "stream_ids"),
    "right size, wrong shape": (lambda m, a: a.__setitem__("cov_root", a["cov_root"].reshape(2, 16)), "cov_root"),
    "float32 array in a float64 agent": (lambda m, a: a.__setitem__("cov_root", a["cov_root"].astype(np.float32)), "cov_root"),
    "big-endian array": (lambda m, a: a.__setitem__("mean", a["mean"].astype(">f8")), "mean"),
    "Fortran-ordered array": (lambda m, a: a.__setitem__("cov_root", np.asfortranarray(a["cov_root"])), "cov_root"),
    "object array (pickle)": (lambda m, a: a.__setitem__("mean", a["mean"].astype(object)), "mean"),
    "missing array": (lambda m, a: a.pop("factor"), "factor"),
    "extra array": (lambda m, a: a.__setitem__("extra", np.zeros(3)), "extra"),
    "unknown class": (lambda m, a: m.update({"class": "LinearMagic"}), "class"),
    "neural family label on a linear file": (lambda m, a: m.update(family="neural", **{"class": "NeuralEnsemble"}), ""),
    "unknown family": (lambda m, a: m.update(family="quantum"), "family"),
    "other format": (lambda m, a: m.update(format="something-else"), "format"),
    "newer version": (lambda m, a: m.update(version=3), "version"),
    "version 1 header on version 2 arrays": (lambda m, a: m.update(version=1), "prec"),
    "unknown hyperparameter": (lambda m, a: m["hyperparameters"].update(colour="red"), "colour"),
    "missing hyperparameter": (lambda m, a: m["hyperparameters"].pop("noise_std"), "noise_std"),
    "dim as a string": (lambda m, a: m["hyperparameters"].update(dim="4"), "dim"),
    "n_agents larger than the arrays": (lambda m, a: m["hyperparameters"].update(n_agents=10**9), "cov_root"),
    "ensemble size larger than the arrays": (lambda m, a: m["hyperparameters"].update(ensemble_size=3000), "factor"),
    "negative noise": (lambda m, a: m["hyperparameters"].update(noise_std=-1.0), "noise_std"),
    "dtype 'double'": (lambda m, a: m["hyperparameters"].update(dtype="double"), "dtype"),
    "unknown reference distribution": (lambda m, a: m["hyperparameters"].update(reference="cauchy"), "reference"),
    "seed out of range": (lambda m, a: m["hyperparameters"].update(seed=-3), "seed"),
    "state in the JSON": (lambda m, a: m.update(state={"cov_root": [1]}), "state"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_files_are_refused(tmp_path: Path, saved: tuple[bytes, Any], case: str) -> None:
    edit, field = CRAFTED[case]
    path = tmp_path / "c.epp"
    path.write_bytes(saved[0])
    _craft(path, edit)
    _refused(path, field)


def test_a_linear_ts_file_relabelled_greedy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ts.epp"
    _trained("LinearTS").save(path)
    meta, arrays = _read(path)
    meta["class"] = "LinearGreedy"
    _write_raw(path, meta, arrays, seal=False)  # an edit of the label alone: the file's checksum fails
    _refused(path, "checksum")
    _write_raw(path, meta, arrays)  # ... and with the checksum redone, the content digest
    _refused(path, "digest")
    _craft(path, lambda m, a: None)  # the same edit with the digest recomputed: the counters give it away
    _refused(path, "steps")


def test_any_edit_without_the_digest_is_refused(tmp_path: Path, saved: tuple[bytes, Any]) -> None:
    path = tmp_path / "e.epp"
    path.write_bytes(saved[0])
    meta, arrays = _read(path)
    arrays["mean"][0, 0] += 1e-9  # a valid-looking state, with a valid CRC
    _write_raw(path, meta, arrays, seal=False)
    _refused(path, "checksum")
    _write_raw(path, meta, arrays)
    _refused(path, "digest")


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x05\x06" + b"\0" * 18])
def test_files_that_are_not_archives_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.epp"
    path.write_bytes(content)
    _refused(path)


def test_a_directory_and_meta_that_is_not_json_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "file")
    path = tmp_path / "m.epp"
    for text in (b"\xff{not json", b'{"format": "ensemblepp-model", "version": NaN}', b"[1, 2]"):
        with zipfile.ZipFile(path, "w") as zf:
            zf.comment = bytes(files._SEAL_BYTES)
            zf.writestr("meta.json", text)
        with open(path, "r+b") as f:
            files._seal(f)
        _refused(path, "meta.json")


def test_the_former_npz_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    np.savez(path, __meta__=np.array(json.dumps({"format": "ensemblepp-linear-2", "class": "LinearTS"})),
             prec=np.eye(3)[None])
    _refused(path, "meta.json")


def test_a_compressed_bomb_is_refused_from_the_directory_without_reading(tmp_path: Path, saved: tuple[bytes, Any]) -> None:
    """A ~1 MB file whose extra entry inflates to 1 GiB: refused before any entry is read."""
    path = tmp_path / "bomb.epp"
    path.write_bytes(saved[0])
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("extra.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            chunk = bytes(2**24)
            for _ in range(64):
                out.write(chunk)
    assert path.stat().st_size < 3 * 2**20
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("extra.npy").file_size == 2**30
    tracemalloc.start()
    try:
        err = _refused(path, "extra.npy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "compressed" in str(err)
    assert peak < 8 * 2**20, peak


def test_an_entry_declaring_more_bytes_than_the_file_is_refused(tmp_path: Path, saved: tuple[bytes, Any]) -> None:
    data = bytearray(saved[0])
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("mean.npy")
    # The central directory record of info.npy: patch its two 4-byte size fields.
    start = 0
    while True:
        start = data.find(b"PK\x01\x02", start)
        name_len = int.from_bytes(data[start + 28:start + 30], "little")
        if data[start + 46:start + 46 + name_len] == b"mean.npy":
            break
        start += 4
    assert info.file_size < 2**32 - 1
    data[start + 20:start + 28] = (2**31).to_bytes(4, "little") * 2
    path = tmp_path / "big.epp"
    path.write_bytes(bytes(data))
    _refused(path)


def test_a_stored_extra_entry_is_refused(tmp_path: Path, saved: tuple[bytes, Any]) -> None:
    path = tmp_path / "x.epp"
    path.write_bytes(saved[0])
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("payload.pkl", b"\x80\x04K\x01.")
    _refused(path, "checksum")
    with open(path, "r+b") as f:
        files._seal(f)
    _refused(path, "payload.pkl")


# ---- kill during save --------------------------------------------------------------------------
def test_sigkill_during_a_large_save_leaves_the_old_file_loadable(tmp_path: Path) -> None:
    """A child process saves a ~30 MB agent over the file again and again and is killed at random
    moments; the file must always load as one of the versions it wrote."""
    path = tmp_path / "big.epp"
    script = textwrap.dedent(f"""
        import sys, numpy as np, ensemblepp as epp
        agent = epp.LinearEnsemble(120, 4, n_agents=250, seed=1)
        X = np.random.default_rng(0).normal(size=(250, 120))
        agent.save({str(path)!r})
        print("ready", flush=True)
        while True:
            agent.update(X, np.ones(250))
            agent.save({str(path)!r})
    """)
    rng = np.random.default_rng(3)
    for attempt in range(4):
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as child:
            try:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
                time.sleep(float(rng.uniform(0.05, 0.8)))
            finally:
                os.kill(child.pid, signal.SIGKILL)
        back = epp.load(path)
        assert back.dim == 120 and back.n_agents == 250
    assert all(p.name == "big.epp" or p.name.endswith(".tmp") for p in tmp_path.iterdir())


# ---- neural agents -----------------------------------------------------------------------------
torch = pytest.importorskip("torch")
from ensemblepp import neural  # noqa: E402

NEURAL = {
    "NeuralEnsemble": lambda **kw: neural.NeuralEnsemble(3, 2, hidden=(6,), **kw),
    "EnsemblePlus": lambda **kw: neural.EnsemblePlus(3, 2, hidden=(6,), **kw),
    "EpiNet": lambda **kw: neural.EpiNet(3, 2, hidden=(6,), epinet_hidden=(4,), n_index_samples=3, **kw),
    "NeuralGreedy": lambda **kw: neural.NeuralGreedy(3, hidden=(6,), **kw),
}


def _neural(name: str, **kw: Any) -> Any:
    agent = NEURAL[name](update_start=3, batch_size=4, buffer_capacity=8, **kw)
    rng = np.random.default_rng(4)
    for _ in range(10):
        X = rng.normal(size=(4, 3))
        agent.update(X[agent.act(X)], float(rng.normal()))
    return agent


def _neural_same(a: Any, b: Any) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert type(a) is type(b) and a.seed == b.seed and sa["config"] == sb["config"]
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert torch.equal(sa["generator"], sb["generator"])
    assert (sa["n_seen"], sa["n_sgd_steps"]) == (sb["n_seen"], sb["n_sgd_steps"])


@pytest.mark.parametrize("name", list(NEURAL))
def test_neural_round_trip_continues_the_trajectory(tmp_path: Path, name: str) -> None:
    agent = _neural(name)
    agent.save(tmp_path / "n.epp")
    back = epp.load(tmp_path / "n.epp")
    _neural_same(agent, back)
    rng = np.random.default_rng(5)
    for _ in range(6):
        X = rng.normal(size=(4, 3))
        a, b = agent.act(X), back.act(X)
        assert a == b
        r = float(rng.normal())
        agent.update(X[a], r)
        back.update(X[b], r)
    _neural_same(agent, back)


def test_a_neural_agent_with_a_drawn_seed_keeps_it(tmp_path: Path) -> None:
    agent = neural.NeuralGreedy(3, hidden=(4,))
    agent.save(tmp_path / "n.epp")
    assert epp.load(tmp_path / "n.epp").seed == agent.seed


def test_a_neural_agent_with_a_custom_module_cannot_be_saved(tmp_path: Path) -> None:
    agent = neural.NeuralGreedy(3, feature_net=torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()), feature_dim=4)
    with pytest.raises(TypeError, match="feature_net"):
        agent.save(tmp_path / "n.epp")
    assert not (tmp_path / "n.epp").exists()


@pytest.fixture(scope="module")
def neural_saved(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("neural") / "n.epp"
    _neural("NeuralEnsemble").save(path)
    return path.read_bytes()


def _first(prefix: str) -> Callable[[dict[str, np.ndarray]], str]:
    return lambda arrays: next(k for k in sorted(arrays) if k.startswith(prefix))


def _set_array(pick: Callable[[dict[str, np.ndarray]], str], make: Callable[[np.ndarray], np.ndarray]) -> Any:
    def edit(m: dict[str, Any], a: dict[str, np.ndarray]) -> None:
        k = pick(a)
        a[k] = make(a[k])
    return edit


NEURAL_CRAFTED: dict[str, tuple[Any, str]] = {
    "exp_avg of the wrong shape (the heap corruption)": (
        _set_array(_first("optimizer/0/exp_avg"), lambda v: np.zeros(3, np.float32)), "optimizer/0/exp_avg"),
    "NaN weight": (_set_array(_first("model/"), lambda v: v * np.nan), "model"),
    "inf exp_avg_sq": (_set_array(_first("optimizer/0/exp_avg_sq"), lambda v: v + np.inf), "exp_avg_sq"),
    "negative exp_avg_sq": (_set_array(_first("optimizer/0/exp_avg_sq"), lambda v: v - 1), "exp_avg_sq"),
    "NaN buffer reward": (_set_array(lambda a: "buffer/r", lambda v: v * np.nan), "buffer"),
    "weight float64": (_set_array(_first("model/"), lambda v: v.astype(np.float64)), "model/"),
    "negative learning rate": (lambda m, a: m["state"]["optimizer"]["param_groups"][0].update(lr=-1.0), "lr"),
    "negative n_seen": (lambda m, a: m["state"].update(n_seen=-1), "n_seen"),
    "buffer position out of range": (lambda m, a: m["state"]["buffer"].update(pos=99), "buffer"),
    "optimizer state for a parameter it lacks": (
        lambda m, a: m["state"]["optimizer"]["state"].update({"99": ["step"]}), "optimizer/99"),
    "generator state of the wrong size": (_set_array(lambda a: "generator", lambda v: v[:5]), "generator"),
    "huge hidden width": (lambda m, a: m["hyperparameters"].update(hidden=[10**8]), "hidden"),
    "huge buffer": (lambda m, a: m["hyperparameters"].update(buffer_capacity=10**12), "buffer_capacity"),
    "buffer times index too large": (lambda m, a: m["hyperparameters"].update(buffer_capacity=1000, ensemble_size=1000),
                                     "buffer_capacity"),
    "unknown hyperparameter": (lambda m, a: m["hyperparameters"].update(colour=1), "colour"),
    "bad loss": (lambda m, a: m["hyperparameters"].update(loss="hinge"), "loss"),
    "relabelled EpiNet": (lambda m, a: m.update({"class": "EpiNet"}), ""),
    "relabelled linear": (lambda m, a: m.update(family="linear", **{"class": "LinearTS"}), ""),
}


@pytest.mark.parametrize("case", list(NEURAL_CRAFTED))
def test_crafted_neural_files_are_refused(tmp_path: Path, neural_saved: bytes, case: str) -> None:
    edit, field = NEURAL_CRAFTED[case]
    path = tmp_path / "c.epp"
    path.write_bytes(neural_saved)
    _craft(path, edit)
    _refused(path, field)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1])
def test_truncated_neural_files_are_refused(tmp_path: Path, neural_saved: bytes, keep: float) -> None:
    path = tmp_path / "t.epp"
    n = len(neural_saved) - 1 if keep == -1 else int(len(neural_saved) * keep)
    path.write_bytes(neural_saved[:n])
    _refused(path)


def test_neural_bit_flips_are_refused_or_harmless(tmp_path: Path, neural_saved: bytes) -> None:
    rng = np.random.default_rng(6)
    path = tmp_path / "f.epp"
    refused = 0
    positions = rng.integers(0, len(neural_saved), 40)
    for pos in positions:
        flipped = bytearray(neural_saved)
        flipped[int(pos)] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            epp.load(path)
        except epp.ModelFileError:
            refused += 1
    assert refused == len(positions)
