"""CUDA backend of the linear policies: CuPy state arrays stepped by the ``_cuda`` kernels.

:class:`CudaKernel` has the interface of ``_core.Kernel64`` / ``_core.Kernel32`` over CuPy
arrays. Each call enqueues a fixed number of kernels on CuPy's current stream (one block per
agent) and never copies state to the host. The draws use the same Philox counters as the CPU, so
with the same seed both backends follow the same trajectory up to floating-point rounding.

CuPy is imported inside the functions only, so that ``import ensemblepp`` works without it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ensemblepp._backend import cuda_module, narrow_quietly

__all__ = ["CudaKernel", "as_device_array"]

_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}
_POLICY_NAMES = {0: "ensemble", 1: "thompson", 2: "ensemble_sampling", 3: "ucb", 4: "greedy"}
_DLPACK_CUDA = 2  # kDLCUDA in DLPack's DLDeviceType


def _cupy() -> Any:
    try:
        import cupy  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError("device='cuda' needs CuPy (pip install 'ensemblepp[cuda]')") from exc
    return cupy


def _kind_error(name: str, dtype: Any, want_bool: bool) -> TypeError:
    what = "a boolean array" if want_bool else "a real numeric array"
    return TypeError(f"{name}: expected {what}, got dtype {dtype}")


def as_device_array(a: Any, dtype: Any, name: str) -> Any:
    """A C-contiguous CuPy array of ``dtype`` holding ``a``.

    Parameters
    ----------
    a : array_like
        A CuPy array, a torch tensor (CUDA or CPU), any object exposing
        ``__cuda_array_interface__`` or a CUDA ``__dlpack__``, a NumPy array, a sequence or a scalar.
    dtype : dtype
        Target type: ``float32``, ``float64`` or ``bool`` (nonzero is True).
    name : str
        Argument name used in error messages.

    Returns
    -------
    cupy.ndarray
        ``a`` itself (no copy) when it is already a C-contiguous device array of ``dtype`` with
        at least one dimension, else a converted copy; scalars become shape (1,), as with
        :func:`numpy.ascontiguousarray`. Device arrays are read on CuPy's current stream: data
        written by torch on another stream must be synchronised first.

    Raises
    ------
    TypeError
        When ``a`` is not numeric (complex, strings, objects), or not boolean-like for ``bool``.
    """
    cp = _cupy()
    dt = np.dtype(dtype)
    want_bool = dt == np.bool_
    kinds = "biu" if want_bool else "biuf"
    arr = None
    if isinstance(a, cp.ndarray):
        arr = a
    elif type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach"):
        t = a.detach()
        if t.is_cuda:
            try:
                arr = cp.asarray(t)  # __cuda_array_interface__: zero copy
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name}: unsupported torch dtype {t.dtype}") from exc
        else:
            try:
                a = t.numpy()
            except (TypeError, RuntimeError) as exc:
                raise TypeError(f"{name}: unsupported torch dtype {t.dtype}") from exc
    elif hasattr(a, "__cuda_array_interface__"):
        arr = cp.asarray(a)
    elif hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__") and not isinstance(a, np.ndarray):
        if a.__dlpack_device__()[0] == _DLPACK_CUDA:
            arr = cp.from_dlpack(a)
    if arr is None:
        try:
            host = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: expected an array, got {type(a).__name__}") from exc
        if host.dtype.kind not in kinds:
            raise _kind_error(name, host.dtype, want_bool)
        return cp.asarray(np.ascontiguousarray(narrow_quietly(host, dt), dtype=dt))
    if arr.dtype.kind not in kinds:
        raise _kind_error(name, arr.dtype, want_bool)
    if arr.dtype == dt and arr.flags.c_contiguous and arr.ndim >= 1:
        return arr
    out = cp.ascontiguousarray(arr.astype(dt, copy=False))
    return out.reshape(1) if out.ndim == 0 else out


def _ptr(a: Any) -> int:
    return 0 if a is None else int(a.data.ptr)


class CudaKernel:
    """Batched CUDA kernel of one linear policy over CuPy state arrays owned by the caller.

    Same methods as ``_core.Kernel64``; the state arrays ``cov_root`` (B, d, d) and ``mean`` (B, d)
    float64, ``factor`` (B, d, M) of the agent's dtype or None, ``steps`` and ``stream_ids``
    (B,) uint64 must be C-contiguous CuPy arrays. They are kept alive by the kernel and updated in
    place on CuPy's current stream. Calls on one kernel are serialised by a lock.

    Parameters
    ----------
    config : dict
        Keyword arguments of ``LinearConfig`` (the CPU kernels take the same).
    cov_root, mean, factor, steps
        State arrays, see above (layout of ``cpp/include/ensemblepp/linear.hpp``).
    stream_ids
        (B,) uint64 CuPy array: the key of each agent's random stream (read only).
    validate : bool, default True
        Bad input (NaN, infinite or out-of-range features or rewards, NaN or infinite scores, an
        agent with every action masked out, a non-finite state) never changes the state: the
        kernels detect it on the device, skip the update or put the counters back, and record
        the first offender in a small device buffer. With ``validate=True`` each ``act`` and
        ``update`` then reads that buffer (one small copy, which waits for the stream) and
        raises ``ValueError``. With ``validate=False`` the calls return without waiting and a
        bad call is silently ignored: ``update`` changes nothing, ``act`` puts every counter
        back and its indices are meaningless (-1 for an agent with no available finite score);
        ``update_ragged`` also skips the check that no agent's random stream runs past 2**48
        draws. Use it only with inputs known to be valid.

    Notes
    -----
    One call is a fixed number of launches: ``act`` a memset, the act kernel (sample, score and
    argmax in one block per agent) and a counter-restoring kernel; ``update`` a memset, a
    validation kernel and the update kernel; ``sample`` and ``act_sphere`` one kernel;
    ``update_ragged`` (also ``update`` with forgetting) a memset, a validation kernel over the rows
    and the ragged kernel (a block per agent looping over its rows); ``action_probabilities`` a
    memset and one kernel (a block per agent, a thread per posterior draw), then one copy back.
    A single agent with a very large action set runs on one block: the GPU pays off for many
    agents.
    """

    def __init__(
        self,
        config: dict[str, Any],
        cov_root: Any,
        mean: Any,
        factor: Any,
        steps: Any,
        stream_ids: Any,
        *,
        validate: bool = True,
    ) -> None:
        cp = _cupy()
        self._cp = cp
        if not isinstance(mean, cp.ndarray) or mean.ndim != 2:
            raise ValueError("mean: expected a (B, d) CuPy array")
        # Every launch goes to the device that holds the state (checked in _stream).
        self._device_id = int(mean.device.id)
        self._cuda = cuda_module(self._device_id)
        self.config = self._cuda.LinearConfig(**config)
        B, d, M = int(mean.shape[0]), self.config.dim, self.config.ensemble_size
        self._dtype = np.dtype(np.float32 if self.config.dtype == 0 else np.float64)
        self._check_state(cov_root, "cov_root", (B, d, d), np.dtype(np.float64))
        self._check_state(mean, "mean", (B, d), np.dtype(np.float64))
        policy = self.config.policy
        if factor is not None:
            self._check_state(factor, "factor", (B, d, M), self._dtype)
        elif policy in (0, 2):
            raise ValueError("factor: this policy needs a (B, d, M) factor")
        self._check_state(steps, "steps", (B,), np.dtype(np.uint64))
        self._check_state(stream_ids, "stream_ids", (B,), np.dtype(np.uint64))
        self._config_kwargs = dict(config)
        self._policy = int(policy)
        self._B, self._d = B, d
        self._cov_root, self._mean, self._factor, self._steps = cov_root, mean, factor, steps
        self._stream_ids = stream_ids
        width = self._cuda.workspace_size(self.config)
        self._work = cp.empty((B, width), cp.float64) if width else None
        self._state = self._cuda.State(
            cov_root=_ptr(cov_root), mean=_ptr(mean), factor=_ptr(factor), steps=_ptr(steps), stream_ids=_ptr(stream_ids),
            work=_ptr(self._work), n_agents=B,
        )
        self._theta = cp.zeros((B, d), self._dtype)
        self._saved = cp.zeros(B, cp.uint64)
        self._errors = cp.zeros(3, cp.uint64)
        self._act1_buffer = cp.zeros(4, cp.uint64)  # error slots, then the choice (as int64)
        self._lock = threading.Lock()
        self.validate = bool(validate)
        self._forget: tuple[float, Any, Any, Any] | None = None  # gamma, dirs, targets, updates

    def _check_state(self, a: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if not isinstance(a, self._cp.ndarray):
            raise TypeError(f"{name}: expected a CuPy array, got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype}, got {a.dtype}")
        if tuple(a.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous")
        self._check_device_of(a, name)

    def _check_device_of(self, a: Any, name: str) -> None:
        if int(a.device.id) != self._device_id:
            raise ValueError(f"{name}: is on cuda:{int(a.device.id)} but the agent's state is on cuda:{self._device_id}")

    def _input(self, a: Any, name: str, dtype: np.dtype) -> Any:
        if not isinstance(a, self._cp.ndarray):
            raise TypeError(f"{name}: expected a CuPy array, got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype}, got {a.dtype}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous")
        self._check_device_of(a, name)
        return a

    def _stream(self) -> int:
        """CuPy's current stream, once the current device is checked to hold the state."""
        current = int(self._cp.cuda.runtime.getDevice())
        if current != self._device_id:
            raise ValueError(
                f"device: the agent's state is on cuda:{self._device_id} but CuPy's current device is cuda:{current}; "
                f"call it inside `with cupy.cuda.Device({self._device_id}):`")
        return int(self._cp.cuda.get_current_stream().ptr)

    # ---- acting ------------------------------------------------------------------------
    def act(self, actions: Any, mask: Any = None, *, out: Any = None, errors: Any = None) -> Any:
        """Index of the chosen action of every agent.

        Parameters
        ----------
        actions : cupy.ndarray
            (K, d) shared or (B, K, d) per agent, of the state's dtype, C-contiguous.
        mask : cupy.ndarray of bool, optional
            (K,) or (B, K): available actions.
        out : cupy.ndarray, optional
            (B,) int64 buffer for the result (internal use).
        errors : cupy.ndarray, optional
            (2,) uint64 error slots to use instead of the kernel's own; the call then does not
            read them (internal use: :meth:`act1` reads them with the choice).

        Returns
        -------
        cupy.ndarray
            (B,) int64, ties to the lowest index.

        Raises
        ------
        ValueError
            For wrong shapes, an empty action set, an agent with every action masked out or a
            NaN or infinite score (with ``validate``); the state is then unchanged.
        """
        B = self._B
        X, K, per_agent = self._action_set(actions)
        errors = self._errors if errors is None else errors
        mask, mask_per_agent = self._action_mask(mask, K)
        out = self._cp.empty(B, self._cp.int64) if out is None else out
        with self._lock:
            self._cuda.act(
                self.config, self._state, _ptr(X), K, per_agent, _ptr(mask), mask_per_agent,
                _ptr(out), _ptr(self._theta), _ptr(self._saved), _ptr(errors), self._stream(),
            )  # fmt: skip
            if self.validate and errors is self._errors:
                self._raise_act_errors(self._errors.get())
        return out

    def _raise_act_errors(self, errors: np.ndarray) -> None:
        no = self._cuda.NO_ERROR
        masked, nonfinite, state = int(errors[0]), int(errors[1]), int(errors[2])
        if state != no:
            raise ValueError(f"state: agent {state} has a NaN or infinite state (its posterior draw is not finite)")
        if masked != no:
            raise ValueError(f"mask: every action of agent {masked} is masked out")
        if nonfinite != no:
            raise ValueError("actions: contains NaN or infinite values")

    def act1(self, actions: Any, mask: Any = None) -> int:
        """Index of the chosen action of a single agent (agent 0 of a batch).

        Waits for the stream once: the error slots and the choice come back in one copy.
        """
        if self._B != 1:
            return int(self.act(actions, mask)[0])  # agent 0, as the CPU kernel's act1
        buf = self._act1_buffer
        self.act(actions, mask, out=buf[3:].view(self._cp.int64), errors=buf)
        host = buf.get()
        if self.validate:
            self._raise_act_errors(host)
        return int(host[3:].view(np.int64)[0])

    def _draw(self, unit_norm: bool) -> Any:
        out = self._cp.empty((self._B, self._d), self._dtype)
        with self._lock:
            self._cuda.sample(self.config, self._state, _ptr(out), unit_norm, self._stream())
        return out

    def act_sphere(self) -> Any:
        """Best unit-norm action theta / |theta| of every agent, (B, d)."""
        if self._policy == 3:
            raise ValueError("actions: LinUCB has no closed-form maximiser on the sphere")
        return self._draw(True)

    def sample(self) -> Any:
        """One posterior draw per agent, (B, d) (the mean for greedy and LinUCB)."""
        return self._draw(False)

    @property
    def theta(self) -> Any:
        """theta used by the last act, (B, d) (the kernel's buffer, overwritten by the next act)."""
        return self._theta

    # ---- learning ----------------------------------------------------------------------
    def _action_set(self, actions: Any) -> tuple[Any, int, bool]:
        """The action set on the device in the state's dtype, its size K and whether it is per agent."""
        B, d = self._B, self._d
        X = self._input(actions, "actions", self._dtype)
        if X.ndim == 2 and X.shape[1] == d:
            K, per_agent = int(X.shape[0]), False
        elif X.ndim == 3 and X.shape[0] == B and X.shape[2] == d:
            K, per_agent = int(X.shape[1]), True
        else:
            raise ValueError(f"actions: expected shape (K, {d}) or ({B}, K, {d}), got {tuple(X.shape)}")
        if K < 1:
            raise ValueError("actions: the action set is empty")
        return X, K, per_agent

    def _action_mask(self, mask: Any, K: int) -> tuple[Any, bool]:
        """The availability mask on the device (or None) and whether it is per agent ((B, K) or (K,))."""
        if mask is None:
            return None, False
        B = self._B
        m = self._input(mask, "mask", np.dtype(bool))
        if tuple(m.shape) == (B, K):
            return m, True
        if tuple(m.shape) != (K,):
            raise ValueError(f"mask: expected shape ({K},) or ({B}, {K}), got {tuple(m.shape)}")
        return m, False

    def update(self, x: Any, r: Any, mask: Any = None) -> None:
        """Apply observations x (B, n, d), r (B, n) in order; mask (B, n) selects those seen.

        Raises
        ------
        ValueError
            For wrong shapes, or (with ``validate``) NaN or infinite features or rewards among
            the selected observations; the state is then unchanged.
        """
        B, d = self._B, self._d
        X = self._input(x, "x", self._dtype)
        if X.ndim != 3 or X.shape[0] != B or X.shape[2] != d:
            raise ValueError(f"x: expected shape ({B}, n, {d}), got {tuple(X.shape)}")
        n = int(X.shape[1])
        R = self._input(r, "r", self._dtype)
        if tuple(R.shape) != (B, n):
            raise ValueError(f"r: expected shape ({B}, {n}), got {tuple(R.shape)}")
        if mask is not None:
            mask = self._input(mask, "mask", np.dtype(bool))
            if tuple(mask.shape) != (B, n):
                raise ValueError(f"mask: expected shape ({B}, {n}), got {tuple(mask.shape)}")
        if self._forget is not None:
            # Forgetting runs in the ragged kernel: agent b's rows are b n, ..., b n + n - 1.
            offsets = np.arange(B + 1, dtype=np.int64) * n
            self.update_ragged(X.reshape(B * n, d), R.reshape(B * n), offsets,
                               None if mask is None else mask.reshape(B * n))
            return
        with self._lock:
            self._cuda.update(
                self.config, self._state, _ptr(X), _ptr(R), _ptr(mask), n, _ptr(self._errors), self._stream()
            )
            keys = self._errors[:2].get() if n > 0 else None
        key = int(keys[0]) if keys is not None and self.validate else self._cuda.NO_ERROR
        if keys is not None and int(keys[1]) != self._cuda.NO_ERROR:
            self._raise_refused(int(keys[1]))
        if key != self._cuda.NO_ERROR:
            self._raise_row_error(key, (key // 2) // n)

    @staticmethod
    def _raise_refused(agent: int) -> None:
        raise ValueError(f"x: the update of agent {agent} would make its posterior non-finite "
                         "(x' Sigma x / noise_std**2 overflows: a prior variance beyond ~1e150 with features "
                         "near the input bound); that agent keeps its state from that row on")

    def _raise_row_error(self, key: int, agent: int) -> None:
        bound = "2**38 for float32" if self._dtype == np.float32 else "2**480"
        if key % 2 == 0:
            raise ValueError(f"r: reward of agent {agent} is NaN, infinite or beyond the representable range "
                             f"(|r| / noise_std > {bound})")
        raise ValueError(f"x: features of agent {agent} are NaN, infinite or beyond the representable range "
                         f"(|x| / noise_std > {bound})")

    # ---- production loop (cpp/include/ensemblepp/production.hpp) -------------------------
    def set_forgetting(self, gamma: float, dirs: Any, targets: Any, updates: Any) -> None:
        """Forget with factor ``gamma`` (as the CPU kernel's ``set_forgetting``).

        Parameters
        ----------
        gamma : float
            Forgetting factor in (0, 1]; 1 turns forgetting off.
        dirs : array_like
            (d, d) float64: row k is the prior direction r_k refreshed by the k-th observation
            of every d (P_0 = sum_k r_k r_k^T).
        targets : array_like
            (d,) float64: r_k . mu_0.
        updates : cupy.ndarray
            (B,) uint64 state array: the observations each agent has applied (picks k), updated
            in place.
        """
        cp, d = self._cp, self._d
        g = float(gamma)
        if not (0.0 < g <= 1.0):
            raise ValueError(f"forgetting: must be in (0, 1], got {gamma}")
        dev = []
        for name, a, shape in (("dirs", dirs, (d, d)), ("targets", targets, (d,))):
            host = np.ascontiguousarray(a.get() if isinstance(a, cp.ndarray) else np.asarray(a), dtype=np.float64)
            if host.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {host.shape}")
            if not np.all(np.isfinite(host)):
                raise ValueError(f"{name}: contains NaN or infinite values")
            dev.append(cp.asarray(host))
        self._check_state(updates, "updates", (self._B,), np.dtype(np.uint64))
        with self._lock:
            self._forget = None if g == 1.0 else (g, dev[0], dev[1], updates)

    @property
    def forgetting(self) -> float:
        """The forgetting factor gamma (1: none)."""
        return 1.0 if self._forget is None else self._forget[0]

    def update_ragged(self, x: Any, r: Any, offsets: Any, mask: Any = None) -> None:
        """Apply logged rows of every agent in one launch (the CPU kernel's ``update_ragged``).

        Parameters
        ----------
        x : cupy.ndarray
            (N, d) rows of the state's dtype, grouped by agent.
        r : cupy.ndarray
            (N,) rewards.
        offsets : numpy.ndarray
            (B + 1,) int64 on the host: rows ``offsets[b]:offsets[b + 1]`` belong to agent b.
        mask : cupy.ndarray of bool, optional
            (N,), False for rows to skip.

        Raises
        ------
        ValueError
            For wrong shapes, bad offsets, an agent whose random stream would run out, or (with
            ``validate``) NaN, infinite or out-of-range rows; the state is then unchanged.
        """
        cp, B, d = self._cp, self._B, self._d
        X = self._input(x, "x", self._dtype)
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"x: expected shape (N, {d}), got {tuple(X.shape)}")
        N = int(X.shape[0])
        R = self._input(r, "r", self._dtype)
        if tuple(R.shape) != (N,):
            raise ValueError(f"r: expected shape ({N},), got {tuple(R.shape)}")
        off = np.asarray(offsets)
        if off.dtype != np.int64 or off.shape != (B + 1,):
            raise ValueError(f"offsets: expected a ({B + 1},) int64 array, got {off.dtype} {off.shape}")
        if off[0] != 0:
            raise ValueError("offsets: offsets[0] must be 0")
        steps_back = np.flatnonzero(np.diff(off) < 0)
        if steps_back.size:
            raise ValueError(f"offsets: must be non-decreasing (agent {int(steps_back[0])})")
        if off[-1] != N:
            raise ValueError(f"offsets: offsets[-1] must equal the number of rows {N}, got {int(off[-1])}")
        if mask is not None:
            mask = self._input(mask, "mask", np.dtype(bool))
            if tuple(mask.shape) != (N,):
                raise ValueError(f"mask: expected shape ({N},), got {tuple(mask.shape)}")
        forget = self._forget
        draws = 0 if self._policy not in (0, 2) else (2 if forget is not None else 1)
        with self._lock:
            stream = self._stream()
            off_dev = cp.asarray(off)
            if draws and N and self.validate:
                # Each applied row draws `draws` vectors: no agent may pass 2**48 (its stream would
                # repeat). One small wait, skipped with validate=False as the other checks.
                if mask is None:
                    rows = cp.diff(off_dev)
                else:
                    csum = cp.concatenate([cp.zeros(1, cp.int64), cp.cumsum(mask.astype(cp.int64))])
                    rows = csum[off_dev[1:]] - csum[off_dev[:-1]]
                limit = np.uint64(2**48)
                left = (limit - cp.minimum(self._steps, limit)).astype(cp.int64)
                over = cp.flatnonzero(rows * draws > left)
                if over.size:
                    raise ValueError(f"steps: agent {int(over[0])} has used up its random stream (2**48 draws)")
            width = self._cuda.ragged_workspace_size(self.config, forget is not None)
            work = cp.empty((B, width), cp.float64) if width else None
            gamma, dirs, targets, updates = forget if forget is not None else (1.0, None, None, None)
            self._cuda.update_ragged(
                self.config, self._state, gamma, _ptr(dirs), _ptr(targets), _ptr(updates), _ptr(X), _ptr(R),
                _ptr(mask), _ptr(off_dev), N, _ptr(work), _ptr(self._errors), stream,
            )  # fmt: skip
            keys = self._errors[:2].get() if N > 0 else None
        key = int(keys[0]) if keys is not None and self.validate else self._cuda.NO_ERROR
        if keys is not None and int(keys[1]) != self._cuda.NO_ERROR:
            self._raise_refused(int(keys[1]))
        if key != self._cuda.NO_ERROR:
            self._raise_row_error(key, int(np.searchsorted(off, key // 2, side="right")) - 1)

    def action_probabilities(self, actions: Any, mask: Any, n_samples: int, ties_first: bool) -> np.ndarray:
        """Probability that each agent picks each action, (B, K) float64 on the host.

        Same arguments and numbers as the CPU kernel's ``action_probabilities`` (the draws of the
        stream keyed by ``probability_key``, scored in one launch); the state is not changed.

        Raises
        ------
        ValueError
            For wrong shapes, an agent with every action masked out, a NaN or infinite available
            action or score, or a non-finite state.
        """
        cp, B = self._cp, self._B
        X, K, per_agent = self._action_set(actions)
        n = int(n_samples)
        if not 1 <= n <= 2**48:
            raise ValueError("n_samples: must be in [1, 2**48]")
        mask, mask_per_agent = self._action_mask(mask, K)
        out = cp.empty((B, K), cp.float64)
        width = self._cuda.probability_workspace_size(self.config, K)
        work = cp.empty((B, width), cp.float64) if width else None
        errors = cp.empty(3, cp.uint64)
        with self._lock:
            self._cuda.action_probabilities(
                self.config, self._state, _ptr(X), K, per_agent, _ptr(mask), mask_per_agent, n, bool(ties_first),
                _ptr(out), _ptr(work), _ptr(errors), self._stream(),
            )  # fmt: skip
            err = errors.get()
        no = self._cuda.NO_ERROR
        masked, actions_bad, state_bad = int(err[0]), int(err[1]), int(err[2])
        if masked != no:
            raise ValueError(f"mask: every action of agent {masked} is masked out")
        if state_bad != no and (actions_bad == no or state_bad < actions_bad):
            raise ValueError(f"state: agent {state_bad} has a NaN or infinite state (its posterior is not finite)")
        if actions_bad != no:
            raise ValueError("actions: contains NaN or infinite values")
        return out.get()

    # ---- initialisation and accessors ---------------------------------------------------
    def initialize(self, prior_cov_root: Any, prior_mean: Any, diagonal: bool, first: int = 0) -> None:
        """Write the prior state of agents first, ..., B-1 (float64 prior arrays, as the CPU kernel)."""
        cp, d = self._cp, self._d
        arrays = []
        for name, a, shape in (("prior_cov_root", prior_cov_root, (d, d)), ("prior_mean", prior_mean, (d,))):
            dev = cp.ascontiguousarray(cp.asarray(a, dtype=cp.float64))
            if tuple(dev.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(dev.shape)}")
            arrays.append(dev)
        with self._lock:
            self._cuda.initialize(self.config, self._state, *(_ptr(a) for a in arrays), bool(diagonal), int(first),
                                  self._stream())
            self._cp.cuda.get_current_stream().synchronize()  # the prior arrays die with this call

    def _host_kernel(self) -> Any:
        """A CPU kernel over host copies of the state (for the accessors, computed on request)."""
        from ensemblepp import _core  # noqa: PLC0415

        kernel = _core.Kernel64 if self._dtype == np.float64 else _core.Kernel32
        with self._lock:
            host = [None if a is None else a.get() for a in (self._cov_root, self._mean, self._factor, self._steps,
                                                              self._stream_ids)]
        return kernel(_core.LinearConfig(**self._config_kwargs), *host)

    def mean(self) -> Any:
        """Posterior means, (B, d), in the state's dtype."""
        return self._mean.astype(self._dtype)

    def covariance(self) -> Any:
        """Posterior covariances Sigma = L^T L, (B, d, d)."""
        return self._cp.asarray(self._host_kernel().covariance())

    def factor(self) -> Any:
        """The factor A (Ensemble++) or the models mu + D, (B, d, M) (computed in double on the host)."""
        return self._cp.asarray(self._host_kernel().factor())

    def __repr__(self) -> str:
        return (
            f"CudaKernel(policy={_POLICY_NAMES.get(self._policy)!r}, n_agents={self._B}, dim={self._d}, "
            f"dtype={self._dtype.name}, validate={self.validate})"
        )
