"""CUDA backend against the CPU backend: same seed, same trajectory (needs a GPU, CuPy).

Tolerances: float64 states agree to 1e-9 relative after 1,000 steps (``STEPS``) and every action is the
same; float32 states agree to 2e-3 relative (with 1e-4 absolute) when both agents get the same
observations, and at least 99% of the actions agree (ties within float32 rounding may differ).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import ensemblepp as epp

if not epp.has_cuda():
    pytest.skip("no CUDA device, CUDA module or CuPy", allow_module_level=True)

import cupy as cp  # noqa: E402

#: Trajectory length of the CPU-GPU comparisons (shorter under the host emulation of the device,
#: see test_cuda_emulated.py).
STEPS = int(os.environ.get("ENSEMBLEPP_CUDA_TEST_STEPS", "1000"))

from ensemblepp._cuda_backend import CudaKernel, as_device_array  # noqa: E402
from ensemblepp.linear import to_numpy  # noqa: E402

POLICIES = {
    "ensemble": lambda d, **kw: epp.LinearEnsemble(d, ensemble_size=6, **kw),
    "ensemble_sparse": lambda d, **kw: epp.LinearEnsemble(d, ensemble_size=6, reference="sparse",
                                                          perturbation="coordinate", **kw),
    "thompson": lambda d, **kw: epp.LinearTS(d, **kw),
    "ensemble_sampling": lambda d, **kw: epp.LinearEnsembleSampling(d, ensemble_size=6, **kw),
    "ucb": lambda d, **kw: epp.LinUCB(d, alpha=0.7, **kw),
    "greedy": lambda d, **kw: epp.LinearGreedy(d, **kw),
}  # fmt: skip


def snapshot(agent) -> dict[str, np.ndarray]:
    s = agent._state_arrays()
    return {k: np.array(v, copy=True) for k, v in s.items()}


def assert_states_close(gpu: dict, cpu: dict, rtol: float, atol: float) -> None:
    assert gpu.keys() == cpu.keys()
    np.testing.assert_array_equal(gpu["steps"], cpu["steps"])
    for k in gpu:
        if k != "steps":
            np.testing.assert_allclose(gpu[k], cpu[k], rtol=rtol, atol=atol, err_msg=k)


def run_pair(policy: str, dtype: str, mode: str, T: int, B: int = 3, d: int = 6, K: int = 8):
    """Steps a CPU and a GPU agent side by side; both learn from the CPU agent's choices."""
    rng = np.random.default_rng(5)
    theta_star = rng.normal(0, 2, size=(B, d))
    kw = dict(n_agents=B, seed=17, noise_std=0.8, prior_var=3.0, dtype=dtype)
    cpu = POLICIES[policy](d, device="cpu", **kw)
    gpu = POLICIES[policy](d, device="cuda", **kw)
    agree = 0
    for _ in range(T):
        X = rng.normal(size=(B, K, d) if mode.startswith("per_agent") else (K, d)) / math.sqrt(d)
        mask = None
        if mode.endswith("mask"):
            mask = rng.random((B, K)) < 0.6
            mask[np.arange(B), rng.integers(0, K, size=B)] = True
        a_cpu = np.asarray(cpu.act(X, mask))
        a_gpu = to_numpy(gpu.act(X, mask))
        agree += int(np.sum(a_cpu == a_gpu))
        Xb = np.broadcast_to(X, (B, K, d))
        x = Xb[np.arange(B), a_cpu]
        r = np.einsum("bd,bd->b", x, theta_star) + 0.8 * rng.normal(size=B)
        obs = rng.random(B) < 0.9
        cpu.update(x, r, mask=obs)
        gpu.update(x, r, mask=obs)
    return cpu, gpu, agree / (T * B)


