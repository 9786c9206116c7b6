"""Linear Ensemble++ and its baselines on the compiled core.

Every policy holds B independent agents (``n_agents=B``) with the same hyperparameters and
their own random streams, or a single agent (``n_agents=None``, no batch axis). State lives in
arrays of the agent's device and is updated in place by the compiled kernels: a lower-triangular
square root L of the posterior covariance (Sigma = L^T L) and the posterior mean (both float64
whatever the dtype), and for the two ensemble policies a (d, M) factor in the agent's dtype
(docs/design.md, "State representation"):

=========================  ====================================================================
``LinearEnsemble``         Ensemble++: theta = mu + A zeta, A A^T tracks Sigma
``LinearTS``               exact Thompson sampling, O(d^2) per step via a Cholesky factor
``LinearEnsembleSampling`` ensemble sampling (Lu and Van Roy, 2017)
``LinUCB``                 x.mu + alpha sqrt(x^T Sigma x)
``LinearGreedy``           theta = mu
=========================  ====================================================================
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

import numpy as np

from ensemblepp import _core
from ensemblepp._backend import check_device, narrow_quietly
from ensemblepp.distributions import check_sparsity, distribution_code

__all__ = [
    "LinearPolicy",
    "LinearEnsemble",
    "LinearTS",
    "LinearEnsembleSampling",
    "LinUCB",
    "LinearGreedy",
    "load",
]

_DTYPES = {"float64": np.float64, "float32": np.float32}
# State handed by ``_from_state`` to the constructor it runs, keyed by the new object's id:
# keeps the private construction path out of every public signature.
_PENDING_STATE: dict[int, dict[str, Any]] = {}


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy view or copy of a NumPy, CuPy or torch array (host copy for device arrays)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor
        return a.detach().cpu().numpy()
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def _in_library_of(result: Any, like: Any) -> Any:
    """``result`` (a NumPy or CuPy array from a kernel) in the array library of the input ``like``.

    torch in, torch out: a CUDA result is handed over through DLPack (no copy, same device) and
    a host result through :func:`torch.from_numpy` (no copy). NumPy in, NumPy out (a CUDA
    result is copied to the host). Otherwise (CuPy, lists) the kernel's own array.
    """
    if type(like).__module__.split(".")[0] == "torch" and hasattr(like, "detach"):
        import torch  # noqa: PLC0415

        if isinstance(result, np.ndarray):
            return torch.from_numpy(result)
        return torch.from_dlpack(result)
    if isinstance(like, np.ndarray) and not isinstance(result, np.ndarray):
        return to_numpy(result)
    return result


def _real_array(a: Any, dtype: type, name: str) -> np.ndarray:
    arr = to_numpy(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    # np.require keeps a 0-d input 0-d, unlike ascontiguousarray.
    return np.require(narrow_quietly(arr, dtype), dtype=dtype, requirements="C")


def _bool_array(a: Any, name: str) -> np.ndarray:
    arr = to_numpy(a)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name}: expected a boolean array, got dtype {arr.dtype}")
    return np.require(arr, dtype=bool, requirements="C")


def _shape_of(a: Any) -> tuple[int, ...]:
    """The shape the caller passed (for error messages: never the reshaped one)."""
    shape = getattr(a, "shape", None)
    if shape is not None:
        return tuple(int(n) for n in shape)
    try:
        return tuple(np.shape(a))
    except (ValueError, TypeError):
        return ()


def check_dtype(dtype: Any) -> np.dtype:
    """The state dtype: ``"float64"``/``"float32"`` or the NumPy ``float64``/``float32`` dtype.

    Anything else (``"double"``, ``"f8"``, ``float``, a non-native byte order, torch dtypes)
    raises, so that only the two documented spellings and their NumPy equivalents are accepted.
    """
    if isinstance(dtype, str):
        ok = dtype in _DTYPES
    elif isinstance(dtype, type):
        ok = dtype in (np.float64, np.float32)
    elif isinstance(dtype, np.dtype):
        ok = dtype.isnative and dtype.type in (np.float64, np.float32)
    else:
        ok = False
    if not ok:
        raise ValueError(f"dtype: expected 'float64' or 'float32' (or np.float64, np.float32), got {dtype!r}")
    return np.dtype(dtype)


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high - 1}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}: must be {bound}, got {value}")
    return int(value)


_U64 = 2**64


def _check_stream_ids(value: Any, n: int | None) -> Any:
    """``stream_ids`` as an int (n is None: a single agent) or a (n,) uint64 array of distinct ids.

    Every bad value -- wrong type, shape, sign, range or a repeated id -- raises ValueError
    naming ``stream_ids``, as the constructors and :meth:`LinearPolicy.add_agents` promise.
    """
    if n is None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"stream_ids: a single agent takes one int, got {type(value).__name__}")
        if not 0 <= int(value) < _U64:
            raise ValueError(f"stream_ids: must be in [0, 2**64), got {value}")
        return int(value)
    if isinstance(value, (str, bytes, bool)) or np.ndim(value) != 1:
        raise ValueError(f"stream_ids: expected a sequence of {n} ints, got {value!r:.80}")
    arr = to_numpy(value) if hasattr(value, "__array__") or hasattr(value, "detach") else None
    if arr is None or arr.dtype.kind == "O":
        items = list(value)
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"stream_ids: expected ints, got {type(v).__name__}")
            if not 0 <= int(v) < _U64:
                raise ValueError(f"stream_ids: every id must be in [0, 2**64), got {v}")
        ids = np.array([int(v) for v in items], dtype=np.uint64)
    else:
        if arr.dtype.kind not in "iu":
            raise ValueError(f"stream_ids: expected integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
            raise ValueError(f"stream_ids: ids must be >= 0, got {int(arr.min())}")
        ids = np.array(arr, dtype=np.uint64)  # a native-order copy whatever came in
    if ids.shape != (n,):
        raise ValueError(f"stream_ids: expected {n} ids, got {ids.shape[0]}")
    if np.unique(ids).size != n:
        raise ValueError("stream_ids: ids must be distinct")
    return ids


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _available_bytes(device: str) -> int | None:
    """Memory a new allocation can use: MemAvailable on Linux, free GPU memory; None if unknown."""
    if device == "cuda":
        import cupy  # noqa: PLC0415

        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_forgetting(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"forgetting: expected a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"forgetting: must be in (0, 1], got {value}")
    return float(value)


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {value}")
    return float(value)


class LinearPolicy:
    """Base class of the linear policies: state, validation, persistence.

    Parameters
    ----------
    dim : int
        Feature dimension d.
    prior_var : float or array_like, default 10.0
        Prior covariance Sigma_0: ``prior_var * I`` for a scalar, or a symmetric positive
        definite (d, d) matrix.
    noise_std : float, default 1.0
        Reward noise standard deviation eta.
    prior_mean : array_like, optional
        Prior mean mu_0, shape (d,); zero by default.
    n_agents : int, optional
        Number B of independent agents; ``None`` for a single agent without batch axis.
    device : {"cpu", "cuda"}
        Where state lives and kernels run.
    dtype : {"float64", "float32"} or numpy.float64, numpy.float32
        Floating-point type of state and arithmetic; other spellings (``"double"``) are refused.
    seed : int, optional
        Seed of the agents' Philox streams, 0 <= seed < 2**64. ``None`` (the default, as in
        NumPy and scikit-learn) draws one from the OS entropy and keeps it in :attr:`seed`, so
        two agents built without a seed are independent and a run can still be repeated.
    stream_ids : int or sequence of int, optional
        Stream id of each agent, 0 <= id < 2**64: one int for a single agent (default 0), B
        distinct ints for ``n_agents=B`` (default ``range(B)``). An agent's random draws are a
        function of (seed, stream id) only, so it makes the same decisions alone or at any
        position of any batch.
    forgetting : float, default 1.0
        Forgetting factor gamma in (0, 1]: each observation first decays the posterior toward
        the prior, P <- gamma P + (1 - gamma**d) r_k r_k^T with the prior P_0 = sum_k r_k r_k^T
        re-added one direction per observation (k cycles through 0, ..., d-1), then adds
        x x^T / eta^2; b and the ensemble factor scale to match (see ``docs/design.md``,
        "Forgetting"). 1.0 is no forgetting, bit for bit. Both devices.
    """

    _policy: ClassVar[str] = ""
    _has_factor: ClassVar[bool] = False

    def __init__(
        self,
        dim: int,
        *,
        prior_var: float | Any = 10.0,
        noise_std: float = 1.0,
        prior_mean: Any = None,
        n_agents: int | None = None,
        device: str = "cpu",
        dtype: str | type | np.dtype = "float64",
        seed: int | None = None,
        stream_ids: Any = None,
        forgetting: float = 1.0,
    ) -> None:
        self._dim = _check_int(dim, "dim", 1, _core.MAX_VECTOR_LENGTH + 1)
        self._forgetting = _check_forgetting(forgetting)
        self._noise_std = _check_positive(noise_std, "noise_std")
        self._single = n_agents is None
        self._n_agents = 1 if n_agents is None else _check_int(n_agents, "n_agents", 1, 2**32)
        self._device = check_device(device)
        self._dtype = check_dtype(dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self._seed = _check_int(seed, "seed", 0, 2**64)
        self._check_fits(self._n_agents)  # before anything of size B is made
        if stream_ids is None:
            stream_ids = 0 if self._single else np.arange(self._n_agents, dtype=np.uint64)
        ids = np.atleast_1d(np.uint64(_check_stream_ids(stream_ids, None))) if self._single else (
            _check_stream_ids(stream_ids, self._n_agents))
        self._prior_mean = self._check_prior_mean(prior_mean)
        self._prior_cov = self._check_prior_var(prior_var)
        self._prior = self._prior_information()
        state = _PENDING_STATE.pop(id(self), None)
        if state is None:
            self._buffers = self._allocate(self._n_agents)
            self._buffers["stream_ids"][:] = self._xp().asarray(ids)
            self._attach()
            self._initialize(0)
        else:
            self._set_state(dict(state, stream_ids=ids))

    @classmethod
    def _from_state(cls, state: dict[str, Any], **options: Any) -> LinearPolicy:
        """An agent of this class with the given per-agent state arrays (``_state_arrays`` keys).

        The one private construction path (model files, sharded policies, clones): ``options``
        are the constructor's arguments, validated as for any agent, and ``state`` replaces the
        prior state. The stream ids are those of ``options`` (default ``range(B)``); a
        ``"stream_ids"`` entry of ``state`` is ignored.
        """
        self = cls.__new__(cls)
        _PENDING_STATE[id(self)] = {k: v for k, v in state.items() if k != "stream_ids"}
        try:
            self.__init__(**options)  # type: ignore[misc]
        finally:
            _PENDING_STATE.pop(id(self), None)
        return self

    # ---- construction ------------------------------------------------------------------
    def _check_prior_mean(self, prior_mean: Any) -> np.ndarray:
        d = self._dim
        if prior_mean is None:
            return np.zeros(d)
        m = _real_array(prior_mean, np.float64, "prior_mean")
        if m.shape != (d,):
            raise ValueError(f"prior_mean: expected shape ({d},), got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("prior_mean: contains NaN or infinite values")
        return m

    def _check_prior_var(self, prior_var: Any) -> np.ndarray:
        d = self._dim
        if np.ndim(prior_var) == 0 and not hasattr(prior_var, "shape"):
            return _check_positive(prior_var, "prior_var") * np.eye(d)
        s = _real_array(prior_var, np.float64, "prior_var")
        if s.ndim == 0:
            return _check_positive(float(s), "prior_var") * np.eye(d)
        if s.shape != (d, d):
            raise ValueError(f"prior_var: expected a scalar or shape ({d}, {d}), got {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError("prior_var: contains NaN or infinite values")
        if not np.allclose(s, s.T, rtol=1e-10, atol=1e-12 * np.abs(s).max()):
            raise ValueError("prior_var: matrix is not symmetric")
        try:
            np.linalg.cholesky(s)
        except np.linalg.LinAlgError:
            raise ValueError("prior_var: matrix is not positive definite") from None
        return 0.5 * (s + s.T)

    def _prior_information(self) -> dict[str, Any]:
        """The prior as the kernels take it (float64, see linear.hpp ``Prior``).

        ``cov_root`` is the lower-triangular L_0 with Sigma_0 = L_0^T L_0, ``dirs`` the rows r_k
        with P_0 = sum_k r_k r_k^T that forgetting refreshes (production.hpp).
        """
        S, mu0 = self._prior_cov, self._prior_mean
        s = np.diag(S)
        if np.array_equal(S, np.diag(s)):
            return {"cov_root": np.diag(np.sqrt(s)), "mean": mu0, "diagonal": True,
                    "dirs": np.diag(1.0 / np.sqrt(s))}
        # Sigma_0 = C C^T with C upper triangular: the Cholesky factor of the index-reversed
        # matrix, reversed back; L_0 = C^T.
        C = np.linalg.cholesky(S[::-1, ::-1])[::-1, ::-1]
        L0 = np.ascontiguousarray(np.tril(C.T))
        R = np.linalg.inv(np.linalg.cholesky(S)).T  # upper triangular: P_0 = R R^T
        return {"cov_root": L0, "mean": mu0, "diagonal": False, "dirs": np.ascontiguousarray(R.T)}

    def _state_shapes(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Per-agent shape and dtype of every state array (the keys of :meth:`_state_arrays`)."""
        d = self._dim
        # L and mu accumulate in float64 whatever the dtype (docs/design.md, state representation).
        shapes = {"cov_root": ((d, d), np.dtype(np.float64)), "mean": ((d,), np.dtype(np.float64))}
        if self._has_factor:
            shapes["factor"] = ((d, self._ensemble_size), self._dtype)
        shapes["steps"] = ((), np.dtype(np.uint64))
        shapes["stream_ids"] = ((), np.dtype(np.uint64))
        if self._forgetting < 1.0:
            # Observations applied per agent: picks the prior direction each one refreshes.
            shapes["updates"] = ((), np.dtype(np.uint64))
        return shapes

    def _check_fits(self, capacity: int) -> str:
        """Raises MemoryError, naming bytes and arrays, when ``capacity`` agents cannot fit."""
        shapes = self._state_shapes()
        sizes = {k: capacity * math.prod(shape) * np.dtype(dt).itemsize for k, (shape, dt) in shapes.items()}
        total = sum(sizes.values())
        parts = ", ".join(f"{k} {_bytes(v)}" for k, v in sizes.items())
        where = "GPU" if self._device == "cuda" else "memory"
        need = f"{capacity} agents of {type(self).__name__} need {total} bytes ({_bytes(total)}: {parts})"
        available = _available_bytes(self._device)
        if available is not None and total > available:
            raise MemoryError(f"n_agents: {need}, but only {available} bytes ({_bytes(available)}) of {where} are available")
        return need

    def _allocate(self, capacity: int) -> dict[str, Any]:
        """Uninitialised buffers of ``capacity`` agents, after checking that they fit in memory."""
        need = self._check_fits(capacity)
        xp = self._xp()
        try:
            return {k: xp.empty((capacity, *shape), dt) for k, (shape, dt) in self._state_shapes().items()}
        except MemoryError:
            raise MemoryError(f"n_agents: {need}, which could not be allocated") from None

    def _initialize(self, first: int) -> None:
        """Writes the prior state of agents first, ..., B-1 (in the compiled core)."""
        p = self._prior
        self._kernel.initialize(p["cov_root"], p["mean"], p["diagonal"], first)
        if "updates" in self._buffers:
            self._buffers["updates"][first : self._n_agents] = 0

    def _set_state(self, state: dict[str, Any]) -> None:
        # Construction from arrays (load): exact shapes, converted once to the agent's dtype.
        xp = self._xp()
        B = self._n_agents
        bufs = self._allocate(B)
        for name, (shape, _dt) in self._state_shapes().items():
            if name not in state:
                raise ValueError(f"{name}: missing from the state")
            a = state[name]
            if tuple(a.shape) != (B, *shape):
                raise ValueError(f"{name}: expected shape {(B, *shape)}, got {tuple(a.shape)}")
            bufs[name][...] = xp.asarray(a)
        self._buffers = bufs
        self._attach()

    def _attach(self) -> None:
        """Views of the first B rows of every buffer, and a kernel over them."""
        B = self._n_agents
        self._capacity = int(self._buffers["steps"].shape[0])
        v = {k: a[:B] for k, a in self._buffers.items()}
        self._cov_root, self._mean, self._steps, self._stream_ids = (v["cov_root"], v["mean"], v["steps"],
                                                                     v["stream_ids"])
        self._factor = v.get("factor")
        self._kernel = self._make_kernel()
        if self._forgetting < 1.0:
            dirs = self._prior["dirs"]  # row k is r_k: P_0 = sum_k r_k r_k^T
            self._kernel.set_forgetting(self._forgetting, dirs, dirs @ self._prior_mean, v["updates"])
        # Single CPU agents call the kernel directly: it converts dtype, byte order and layout.
        self._fast = self._single and self._device == "cpu"

    def _xp(self) -> Any:
        if self._device == "cuda":
            import cupy  # noqa: PLC0415

            return cupy
        return np

    def _config(self) -> dict[str, Any]:
        """Keyword arguments of ``LinearConfig`` (the subclasses add theirs)."""
        return {"policy": _core.POLICIES[self._policy], "dim": self._dim, "noise_std": self._noise_std,
                "seed": self._seed, "dtype": 0 if self._dtype == np.float32 else 1}

    def _make_kernel(self) -> Any:
        state = (self._cov_root, self._mean, self._factor, self._steps, self._stream_ids)
        if self._device == "cuda":
            from ensemblepp._cuda_backend import CudaKernel  # noqa: PLC0415

            return CudaKernel(self._config(), *state)
        kernel = _core.Kernel64 if self._dtype == np.float64 else _core.Kernel32
        return kernel(_core.LinearConfig(**self._config()), *state)

    # ---- properties --------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return self._dim

    @property
    def n_agents(self) -> int | None:
        """Number of agents B, or None for a single agent."""
        return None if self._single else self._n_agents

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return self._device

    @property
    def dtype(self) -> np.dtype:
        """Floating-point type of the state."""
        return self._dtype

    @property
    def seed(self) -> int:
        """Seed of the Philox streams (the one drawn from the OS when ``seed=None`` was given)."""
        return self._seed

    @property
    def stream_ids(self) -> Any:
        """Stream id of each agent: an int (single agent) or a (B,) uint64 array (a copy)."""
        ids = to_numpy(self._stream_ids)
        return int(ids[0]) if self._single else ids.copy()

    def add_agents(self, stream_ids: Any) -> None:
        """Append agents at the prior after the existing ones (batched policies only).

        Parameters
        ----------
        stream_ids : sequence of int
            One stream id per new agent, 0 <= id < 2**64, distinct from each other and from the
            ids already present. A new agent makes the same decisions as one created with the
            same seed and stream id at construction.

        Raises
        ------
        ValueError
            For a single-agent policy, or bad or repeated ids; nothing is changed then.
        """
        if self._single:
            raise ValueError("stream_ids: add_agents needs a batched policy (n_agents=B)")
        if isinstance(stream_ids, (str, bytes)) or np.ndim(stream_ids) != 1:
            raise ValueError(f"stream_ids: expected a sequence of ints, got {stream_ids!r:.80}")
        ids = _check_stream_ids(stream_ids, len(stream_ids))
        if ids.size == 0:
            return
        if np.intersect1d(ids, to_numpy(self._stream_ids)).size:
            raise ValueError("stream_ids: an id is already used by an agent of this policy")
        B, new_B = self._n_agents, self._n_agents + ids.size
        xp = self._xp()
        if new_B > self._capacity:
            grown = self._allocate(max(new_B, 2 * self._capacity))
            for name, a in self._buffers.items():
                grown[name][:B] = a[:B]
            self._buffers = grown
        self._buffers["stream_ids"][B:new_B] = xp.asarray(ids)
        self._n_agents = new_B
        self._attach()
        self._initialize(B)

    @property
    def noise_std(self) -> float:
        """Reward noise standard deviation eta."""
        return self._noise_std

    @property
    def steps(self) -> Any:
        """Philox counter of each agent: the number of random vectors it has drawn.

        An int for a single agent, a (B,) uint64 array (a copy) for a batch.
        """
        if self._single:
            return int(to_numpy(self._steps)[0])
        return self._steps.copy()

    def _out(self, a: Any) -> Any:
        return a[0] if self._single else a

    @property
    def mean(self) -> Any:
        """Posterior mean mu, shape (d,) or (B, d), in the agent's dtype (a copy; kept in float64)."""
        return self._out(self._kernel.mean())

    @property
    def covariance(self) -> Any:
        """Posterior covariance Sigma = L^T L, shape (d, d) or (B, d, d), computed on request."""
        return self._out(self._kernel.covariance())

    @property
    def covariance_factor(self) -> Any:
        """Lower-triangular square root L of the posterior covariance, Sigma = L^T L.

        Shape (d, d) or (B, d, d); a float64 copy whatever the agent's dtype: the state keeps L
        in float64 (docs/design.md, state representation).
        """
        return self._out(to_numpy(self._cov_root).copy())

    @property
    def precision_factor(self) -> Any:
        """Upper Cholesky factor U of the posterior precision, P = U^T U; (d, d) or (B, d, d).

        Computed on request from the state's L as U = L^-T (float64), O(d^3) per agent.
        """
        L = to_numpy(self._cov_root)
        eye = np.eye(self._dim)
        U = np.stack([np.triu(np.linalg.solve(Lb, eye).T) for Lb in L]) if L.shape[0] else L.copy()
        return self._out(U)

    # ---- acting and learning -----------------------------------------------------------
    def act(self, actions: Any, mask: Any = None, *, return_probability: bool = False,
            n_samples: int = 1024) -> Any:
        """Choose an action from a finite set.

        Parameters
        ----------
        actions : array_like
            Action features: (K, d) shared by all agents, or (B, K, d) one set per agent.
            Passing a C-contiguous array of the agent's dtype on its device avoids a copy.
        mask : array_like of bool, optional
            Available actions: (K,) or (B, K). Every agent needs at least one.
        return_probability : bool, default False
            Also return the probability, under the policy that acted, of the chosen action
            (for logging propensities): :meth:`action_probabilities` with ``ties="first"``
            evaluated on the state before acting. It draws from a separate stream, so the
            action chosen is the same with or without it.
        n_samples : int, default 1024
            Posterior draws of that estimate (used with ``return_probability`` only).

        Returns
        -------
        int or array of int64
            The chosen index (single agent) or one index per agent, shape (B,).
        float or array of float64
            With ``return_probability``: the chosen action's probability, a float or (B,).
        """
        if return_probability:
            probs = self.action_probabilities(actions, mask, n_samples=n_samples, ties="first")
            chosen = self.act(actions, mask)
            if self._single:
                return chosen, float(probs[chosen])
            idx = to_numpy(chosen)
            return chosen, probs[np.arange(idx.shape[0]), idx]
        if self._fast and mask is None and type(actions) is np.ndarray:
            # The kernel converts dtype, byte order and layout itself (one visible copy).
            return int(self._kernel.act1(actions, None))
        X = self._actions_in(actions)
        m = None if mask is None else self._mask_in(mask, X)
        if self._single:
            return int(self._kernel.act1(X, m))
        return _in_library_of(self._kernel.act(X, m), actions)

    def action_probabilities(self, actions: Any, mask: Any = None, *, n_samples: int = 1024,
                             ties: str = "split") -> np.ndarray:
        """Probability that each agent's policy picks each action now.

        Parameters
        ----------
        actions : array_like
            Action features (K, d), or (B, K, d) one set per agent.
        mask : array_like of bool, optional
            Available actions (K,) or (B, K); masked actions get probability 0.
        n_samples : int, default 1024
            Posterior draws per agent (Ensemble++ and Thompson sampling).
        ties : {"split", "first"}, default "split"
            Exactly tied best actions share the probability evenly, or all of it goes to the
            lowest index, as :meth:`act` breaks ties.

        Returns
        -------
        numpy.ndarray
            float64, shape (K,) for a single agent or (B, K); every row sums to 1.

        Notes
        -----
        Ensemble++ and exact Thompson sampling: the fraction of ``n_samples`` posterior draws
        under which the action scores highest, computed in one compiled pass per agent. An entry
        p has Monte Carlo standard error ``sqrt(p (1 - p) / n_samples)`` (at most
        ``0.5 / sqrt(n_samples)``, 0.016 for 1024 draws); draws are independent, so the entries
        of a row are a multinomial frequency vector. Ensemble sampling is exact (the fraction of
        its M models that pick the action), greedy and LinUCB are exact one-hot vectors.

        The draws come from a stream of their own, keyed by (seed, the agent's stream id, the
        agent's current step) with a domain constant (``probability_key`` in
        ``cpp/include/ensemblepp/production.hpp``): the agent's own counter is neither used nor
        advanced, so estimating probabilities never changes what the agent does, the same state
        gives the same estimate, and an agent gets the same estimate alone or in any batch.
        """
        if ties not in ("split", "first"):
            raise ValueError(f"ties: expected 'split' or 'first', got {ties!r}")
        n = _check_int(n_samples, "n_samples", 1, 2**48 + 1)
        X = self._actions_in(actions)
        m = None if mask is None else self._mask_in(mask, X)
        out = self._kernel.action_probabilities(X, m, n, ties == "first")
        return out[0] if self._single else out

    def warm_start(self, x: Any, r: Any, offsets: Any = None, mask: Any = None) -> None:
        """Learn from logged rows of many agents in one compiled call (a ragged update).

        Parameters
        ----------
        x : array_like
            Features (N, d) of all logged rows, grouped by agent: the rows of agent b are
            ``offsets[b]:offsets[b + 1]``, applied in order (build ``offsets`` from per-agent
            row counts with ``np.concatenate([[0], np.cumsum(counts)])``, or from a sorted agent
            index with ``np.searchsorted(index, np.arange(B + 1))``).
        r : array_like
            Rewards (N,).
        offsets : array_like of int, shape (B + 1,)
            Row boundaries: ``offsets[0] == 0``, non-decreasing, ``offsets[B] == N``. Not
            needed for a single agent (all rows are its own).
        mask : array_like of bool, optional
            (N,), False for rows to skip.

        Notes
        -----
        Equivalent to applying each agent's rows one by one with :meth:`update`, with the same
        random draws: bit for bit for agents with fewer than max(16, d) rows, that forget, or on
        ``device="cuda"``; on the CPU an agent with more rows takes the closed form of the
        same recursion in blocked matrix products, equal up to rounding and several times faster.
        Agents run in parallel threads (on ``device="cuda"``: one launch, a thread block per
        agent). Every row, the offsets
        and the agents' random streams are checked before anything changes: bad input raises
        ``ValueError`` naming the argument and leaves every agent as it was.
        """
        X = self._array_in(x, "x")
        R = self._array_in(r, "r")
        if X.ndim != 2 or X.shape[1] != self._dim:
            raise ValueError(f"x: expected shape (N, {self._dim}), got {tuple(X.shape)}")
        if R.shape != (X.shape[0],):
            raise ValueError(f"r: expected shape ({X.shape[0]},), got {tuple(R.shape)}")
        if offsets is None:
            if not self._single:
                raise ValueError("offsets: batched agents need offsets (B + 1,) grouping the rows")
            offsets = np.array([0, X.shape[0]], dtype=np.int64)
        off = to_numpy(offsets)
        if off.dtype.kind not in "iu":
            raise TypeError(f"offsets: expected an integer array, got dtype {off.dtype}")
        if off.shape != (self._n_agents + 1,):
            raise ValueError(f"offsets: expected shape ({self._n_agents + 1},), got {off.shape}")
        if off.dtype.kind == "u" and off.size and int(off.max()) > np.iinfo(np.int64).max:
            raise ValueError("offsets: values out of range")
        off = np.ascontiguousarray(off, dtype=np.int64)
        M = None
        if mask is not None:
            M = self._array_in(mask, "mask", dtype=bool)
            if M.shape != (X.shape[0],):
                raise ValueError(f"mask: expected shape ({X.shape[0]},), got {tuple(M.shape)}")
        self._kernel.update_ragged(X, R, off, M)

    @property
    def forgetting(self) -> float:
        """Forgetting factor gamma in (0, 1] (1: no forgetting)."""
        return self._forgetting

    def _actions_in(self, actions: Any) -> Any:
        X = self._array_in(actions, "actions")
        ok = X.ndim == 2 or (X.ndim == 3 and not self._single)
        if not ok or X.shape[-1] != self._dim:
            want = f"(K, {self._dim})" + ("" if self._single else f" or ({self._n_agents}, K, {self._dim})")
            raise ValueError(f"actions: expected shape {want}, got {_shape_of(actions)}")
        return X

    def _mask_in(self, mask: Any, X: Any) -> Any:
        m = self._array_in(mask, "mask", dtype=bool)
        K = X.shape[-2]
        if m.shape != (K,) and (self._single or m.shape != (self._n_agents, K)):
            want = f"({K},)" + ("" if self._single else f" or ({self._n_agents}, {K})")
            raise ValueError(f"mask: expected shape {want}, got {_shape_of(mask)}")
        return m

    def _array_in(self, a: Any, name: str, dtype: Any = None) -> Any:
        if self._device == "cuda":
            from ensemblepp._cuda_backend import as_device_array  # noqa: PLC0415

            return as_device_array(a, self._dtype if dtype is None else dtype, name)
        if dtype is bool:
            return _bool_array(a, name)
        return _real_array(a, self._dtype if dtype is None else dtype, name)

    def act_sphere(self) -> Any:
        """Best action on the unit sphere: x = theta / |theta| for a posterior draw theta.

        Returns
        -------
        array
            Shape (d,) or (B, d).
        """
        return self._out(self._kernel.act_sphere())

    def sample(self) -> Any:
        """One posterior draw theta per agent.

        Returns
        -------
        array
            Shape (d,) or (B, d). Greedy and LinUCB return the mean.
        """
        return self._out(self._kernel.sample())

    def update(self, x: Any, r: Any, mask: Any = None) -> None:
        """Learn from observed rewards.

        Parameters
        ----------
        x : array_like
            Features of the played actions. Single agent: (d,) for one observation or (n, d)
            for n observations applied in order. Batched: (B, d), or (B, n, d).
        r : float or array_like
            Rewards: a float or (n,) for a single agent; (B,) or (B, n) for a batch.
        mask : array_like of bool, optional
            Batched only: (B,) or (B, n), False where an agent observed nothing.

        Raises
        ------
        ValueError
            For shapes that do not match, or NaN or infinite features or rewards; the state is
            then left unchanged.

        Notes
        -----
        Rows are applied one by one. To learn from many logged rows at once, :meth:`warm_start`
        gives the same result up to rounding, in closed form, several times faster.
        """
        if self._fast and mask is None and type(x) is np.ndarray and x.ndim == 1 and isinstance(r, float):
            self._kernel.update1(x, r)  # converts dtype, byte order and layout itself
            return
        d, B = self._dim, self._n_agents
        X = self._array_in(x, "x")
        R = self._array_in(r, "r")
        if self._single:
            if mask is not None:
                raise ValueError("mask: only batched agents (n_agents=B) take an update mask")
            if X.ndim not in (1, 2) or X.shape[-1] != d:
                raise ValueError(f"x: expected shape ({d},) or (n, {d}), got {_shape_of(x)}")
            X = X.reshape(1, 1 if X.ndim == 1 else X.shape[0], d)
            if R.size != X.shape[1] or R.ndim > 1:
                raise ValueError(f"r: expected {X.shape[1]} reward(s), got shape {_shape_of(r)}")
            R = R.reshape(1, -1)
            M = None
        else:
            if X.ndim == 2:
                X = X.reshape(X.shape[0], 1, X.shape[1])
            if X.ndim != 3 or X.shape[0] != B or X.shape[2] != d:
                raise ValueError(f"x: expected shape ({B}, {d}) or ({B}, n, {d}), got {_shape_of(x)}")
            n = X.shape[1]
            if R.shape not in ((B,), (B, n)) or (R.ndim == 1 and n != 1):
                raise ValueError(f"r: expected shape ({B},)" + (f" or ({B}, {n})" if n > 1 else "") + f", got {_shape_of(r)}")
            R = R.reshape(B, n)
            M = None
            if mask is not None:
                M = self._array_in(mask, "mask", dtype=bool)
                if M.shape not in ((B,), (B, n)) or (M.ndim == 1 and n != 1):
                    raise ValueError(f"mask: expected shape ({B},)" + (f" or ({B}, {n})" if n > 1 else "") + f", got {_shape_of(mask)}")
                M = M.reshape(B, n)
        self._kernel.update(X, R, M)

    # ---- persistence -------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "dim": self._dim,
            "noise_std": self._noise_std,
            "n_agents": self.n_agents,
            "dtype": self._dtype.name,
            "seed": self._seed,
            "forgetting": self._forgetting,
        }

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """The state as host arrays (copies), keyed as :meth:`_state_shapes`, with a batch axis.

        Together with the hyperparameters, the prior and :meth:`_from_state` this is
        the one seam through which model files read and write an agent.
        """
        return {name: np.array(to_numpy(self._buffers[name][: self._n_agents])) for name in self._state_shapes()}

    def save(self, path: str | os.PathLike) -> None:
        """Save hyperparameters, prior and state to a model file, atomically.

        The file (see :mod:`ensemblepp.files`) restores the agent exactly with
        :func:`ensemblepp.load`, on either device; a loaded agent continues the same
        trajectory. An existing file at ``path`` is replaced only once the new one is
        complete on disk.
        """
        from ensemblepp import files  # noqa: PLC0415

        files.save(self, path)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({hp}, device={self._device!r})"


