"""The public linear API: signatures, seeds, dtypes, error messages and result types."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

import ensemblepp as epp
from ensemblepp.linear import _in_library_of

CLASSES = [epp.LinearEnsemble, epp.LinearTS, epp.LinearEnsembleSampling, epp.LinUCB, epp.LinearGreedy]
FACTOR = (epp.LinearEnsemble, epp.LinearEnsembleSampling)


def _make(cls: type, **kw: Any) -> Any:
    return cls(4, 3, **kw) if cls in FACTOR else cls(4, **kw)


# ---- signatures --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_only_dim_and_ensemble_size_are_positional_and_every_option_is_explicit(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    positional = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == (["dim", "ensemble_size"] if cls in FACTOR else ["dim"])
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params)
    assert not [p.name for p in params if p.name.startswith("_")]
    names = {p.name for p in params}
    assert {"prior_var", "noise_std", "prior_mean", "n_agents", "device", "dtype", "seed", "stream_ids"} <= names
    assert inspect.signature(cls).parameters["seed"].default is None
    for name in names - {"dim", "ensemble_size", "self"}:
        assert name in cls.__doc__ or name in epp.linear.LinearPolicy.__doc__, name


@pytest.mark.parametrize(("call", "what"), [
    (lambda: epp.LinUCB(3, 2.0), "LinUCB"),
    (lambda: epp.LinearTS(3, 10.0), "LinearTS"),
    (lambda: epp.LinearGreedy(3, 10.0), "LinearGreedy"),
    (lambda: epp.LinearEnsembleSampling(3, 4, 10.0), "LinearEnsembleSampling"),
    (lambda: epp.LinearEnsemble(3, 4, 10.0), "LinearEnsemble"),
    (lambda: epp.LinearEnsembleSampling(3, 4, alpha=1.0), "alpha"),
    (lambda: epp.LinearTS(3, _state={}), "_state"),
])
def test_options_passed_positionally_or_unknown_raise_type_error(call: Any, what: str) -> None:
    with pytest.raises(TypeError):
        call()


def test_linucb_takes_alpha_by_keyword() -> None:
    assert epp.LinUCB(3, alpha=2.0).alpha == 2.0


def test_load_has_one_documented_signature() -> None:
    sig = inspect.signature(epp.load)
    assert list(sig.parameters) == ["path", "device"] and sig.parameters["device"].default is None
    assert epp.linear.load.__doc__ and "ModelFileError" in epp.load.__doc__


# ---- seeds -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [epp.LinearEnsemble, epp.LinearTS, epp.LinearEnsembleSampling], ids=lambda c: c.__name__)
def test_seed_none_draws_a_seed_that_is_exposed_and_reproduces(cls: type) -> None:
    a, b = _make(cls), _make(cls)
    assert isinstance(a.seed, int) and 0 <= a.seed < 2**64 and a.seed != b.seed
    assert not np.array_equal(a.sample(), b.sample())  # independent, not perfectly correlated
    again = _make(cls, seed=a.seed)
    fresh = _make(cls, seed=a.seed)
    np.testing.assert_array_equal(again.sample(), fresh.sample())
    a2 = _make(cls, seed=a.seed)
    a2.sample()
    np.testing.assert_array_equal(a2.sample(), again.sample())


def test_an_explicit_seed_is_kept() -> None:
    assert epp.LinearTS(3, seed=123).seed == 123
    with pytest.raises(ValueError, match="seed"):
        epp.LinearTS(3, seed=-1)


# ---- dtypes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "expected"), [
    ("float64", np.float64), ("float32", np.float32), (np.float64, np.float64), (np.float32, np.float32),
    (np.dtype("float64"), np.float64), (np.dtype("float32"), np.float32),
])
def test_the_two_dtypes_and_their_numpy_spellings_are_accepted(dtype: Any, expected: type) -> None:
    agent = epp.LinearTS(3, dtype=dtype, seed=0)
    assert agent.dtype == np.dtype(expected)
    # Draws and scores are in the agent's dtype; the precision factor and mean stay float64 for
    # both (docs/design.md, state representation).
    assert agent.sample().dtype == np.dtype(expected)
    assert agent.precision_factor.dtype == np.float64


@pytest.mark.parametrize("dtype", ["double", "single", "f8", "f4", "d", "float", "Float64", float, np.float16,
                                   np.dtype(">f8"), np.int64, None, 64])
def test_other_dtype_spellings_are_refused(dtype: Any) -> None:
    with pytest.raises(ValueError, match="dtype: expected 'float64' or 'float32'"):
        epp.LinearTS(3, dtype=dtype)


def test_torch_dtypes_are_refused() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="dtype"):
        epp.LinearTS(3, dtype=torch.float64)


# ---- error messages report the shape the user passed --------------------------------------------
def _message(call: Any) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_a_batched_agent_given_a_scalar_reward_reports_a_scalar() -> None:
    agent = epp.LinearTS(4, n_agents=3, seed=0)
    before = agent.precision_factor
    msg = _message(lambda: agent.update(np.ones((3, 4)), 1.0))
    assert msg.startswith("r:") and "got ()" in msg and "(1,)" not in msg
    msg = _message(lambda: agent.update(np.ones((3, 4)), np.ones(2)))
    assert "got (2,)" in msg
    np.testing.assert_array_equal(agent.precision_factor, before)


@pytest.mark.parametrize(("x", "shown"), [(np.ones(5), "(5,)"), (np.ones((2, 5)), "(2, 5)"), (np.ones((1, 2, 4)), "(1, 2, 4)"),
                                          (np.float64(1.0), "()")])
def test_a_wrong_feature_count_reports_the_shape_passed(x: Any, shown: str) -> None:
    agent = epp.LinearTS(4, seed=0)
    msg = _message(lambda: agent.update(x, np.ones(np.shape(x)[0]) if np.ndim(x) == 2 else 1.0))
    assert msg.startswith("x:") and f"got {shown}" in msg, msg
    assert agent.steps == 0


def test_batched_x_and_actions_report_the_shape_passed() -> None:
    agent = epp.LinearEnsemble(4, 2, n_agents=3, seed=0)
    assert "got (3, 5)" in _message(lambda: agent.update(np.ones((3, 5)), np.ones(3)))
    assert "got (6, 5)" in _message(lambda: agent.act(np.ones((6, 5))))
    assert "got (2,)" in _message(lambda: agent.act(np.ones((6, 4)), mask=np.ones(2, bool)))
    single = epp.LinearTS(4, seed=0)
    assert "got (4,)" in _message(lambda: single.act(np.ones(4)))


# ---- result types ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_single_agent_act_returns_int_and_steps_an_int(cls: type) -> None:
    agent = _make(cls, seed=1)
    X = np.eye(4)
    for actions in (X, X.tolist(), X.astype(np.float32)):
        a = agent.act(actions)
        assert type(a) is int and 0 <= a < 4
    assert type(agent.steps) is int
    batched = _make(cls, seed=1, n_agents=2)
    assert isinstance(batched.steps, np.ndarray) and batched.steps.dtype == np.uint64 and batched.steps.shape == (2,)


def test_batched_results_come_back_in_the_input_library() -> None:
    torch = pytest.importorskip("torch")
    agent = epp.LinearTS(4, n_agents=3, seed=2)
    X = np.random.default_rng(0).normal(size=(5, 4))
    ref = epp.LinearTS(4, n_agents=3, seed=2).act(X)
    assert isinstance(ref, np.ndarray)
    got = agent.act(torch.from_numpy(X))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), ref)
    assert isinstance(agent.act(X.tolist()), np.ndarray)
    assert type(epp.LinearTS(4, seed=2).act(torch.from_numpy(X))) is int


class _DeviceArray:
    """Stand-in for a CuPy result on the agent's GPU: it exports only DLPack (and __array__ for
    the host copy), as a CUDA kernel's output does. Backed by host memory so it runs anywhere."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.data.__dlpack_device__()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array(self.data, dtype=dtype, copy=True)