@pytest.mark.parametrize("mode", ["shared", "per_agent", "shared_mask", "per_agent_mask"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_gpu_follows_the_cpu_trajectory_float64(policy: str, mode: str) -> None:
    cpu, gpu, agree = run_pair(policy, "float64", mode, T=STEPS)
    assert agree == 1.0
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["shared", "per_agent_mask"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_gpu_follows_the_cpu_trajectory_float32(policy: str, mode: str) -> None:
    cpu, gpu, agree = run_pair(policy, "float32", mode, T=min(STEPS, 300))
    assert agree >= 0.99
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_single_agent_and_sample_match_the_cpu(policy: str) -> None:
    d, rng = 5, np.random.default_rng(2)
    cpu = POLICIES[policy](d, seed=4)
    gpu = POLICIES[policy](d, seed=4, device="cuda")
    for _ in range(50):
        X = rng.normal(size=(7, d))
        a = cpu.act(X)
        assert isinstance(gpu.act(X), int)
        assert gpu._kernel.theta.shape == (1, d)
        cpu.update(X[a], 0.3)
        gpu.update(X[a], 0.3)
    np.testing.assert_allclose(to_numpy(gpu.sample()), cpu.sample(), rtol=1e-9, atol=1e-12)
    if policy != "ucb":
        unit = to_numpy(gpu.act_sphere())
        np.testing.assert_allclose(unit, cpu.act_sphere(), rtol=1e-9, atol=1e-12)
        assert abs(float(np.linalg.norm(unit)) - 1) < 1e-12
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=1e-9, atol=1e-12)


def test_large_dimension_uses_the_global_workspace() -> None:
    d, B = 1800, 2  # 3 d doubles do not fit in 40 KiB of shared memory
    cpu = epp.LinearTS(d, n_agents=B, seed=1)
    gpu = epp.LinearTS(d, n_agents=B, seed=1, device="cuda")
    assert gpu._kernel._work is not None
    rng = np.random.default_rng(0)
    for _ in range(3):
        X = rng.normal(size=(4, d)) / math.sqrt(d)
        a = cpu.act(X)
        np.testing.assert_array_equal(to_numpy(gpu.act(X)), a)
        cpu.update(X[a], np.ones(B))
        gpu.update(X[a], np.ones(B))
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=1e-9, atol=1e-12)


def test_ties_go_to_the_lowest_available_index() -> None:
    agent = epp.LinearEnsemble(4, 3, n_agents=70, seed=0, device="cuda")
    X = np.ones((300, 4))
    np.testing.assert_array_equal(to_numpy(agent.act(X)), np.zeros(70))
    mask = np.zeros((70, 300), bool)
    mask[:, 257:] = True
    mask[3, 5] = True
    expected = np.full(70, 257)
    expected[3] = 5
    np.testing.assert_array_equal(to_numpy(agent.act(X, mask)), expected)


# ---- interop ----------------------------------------------------------------------------------
def test_numpy_cupy_and_torch_inputs_give_the_same_trajectory() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    d, B, K = 5, 4, 6
    rng = np.random.default_rng(3)
    Xs = [rng.normal(size=(K, d)) for _ in range(20)]
    rs = [rng.normal(size=B) for _ in range(20)]
    convert = {
        "numpy": lambda a: a,
        "cupy": cp.asarray,
        "torch": lambda a: torch.as_tensor(a, device="cuda"),
        "torch32": lambda a: torch.as_tensor(a, device="cuda", dtype=torch.float32),  # converted
    }
    results = {}
    for name, f in convert.items():
        agent = epp.LinearEnsemble(d, 3, n_agents=B, seed=9, device="cuda")
        acts = []
        for X, r in zip(Xs, rs):
            a = to_numpy(agent.act(f(X)))
            acts.append(a)
            agent.update(f(X[a]), f(r))
        results[name] = (np.array(acts), snapshot(agent))
    for name in ("cupy", "torch"):
        np.testing.assert_array_equal(results[name][0], results["numpy"][0])
        for k, v in results["numpy"][1].items():
            np.testing.assert_array_equal(results[name][1][k], v, err_msg=f"{name} {k}")


def test_as_device_array_does_not_copy_matching_device_arrays() -> None:
    a = cp.arange(12, dtype=cp.float64).reshape(3, 4)
    assert as_device_array(a, np.float64, "x") is a
    b = as_device_array(a.T, np.float64, "x")  # not contiguous: copied
    assert b.flags.c_contiguous and b.data.ptr != a.data.ptr
    np.testing.assert_array_equal(b.get(), a.get().T)
    assert as_device_array(a, np.float32, "x").dtype == np.float32
    assert as_device_array(2.5, np.float64, "r").shape == (1,)
    m = as_device_array(np.array([0, 2, 0]), bool, "mask")
    np.testing.assert_array_equal(m.get(), [False, True, False])
    with pytest.raises(TypeError, match="x"):
        as_device_array(np.array(["a"]), np.float64, "x")
    with pytest.raises(TypeError, match="x"):
        as_device_array(cp.ones(3, cp.complex128), np.float64, "x")
    with pytest.raises(TypeError, match="mask"):
        as_device_array(np.ones(3), bool, "mask")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        t = torch.arange(6, dtype=torch.float64, device="cuda", requires_grad=True)
        v = as_device_array(t, np.float64, "x")
        assert v.data.ptr == t.data_ptr()


# ---- persistence ------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize(("first", "second"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_save_on_one_device_load_on_the_other_and_continue(tmp_path, policy: str, first: str, second: str) -> None:
    d, B = 4, 2
    rng = np.random.default_rng(8)
    steps = [(rng.normal(size=(5, d)), rng.normal(size=B)) for _ in range(40)]
    ref = POLICIES[policy](d, n_agents=B, seed=21)
    a = POLICIES[policy](d, n_agents=B, seed=21, device=first)
    for t, (X, r) in enumerate(steps):
        if t == 20:
            a.save(tmp_path / "agent.npz")
            a = epp.load(tmp_path / "agent.npz", device=second)
            assert a.device == second
        choice = to_numpy(a.act(X))
        np.testing.assert_array_equal(choice, ref.act(X))
        a.update(X[choice], r)
        ref.update(X[choice], r)
    assert_states_close(snapshot(a), snapshot(ref), rtol=1e-9, atol=1e-12)


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", list(POLICIES))
def test_bad_input_raises_and_leaves_the_state_unchanged(policy: str) -> None:
    d, B, K = 4, 3, 5
    agent = POLICIES[policy](d, n_agents=B, seed=2, device="cuda")
    X = np.random.default_rng(0).normal(size=(K, d))
    agent.update(X[:B], np.ones(B))
    before = snapshot(agent)

    r = np.ones(B)
    r[1] = np.nan
    with pytest.raises(ValueError, match="r: reward of agent 1"):
        agent.update(X[:B], r)
    x = X[:B].copy()
    x[2, 3] = np.inf
    with pytest.raises(ValueError, match="x: features of agent 2"):
        agent.update(x, np.ones(B))
    bad = X.copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        agent.act(bad)
    mask = np.ones((B, K), bool)
    mask[2] = False
    with pytest.raises(ValueError, match="agent 2 is masked out"):
        agent.act(X, mask)
    with pytest.raises(ValueError, match="actions"):
        agent.act(np.ones((K, d + 1)))
    with pytest.raises(TypeError, match="actions"):
        agent.act(np.array([["a"] * d]))
    for k, v in snapshot(agent).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)

    # A masked-out NaN is not an error, as on the CPU.
    r = np.ones(B)
    r[0] = np.nan
    agent.update(X[:B], r, mask=np.array([False, True, True]))