class _FactorPolicy(LinearPolicy):
    """A linear policy that also keeps a (d, M) factor: Ensemble++ and ensemble sampling."""

    _has_factor = True

    def _set_ensemble_size(self, ensemble_size: int) -> None:
        self._ensemble_size = _check_int(ensemble_size, "ensemble_size", 1, _core.MAX_VECTOR_LENGTH + 1)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "ensemble_size": self._ensemble_size}

    @property
    def ensemble_size(self) -> int:
        """Number M of ensemble members (directions or models)."""
        return self._ensemble_size

    @property
    def factor(self) -> Any:
        """The factor A of Ensemble++ (theta = mu + A zeta), the models of ensemble sampling; (d, M) or (B, d, M), a copy."""
        return self._out(self._kernel.factor())

    def _hyperparameters(self) -> dict[str, Any]:
        hp = super()._hyperparameters()
        hp["ensemble_size"] = self._ensemble_size
        return hp


class LinearEnsemble(_FactorPolicy):
    """Linear Ensemble++: approximate Thompson sampling with a shared ensemble factor.

    Keeps the posterior mean mu, a square root L of the posterior covariance (Sigma = L^T L,
    both float64) and the factor A (d x M, E[A A^T] ~ Sigma), all updated in O(d^2 + dM) per
    observation (Carlson's square-root step, no solve). A posterior draw is theta = mu + A zeta
    with zeta from the reference distribution.

    Parameters
    ----------
    dim : int
        Feature dimension d.
    ensemble_size : int, default 16
        Number M of ensemble directions.
    prior_var, noise_std, prior_mean, n_agents, device, dtype, seed, stream_ids, forgetting
        See :class:`LinearPolicy`.
    reference : str, default "gaussian"
        Distribution of zeta (reference scale, E[zeta zeta^T] = I).
    perturbation : str, default "sphere"
        Distribution of the update perturbation z (unit second moment).
    reference_sparsity, perturbation_sparsity : int, optional
        Nonzeros of the ``sparse`` distribution (default min(2, M)).

    Examples
    --------
    >>> import numpy as np, ensemblepp as epp
    >>> agent = epp.LinearEnsemble(dim=3, ensemble_size=4, seed=0)
    >>> actions = np.eye(3)
    >>> a = agent.act(actions)
    >>> agent.update(actions[a], 1.0)
    >>> agent.factor.shape
    (3, 4)
    """

    _policy = "ensemble"

    def __init__(
        self,
        dim: int,
        ensemble_size: int = 16,
        *,
        prior_var: float | Any = 10.0,
        noise_std: float = 1.0,
        reference: str = "gaussian",
        perturbation: str = "sphere",
        reference_sparsity: int | None = None,
        perturbation_sparsity: int | None = None,
        prior_mean: Any = None,
        n_agents: int | None = None,
        device: str = "cpu",
        dtype: str | type | np.dtype = "float64",
        seed: int | None = None,
        stream_ids: Any = None,
        forgetting: float = 1.0,
    ) -> None:
        self._set_ensemble_size(ensemble_size)
        distribution_code(reference, "reference")
        distribution_code(perturbation, "perturbation")
        self._reference, self._perturbation = reference, perturbation
        self._reference_sparsity = check_sparsity(reference_sparsity, self._ensemble_size, "reference_sparsity")
        self._perturbation_sparsity = check_sparsity(perturbation_sparsity, self._ensemble_size, "perturbation_sparsity")
        super().__init__(dim, prior_var=prior_var, noise_std=noise_std, prior_mean=prior_mean, n_agents=n_agents,
                         device=device, dtype=dtype, seed=seed, stream_ids=stream_ids, forgetting=forgetting)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "reference": distribution_code(self._reference),
                "perturbation": distribution_code(self._perturbation),
                "reference_sparsity": self._reference_sparsity, "perturbation_sparsity": self._perturbation_sparsity}

    def _hyperparameters(self) -> dict[str, Any]:
        hp = super()._hyperparameters()
        hp.update(reference=self._reference, perturbation=self._perturbation,
                  reference_sparsity=self._reference_sparsity, perturbation_sparsity=self._perturbation_sparsity)
        return hp


