"""The ``_cuda`` module's host side: codes, configuration checks and argument validation.

These run wherever the module is built (nvcc at build time), with or without a GPU: every check
here happens before any CUDA call.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_cuda = pytest.importorskip("ensemblepp._cuda", reason="the CUDA module is not built (no nvcc)")

from ensemblepp import _core  # noqa: E402

BASE = dict(policy=0, dim=8, ensemble_size=4, reference=0, perturbation=1, reference_sparsity=2,
            perturbation_sparsity=2, noise_std=1.0, alpha=1.0, seed=3, dtype=1)  # fmt: skip


def config(**kw):
    return _cuda.LinearConfig(**{**BASE, **kw})


def state(**kw):
    args = dict(cov_root=4096, mean=8192, factor=12288, steps=16384, stream_ids=20480, work=0, n_agents=2)
    return _cuda.State(**{**args, **kw})


def test_device_count_is_a_non_negative_int() -> None:
    n = _cuda.device_count()
    assert isinstance(n, int) and n >= 0


def test_device_error_explains_a_zero_device_count() -> None:
    reason = _cuda.device_error()
    assert isinstance(reason, str)
    assert (reason == "") == (_cuda.device_count() > 0)


def test_policy_codes_match_the_cpu_core() -> None:
    assert dict(_cuda.POLICIES) == dict(_core.POLICIES)
    assert _cuda.NO_ERROR == 2**64 - 1


def test_config_keeps_its_fields() -> None:
    c = config(policy=3, dim=5, ensemble_size=7, seed=2**64 - 1, dtype=0)
    assert (c.policy, c.dim, c.ensemble_size, c.seed, c.dtype) == (3, 5, 7, 2**64 - 1, 0)


def test_one_config_type_serves_both_backends() -> None:
    # The same binding code (cpp/bindings/config_binding.hpp), keyword-only, in every module.
    cpu, gpu = _core.LinearConfig(**BASE), config()
    for field in BASE:
        assert getattr(cpu, field) == getattr(gpu, field), field
    with pytest.raises(TypeError):
        _cuda.LinearConfig(0, 8)  # positional arguments are refused
    for bad in ({"dim": 2**17 + 1}, {"ensemble_size": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            _core.LinearConfig(**{**BASE, **bad})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("policy", 5), ("policy", -1), ("dim", 0), ("ensemble_size", 0), ("reference", 5),
        ("perturbation", -1), ("reference_sparsity", 0), ("reference_sparsity", 5),
        ("perturbation_sparsity", 5), ("noise_std", 0.0), ("noise_std", float("nan")),
        ("alpha", -1.0), ("alpha", float("inf")), ("dtype", 2),
    ],
)  # fmt: skip
def test_bad_config_raises_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        config(**{field: value})


@pytest.mark.parametrize(("dim", "M", "dtype", "expected"), [
    (8, 4, 1, 0),                # 5 d + 2 M + 1 = 49 doubles: shared memory
    (1017, 16, 1, 0),            # 5118 doubles = 40,944 bytes: still shared
    (1018, 16, 1, 5123),         # 40,984 bytes: global workspace
    (1018, 16, 0, 5123),         # float32 agents too: the scratch is double whatever the dtype
    (4, 2600, 1, 20 + 5201),     # the ensemble size counts too
    (1018, 16, 1, 5123),         # LinUCB (below) needs no more: its scores need no solves
])  # fmt: skip
def test_workspace_size_switches_to_global_memory_above_40_kib(dim: int, M: int, dtype: int, expected: int) -> None:
    c = config(dim=dim, ensemble_size=M, reference_sparsity=1, perturbation_sparsity=1, dtype=dtype)
    assert _cuda.workspace_size(c) == expected
    ucb = config(policy=3, dim=dim, ensemble_size=M, reference_sparsity=1, perturbation_sparsity=1, dtype=dtype)
    assert _cuda.workspace_size(ucb) == expected


def test_missing_workspace_is_reported_before_any_launch() -> None:
    c = config(dim=2000, ensemble_size=4)
    with pytest.raises(ValueError, match="work"):
        _cuda.sample(c, state(), 1024, False, 0)


@pytest.mark.parametrize("field", ["cov_root", "mean", "steps", "stream_ids"])
def test_null_state_pointers_raise(field: str) -> None:
    with pytest.raises(ValueError, match="null device pointer"):
        _cuda.sample(config(), state(**{field: 0}), 1024, False, 0)


def test_policies_with_a_factor_need_one() -> None:
    for policy in (0, 2):
        with pytest.raises(ValueError, match="factor"):
            _cuda.sample(config(policy=policy), state(factor=0), 1024, False, 0)


def test_no_agents_raises() -> None:
    with pytest.raises(ValueError, match="n_agents"):
        _cuda.sample(config(), state(n_agents=0), 1024, False, 0)


def test_act_argument_checks() -> None:
    args = dict(config=config(), state=state(), actions=1024, n_actions=3, per_agent=False, mask=0,
                mask_per_agent=False, choice=2048, theta=3072, saved_steps=5120, errors=6144, stream=0)
    with pytest.raises(ValueError, match="empty"):
        _cuda.act(**{**args, "n_actions": 0})
    with pytest.raises(ValueError, match="actions: null"):
        _cuda.act(**{**args, "actions": 0})
    for name in ("choice", "theta", "saved_steps", "errors"):
        with pytest.raises(ValueError, match="null device pointer"):
            _cuda.act(**{**args, name: 0})


def test_update_argument_checks() -> None:
    args = dict(config=config(), state=state(), x=1024, r=2048, mask=0, n_obs=1, errors=3072, stream=0)
    with pytest.raises(ValueError, match="negative"):
        _cuda.update(**{**args, "n_obs": -1})
    with pytest.raises(ValueError, match="errors"):
        _cuda.update(**{**args, "errors": 0})
    with pytest.raises(ValueError, match="null device pointer"):
        _cuda.update(**{**args, "x": 0})


def test_cuda_backend_imports_without_loading_cupy() -> None:
    code = "import sys, ensemblepp, ensemblepp._cuda_backend; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_as_device_array_without_cupy_says_what_is_missing() -> None:
    pytest.importorskip("numpy")
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is installed")
    from ensemblepp._cuda_backend import as_device_array

    with pytest.raises(RuntimeError, match="CuPy"):
        as_device_array([1.0, 2.0], "float64", "x")


# ---- production loop (issue 12) --------------------------------------------------------------
def test_production_workspace_sizes() -> None:
    # The ragged update needs d more doubles with forgetting (the pseudo-observation's features).
    c = config(dim=1017, ensemble_size=16, reference_sparsity=1, perturbation_sparsity=1)
    assert _cuda.ragged_workspace_size(c, False) == 0  # 5118 doubles fit in 40 KiB
    assert _cuda.ragged_workspace_size(c, True) == 5118 + 1017
    # Probabilities: scratch_width (117 for d=20, M=8), counts and shares (2 K), then s0, G
    # (K x M) and one draw per thread (M x 128) in the agent's dtype.
    small = config(dim=20, ensemble_size=8)
    assert _cuda.probability_workspace_size(small, 80) == 0
    assert _cuda.probability_workspace_size(small, 1000) == 117 + 2000 + (1000 + 8000 + 8 * 128)
    assert _cuda.probability_workspace_size(config(dim=20, ensemble_size=8, dtype=0), 1000) == 117 + 2000 + 5012
    with pytest.raises(ValueError, match="empty"):
        _cuda.probability_workspace_size(small, 0)


def test_update_ragged_argument_checks() -> None:
    args = dict(config=config(), state=state(), gamma=1.0, dirs=0, targets=0, updates=0, x=1024, r=2048, mask=0,
                offsets=4096, n_rows=3, work=0, errors=3072, stream=0)
    with pytest.raises(ValueError, match="negative"):
        _cuda.update_ragged(**{**args, "n_rows": -1})
    for name in ("errors", "offsets", "x"):
        with pytest.raises(ValueError, match=name):
            _cuda.update_ragged(**{**args, name: 0})
    for gamma in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="forgetting"):
            _cuda.update_ragged(**{**args, "gamma": gamma})
    with pytest.raises(ValueError, match="forgetting: null"):
        _cuda.update_ragged(**{**args, "gamma": 0.9})
    with pytest.raises(ValueError, match="work"):  # d = 2000 needs a global workspace
        _cuda.update_ragged(**{**args, "config": config(dim=2000)})


def test_action_probabilities_argument_checks() -> None:
    args = dict(config=config(), state=state(), actions=1024, n_actions=3, per_agent=False, mask=0,
                mask_per_agent=False, n_samples=16, ties_first=False, out=2048, work=0, errors=3072, stream=0)
    with pytest.raises(ValueError, match="empty"):
        _cuda.action_probabilities(**{**args, "n_actions": 0})
    with pytest.raises(ValueError, match="actions: null"):
        _cuda.action_probabilities(**{**args, "actions": 0})
    for n in (0, 2**48 + 1):
        with pytest.raises(ValueError, match="n_samples"):
            _cuda.action_probabilities(**{**args, "n_samples": n})
    for name in ("out", "errors"):
        with pytest.raises(ValueError, match="null device pointer"):
            _cuda.action_probabilities(**{**args, name: 0})
    with pytest.raises(ValueError, match="work"):  # 10,000 actions do not fit in shared memory
        _cuda.action_probabilities(**{**args, "n_actions": 10_000})