@pytest.mark.parametrize("policy", ["ensemble", "thompson", "greedy"])
def test_single_agent_bad_input(policy: str) -> None:
    agent = POLICIES[policy](3, seed=1, device="cuda")
    X = np.eye(3)
    assert agent.act(X) in (0, 1, 2)
    before = snapshot(agent)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        agent.act(bad)
    with pytest.raises(ValueError, match="agent 0 is masked out"):
        agent.act(X, np.zeros(3, bool))
    with pytest.raises(ValueError, match="r: reward of agent 0"):
        agent.update(X[0], float("inf"))
    for k, v in snapshot(agent).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert agent.act(X, np.array([False, False, True])) == 2
    agent._kernel.validate = False
    assert agent.act(X, np.zeros(3, bool)) == -1


def test_validate_false_skips_the_wait_and_ignores_bad_updates() -> None:
    agent = epp.LinearEnsemble(4, 3, n_agents=2, seed=0, device="cuda")
    kernel: CudaKernel = agent._kernel
    kernel.validate = False
    before = snapshot(agent)
    agent.update(np.ones((2, 4)), np.array([1.0, np.nan]))
    for k, v in snapshot(agent).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    X = np.ones((3, 4))
    X[1, 1] = np.inf
    out = agent.act(X)
    np.testing.assert_array_equal(to_numpy(agent.steps), before["steps"])
    assert to_numpy(out).dtype == np.int64