class LinearTS(LinearPolicy):
    """Exact linear Thompson sampling in O(d^2) per step.

    Keeps a lower-triangular square root L of the posterior covariance (Sigma = L^T L) up to
    date by rank-one updates; a draw theta = mu + L^T g with g ~ N(0, I) has covariance Sigma.
    Parameters as in :class:`LinearPolicy`.
    """

    _policy = "thompson"


class LinearEnsembleSampling(_FactorPolicy):
    """Ensemble sampling (Lu and Van Roy, 2017): M perturbed least-squares models.

    Each model starts from theta_m ~ N(mu_0, Sigma_0) and follows
    theta_m <- theta_m + k (r + w_m - x.theta_m), w_m ~ N(0, eta^2), k = Sigma x / (eta^2 + x^T Sigma x),
    kept as theta_m = mu + D e_m (the offsets D updated in the same feedback form); an action is chosen greedily for
    one model picked uniformly at random.

    Parameters
    ----------
    dim : int
        Feature dimension d.
    ensemble_size : int, default 16
        Number M of models.
    prior_var, noise_std, prior_mean, n_agents, device, dtype, seed, stream_ids, forgetting
        See :class:`LinearPolicy`.
    """

    _policy = "ensemble_sampling"

    def __init__(
        self,
        dim: int,
        ensemble_size: int = 16,
        *,
        prior_var: float | Any = 10.0,
        noise_std: float = 1.0,
        prior_mean: Any = None,
        n_agents: int | None = None,
        device: str = "cpu",
        dtype: str | type | np.dtype = "float64",
        seed: int | None = None,
        stream_ids: Any = None,
        forgetting: float = 1.0,
    ) -> None:
        self._set_ensemble_size(ensemble_size)
        super().__init__(dim, prior_var=prior_var, noise_std=noise_std, prior_mean=prior_mean, n_agents=n_agents,
                         device=device, dtype=dtype, seed=seed, stream_ids=stream_ids, forgetting=forgetting)

    @property
    def models(self) -> Any:
        """The M models theta_m = mu + D e_m as columns, shape (d, M) or (B, d, M), computed on request."""
        return self._out(self._kernel.factor())