def test_a_device_result_goes_to_torch_through_dlpack_without_a_copy() -> None:
    torch = pytest.importorskip("torch")
    data = np.arange(3, dtype=np.int64)
    out = _in_library_of(_DeviceArray(data), torch.zeros(3, 4))
    assert isinstance(out, torch.Tensor) and out.tolist() == [0, 1, 2]
    data[0] = 7  # shared memory: DLPack hands over the buffer, no copy
    assert int(out[0]) == 7


def test_a_device_result_for_numpy_input_comes_back_as_numpy() -> None:
    data = np.arange(3, dtype=np.int64)
    out = _in_library_of(_DeviceArray(data), np.zeros((3, 4)))
    assert isinstance(out, np.ndarray) and out.tolist() == [0, 1, 2]
    other = _DeviceArray(data)
    assert _in_library_of(other, [[0.0]]) is other  # CuPy in (or lists): the kernel's own array


# ---- one draw API ------------------------------------------------------------------------------
def test_the_numpy_and_torch_draw_share_one_signature() -> None:
    torch = pytest.importorskip("torch")
    from ensemblepp import neural

    np_sig, t_sig = inspect.signature(epp.draw), inspect.signature(neural.draw)
    assert list(np_sig.parameters)[:3] == list(t_sig.parameters)[:3] == ["name", "size", "dim"]
    for name in ("scaling", "sparsity"):
        assert np_sig.parameters[name].kind is t_sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert np_sig.parameters[name].default == t_sig.parameters[name].default
    a = epp.draw("sphere", 2000, 5, scaling="reference", seed=1)
    b = neural.draw("sphere", 2000, 5, scaling="reference", generator=torch.Generator().manual_seed(1)).numpy()
    assert a.shape == b.shape == (2000, 5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), np.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), np.sqrt(5), rtol=1e-5)