def test_steps_run_on_the_current_cupy_stream() -> None:
    d, B = 6, 64
    a = epp.LinearEnsemble(d, 4, n_agents=B, seed=5, device="cuda")
    b = epp.LinearEnsemble(d, 4, n_agents=B, seed=5, device="cuda")
    X = np.random.default_rng(1).normal(size=(10, d))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        ca = a.act(X)
        a.update(X[to_numpy(ca)], np.ones(B))
    stream.synchronize()
    cb = b.act(X)
    b.update(X[to_numpy(cb)], np.ones(B))
    np.testing.assert_array_equal(to_numpy(ca), to_numpy(cb))
    for k, v in snapshot(a).items():
        np.testing.assert_array_equal(v, snapshot(b)[k], err_msg=k)


# ---- production loop: action probabilities, warm start, forgetting (issue 12) -----------------
def _trained_pair(policy: str, dtype: str, B: int = 3, d: int = 5, forgetting: float = 1.0):
    kw = dict(n_agents=B, seed=23, noise_std=0.7, prior_var=2.0, dtype=dtype, forgetting=forgetting)
    cpu = POLICIES[policy](d, device="cpu", **kw)
    gpu = POLICIES[policy](d, device="cuda", **kw)
    rng = np.random.default_rng(8)
    x, r = rng.normal(size=(B, 4, d)), rng.normal(size=(B, 4))
    cpu.update(x, r)
    gpu.update(x, r)
    return cpu, gpu


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_action_probabilities_match_the_cpu(policy: str, dtype: str) -> None:
    B, d, K = 3, 5, 6
    cpu, gpu = _trained_pair(policy, dtype, B, d)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(B, K, d))
    X[:, 4] = X[:, 3]  # an exact tie in every draw
    mask = rng.random((B, K)) < 0.7
    mask[:, 3] = True
    before = snapshot(gpu)
    for ties in ("split", "first"):
        p_cpu = cpu.action_probabilities(X, mask, n_samples=257, ties=ties)
        p_gpu = gpu.action_probabilities(X, mask, n_samples=257, ties=ties)
        assert isinstance(p_gpu, np.ndarray) and p_gpu.shape == (B, K)
        # The same draws and counts, equal actions included (both score every row alike).
        np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-12)
        np.testing.assert_allclose(p_gpu.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(p_gpu[~mask] == 0)
        if ties == "split":
            np.testing.assert_array_equal(p_gpu[:, 3], p_gpu[:, 4])
        else:
            assert np.all(p_gpu[:, 4] == 0)
    for k, v in snapshot(gpu).items():  # estimating changes nothing
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # Single agents and act(return_probability=True), as on the CPU.
    one_cpu, one_gpu = POLICIES[policy](d, seed=5, dtype=dtype), POLICIES[policy](d, seed=5, dtype=dtype, device="cuda")
    a_cpu, p1_cpu = one_cpu.act(X[0], return_probability=True, n_samples=64)
    a_gpu, p1_gpu = one_gpu.act(X[0], return_probability=True, n_samples=64)
    assert a_cpu == a_gpu and abs(p1_cpu - p1_gpu) <= 1e-12


@pytest.mark.parametrize("policy", list(POLICIES))
def test_warm_start_matches_the_cpu_and_step_by_step(policy: str) -> None:
    B, d = 4, 5
    cpu, gpu = _trained_pair(policy, "float64", B, d)
    steps = POLICIES[policy](d, n_agents=B, seed=23, noise_std=0.7, prior_var=2.0, device="cuda")
    steps._set_state(snapshot(gpu))
    rng = np.random.default_rng(4)
    counts = np.array([3, 0, 5, 1])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    x, r = rng.normal(size=(offsets[-1], d)), rng.normal(size=offsets[-1])
    mask = rng.random(offsets[-1]) < 0.8
    cpu.warm_start(x, r, offsets, mask)
    gpu.warm_start(x, r, offsets, mask)
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=1e-9, atol=1e-12)
    for b in range(B):  # one row of one agent at a time through update()
        for i in range(offsets[b], offsets[b + 1]):
            xs, rs, ms = np.zeros((B, d)), np.zeros(B), np.zeros(B, bool)
            xs[b], rs[b], ms[b] = x[i], r[i], mask[i]
            steps.update(xs, rs, mask=ms)
    for k, v in snapshot(steps).items():
        np.testing.assert_array_equal(v, snapshot(gpu)[k], err_msg=k)