class LinUCB(LinearPolicy):
    """LinUCB: the action maximising x.mu + alpha sqrt(x^T Sigma x).

    Parameters
    ----------
    dim : int
        Feature dimension d.
    alpha : float, default 1.0
        Width of the confidence bonus.
    prior_var, noise_std, prior_mean, n_agents, device, dtype, seed, stream_ids, forgetting
        See :class:`LinearPolicy`.
    """

    _policy = "ucb"

    def __init__(
        self,
        dim: int,
        *,
        alpha: float = 1.0,
        prior_var: float | Any = 10.0,
        noise_std: float = 1.0,
        prior_mean: Any = None,
        n_agents: int | None = None,
        device: str = "cpu",
        dtype: str | type | np.dtype = "float64",
        seed: int | None = None,
        stream_ids: Any = None,
        forgetting: float = 1.0,
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) or not (
            math.isfinite(alpha) and alpha >= 0
        ):
            raise ValueError(f"alpha: must be a finite number >= 0, got {alpha!r}")
        self._alpha = float(alpha)
        super().__init__(dim, prior_var=prior_var, noise_std=noise_std, prior_mean=prior_mean, n_agents=n_agents,
                         device=device, dtype=dtype, seed=seed, stream_ids=stream_ids, forgetting=forgetting)

    @property
    def alpha(self) -> float:
        """Width of the confidence bonus."""
        return self._alpha

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "alpha": self._alpha}

    def _hyperparameters(self) -> dict[str, Any]:
        hp = super()._hyperparameters()
        hp["alpha"] = self._alpha
        return hp


class LinearGreedy(LinearPolicy):
    """Greedy: acts on the posterior mean, theta = mu. Parameters as in :class:`LinearPolicy`."""

    _policy = "greedy"


_CLASSES = {c.__name__: c for c in (LinearEnsemble, LinearTS, LinearEnsembleSampling, LinUCB, LinearGreedy)}


def load(path: str | os.PathLike, device: str | None = None) -> Any:
    """Load an agent saved with ``save``: :func:`ensemblepp.files.load` (linear or neural).

    Parameters
    ----------
    path : str or path-like
        The model file.
    device : str, optional
        Device of the loaded agent; by default the one it was saved from when it exists here.

    Returns
    -------
    LinearPolicy or NeuralAgent
        An agent of the saved class whose next steps continue the saved trajectory.

    Raises
    ------
    ensemblepp.ModelFileError
        For a missing, damaged, crafted or foreign file, naming the file and the field.
    """
    from ensemblepp import files  # noqa: PLC0415

    return files.load(path, device=device)
