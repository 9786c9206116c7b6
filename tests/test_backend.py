"""The backend probe and the ``device`` argument, on fake CUDA modules (no GPU needed)."""

from __future__ import annotations

import pytest

from ensemblepp import _backend


class _FakeCuda:
    """The probe's view of a built ``_cuda`` module on a machine with ``count`` GPUs."""

    ARCHITECTURES = "80-real,86-real,89-real,90-real,80-virtual"

    def __init__(self, count=1, probe="", capability=(8, 0), name="NVIDIA A100-SXM4-40GB", error=""):
        self.count, self.probe, self.capability, self.name, self.error = count, probe, capability, name, error
        self.probed = []

    def device_count(self):
        return self.count

    def device_error(self):
        return self.error

    def device_info(self, index):
        return {"name": self.name, "compute_capability": self.capability, "total_memory": 1 << 34}

    def probe_device(self, index):
        self.probed.append(index)
        return self.probe


def test_a_gpu_the_build_cannot_run_is_reported_in_words():
    fake = _FakeCuda(probe="launching a kernel: no kernel image is available for execution on the device",
                     capability=(7, 5), name="Tesla T4")
    fake.ARCHITECTURES = "90-real,90-virtual"
    why = _backend._probe_module(fake, 0)
    assert fake.probed == [0]
    assert why.startswith("GPU 0 (Tesla T4, compute capability 7.5) cannot run this build's kernels")
    assert "compiled for 90-real;90-virtual" in why and "no kernel image" in why
    assert "ENSEMBLEPP_CUDA_ARCHITECTURES=75" in why


def test_a_gpu_that_runs_the_probe_is_usable():
    fake = _FakeCuda(count=2)
    assert _backend._probe_module(fake, 1) == "" and fake.probed == [1]


@pytest.mark.parametrize("fake, words", [
    (_FakeCuda(count=0), "no CUDA device is visible"),
    (_FakeCuda(count=0, error="CUDA driver version is insufficient for CUDA runtime version"), "driver version"),
])
def test_no_device(fake, words):
    assert words in _backend._probe_module(fake, 0) and fake.probed == []


def test_a_device_number_past_the_last_gpu():
    fake = _FakeCuda(count=2)
    why = _backend._probe_module(fake, 2)
    assert "cuda:2 does not exist" in why and "cuda:0 to cuda:1" in why and fake.probed == []


def test_probe_results_reach_has_cuda_and_backend_status(monkeypatch: pytest.MonkeyPatch):
    fake = _FakeCuda(probe="launching a kernel: no kernel image is available for execution on the device")
    monkeypatch.setattr(_backend, "_import_cuda", lambda: fake)
    _backend._probe_cuda.cache_clear()
    try:
        assert not _backend.has_cuda() and _backend.available_backends() == ["cpu"]
        status = _backend.backend_status()
        assert status["cpu"].startswith("available (")
        assert status["cuda"].startswith("unavailable: GPU 0 (NVIDIA A100-SXM4-40GB, compute capability 8.0)")
        with pytest.raises(RuntimeError, match="no kernel image"):
            _backend.check_device("cuda")
    finally:
        _backend._probe_cuda.cache_clear()


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "cpu:0", "cuda 0", ""])
def test_malformed_devices_are_refused(device):
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda' or 'cuda:N'"):
        _backend.check_device(device)


@pytest.mark.parametrize("device", [0, None, b"cuda"])
def test_non_string_devices_are_refused(device):
    with pytest.raises(TypeError, match="device"):
        _backend.check_device(device)


def test_cpu_is_accepted_in_any_case():
    assert _backend.check_device("cpu") == "cpu" and _backend.check_device("CPU") == "cpu"
    assert _backend.device_index("cpu") is None


def test_cuda_n_is_checked_against_the_devices_and_cupys_current_one(monkeypatch: pytest.MonkeyPatch):
    fake = _FakeCuda(count=2)
    monkeypatch.setattr(_backend, "_import_cuda", lambda: fake)
    monkeypatch.setattr(_backend, "_current_cuda_device", lambda: 0)
    _backend._probe_cuda.cache_clear()
    try:
        # CuPy's import is part of the probe; pretend it is there only if it really is.
        try:
            import cupy  # noqa: F401
        except ImportError:
            with pytest.raises(RuntimeError, match="CuPy is not installed"):
                _backend.check_device("cuda:0")
            import sys
            import types

            monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
        _backend._probe_cuda.cache_clear()
        fake.probed.clear()
        assert _backend.check_device("cuda:0") == "cuda" and _backend.check_device("cuda") == "cuda"
        assert _backend.device_index("cuda:1") == 1 and _backend.device_index("cuda") == 0
        with pytest.raises(ValueError, match="cuda:3 does not exist: 2 CUDA device"):
            _backend.check_device("cuda:3")
        # Device 1 exists, but the arrays would be allocated on CuPy's current device 0.
        with pytest.raises(ValueError, match=r"'cuda:1' is not CuPy's current device \(cuda:0\)"):
            _backend.check_device("cuda:1")
        assert fake.probed == [0, 1]  # each device probed once
        monkeypatch.setattr(_backend, "_current_cuda_device", lambda: 1)
        assert _backend.check_device("cuda:1") == "cuda"
    finally:
        _backend._probe_cuda.cache_clear()


def test_the_real_probe_without_a_gpu():
    # Here: either no CUDA module, or no usable device; the reason is in words, never an exception.
    status = _backend.backend_status()
    if _backend.has_cuda():
        pytest.skip("a CUDA device is usable here")
    assert status["cuda"].startswith("unavailable: ") and len(status["cuda"]) > len("unavailable: ") + 10
    with pytest.raises(RuntimeError, match="device='cuda' is unavailable"):
        _backend.check_device("cuda")


@pytest.mark.parametrize("isa, expected", [("", "native"), ("generic", "generic")])
def test_a_native_build_is_preferred(isa, expected):
    # A stand-in for the module ENSEMBLEPP_NATIVE=ON builds; ENSEMBLEPP_ISA=generic still wins.
    import os
    import subprocess
    import sys

    code = (
        "import sys, types\n"
        "import ensemblepp._core_generic as g\n"
        "fake = types.ModuleType('ensemblepp._core_native')\n"
        "fake.__dict__.update({k: v for k, v in vars(g).items() if not k.startswith('__')})\n"
        "sys.modules['ensemblepp._core_native'] = fake\n"
        "import ensemblepp._core as c\n"
        "print(c.ISA)\n")
    env = dict(os.environ, ENSEMBLEPP_ISA=isa)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