def test_warm_start_bad_input_leaves_the_state_unchanged() -> None:
    B, d = 3, 4
    agent = epp.LinearEnsemble(d, 4, n_agents=B, seed=3, device="cuda")
    before = snapshot(agent)
    x, r = np.ones((6, d)), np.ones(6)
    x[4, 1] = np.nan
    with pytest.raises(ValueError, match="x: features of agent 2"):
        agent.warm_start(x, r, np.array([0, 2, 2, 6]))
    with pytest.raises(ValueError, match="non-decreasing"):
        agent.warm_start(np.ones((6, d)), r, np.array([0, 3, 2, 6]))
    with pytest.raises(ValueError, match="offsets"):
        agent.warm_start(np.ones((6, d)), r, np.array([0, 2, 2, 5]))
    for k, v in snapshot(agent).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # An agent whose random stream would pass 2**48 draws (one per row here) is refused.
    state = snapshot(agent)
    state["steps"][1] = 2**48 - 3
    agent._set_state(state)
    with pytest.raises(ValueError, match="steps: agent 1 has used up"):
        agent.warm_start(np.ones((6, d)), r, np.array([0, 1, 5, 6]))
    agent.warm_start(np.ones((6, d)), r, np.array([0, 2, 5, 6]))  # exactly 3 left
    assert int(snapshot(agent)["steps"][1]) == 2**48


@pytest.mark.parametrize("policy", list(POLICIES))
def test_forgetting_follows_the_cpu(policy: str) -> None:
    B, d, K = 3, 4, 5
    cpu, gpu = _trained_pair(policy, "float64", B, d, forgetting=0.9)
    assert gpu.forgetting == 0.9
    rng = np.random.default_rng(6)
    for _ in range(min(STEPS, 60)):
        X = rng.normal(size=(K, d))
        a = np.asarray(cpu.act(X))
        np.testing.assert_array_equal(to_numpy(gpu.act(X)), a)
        r = rng.normal(size=B)
        cpu.update(X[a], r)
        gpu.update(X[a], r)
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=1e-9, atol=1e-12)
    assert int(snapshot(gpu)["updates"][0]) == 4 + min(STEPS, 60)


@pytest.mark.parametrize(("first", "second"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_single_forgetting_agent_warm_start_and_save_load_across_devices(tmp_path, first: str, second: str) -> None:
    d = 3
    rng = np.random.default_rng(9)
    x, r = rng.normal(size=(7, d)), rng.normal(size=7)
    ref = epp.LinearEnsemble(d, 4, seed=2, forgetting=0.8)
    a = epp.LinearEnsemble(d, 4, seed=2, forgetting=0.8, device=first)
    ref.warm_start(x, r)
    a.warm_start(x, r)  # a single agent: no offsets
    a.save(tmp_path / "agent.npz")
    a = epp.load(tmp_path / "agent.npz", device=second)
    assert a.device == second and a.forgetting == 0.8
    for t in range(10):
        X = rng.normal(size=(4, d))
        k = ref.act(X)
        assert a.act(X) == k
        a.update(X[k], float(t))
        ref.update(X[k], float(t))
    assert_states_close(snapshot(a), snapshot(ref), rtol=1e-9, atol=1e-12)


def test_production_kernels_with_a_global_workspace() -> None:
    # Scratch beyond 40 KiB per block: 3000 actions for the probabilities, and d = 1017 with
    # forgetting for the warm start (observe()'s 5118 doubles fit, plus d for the refresh do not).
    rng = np.random.default_rng(11)
    cpu, gpu = (epp.LinearTS(4, n_agents=2, seed=3, device=dev) for dev in ("cpu", "cuda"))
    X = rng.normal(size=(3000, 4))
    np.testing.assert_allclose(gpu.action_probabilities(X, n_samples=32), cpu.action_probabilities(X, n_samples=32),
                               atol=1e-12)
    d = 1017
    cpu, gpu = (epp.LinearEnsemble(d, 16, n_agents=2, seed=3, forgetting=0.9, device=dev) for dev in ("cpu", "cuda"))
    x, r = rng.normal(size=(5, d)) / math.sqrt(d), rng.normal(size=5)
    offsets = np.array([0, 2, 5])
    cpu.warm_start(x, r, offsets)
    gpu.warm_start(x, r, offsets)
    assert_states_close(snapshot(gpu), snapshot(cpu), rtol=1e-9, atol=1e-12)
