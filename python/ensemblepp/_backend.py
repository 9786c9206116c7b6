"""Backend probe: which compiled backends import and whether a CUDA device can run them.

The probe runs once per process and device; its answers are cached. A device counts as usable
only when a test kernel of this build ran on it, so a GPU whose architecture the module was not
compiled for (no SASS and no PTX it can JIT-compile) is reported in words instead of failing at
the first real launch.
"""

from __future__ import annotations

import functools
import re
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["has_cuda", "available_backends", "backend_status", "cuda_module", "check_device", "device_index",
           "get_num_threads", "set_num_threads"]

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?", re.IGNORECASE)


def _import_cuda() -> ModuleType:
    from ensemblepp import _cuda  # noqa: PLC0415

    return _cuda


def _device_words(module: Any, index: int) -> str:
    try:
        info = module.device_info(index)
        major, minor = info["compute_capability"]
        return f"GPU {index} ({info['name']}, compute capability {major}.{minor})"
    except (RuntimeError, KeyError, TypeError, ValueError):
        return f"GPU {index}"


def _probe_module(module: Any, index: int) -> str:
    """Why ``module`` cannot run kernels on device ``index``; ``""`` when it can."""
    try:
        count = int(module.device_count())
    except RuntimeError as exc:
        return f"the CUDA runtime failed ({exc})"
    if count < 1:
        why = getattr(module, "device_error", lambda: "")()
        return f"no CUDA device is usable ({why})" if why else "no CUDA device is visible"
    if not 0 <= index < count:
        return f"device cuda:{index} does not exist: {count} CUDA device(s) visible (cuda:0 to cuda:{count - 1})"
    why = module.probe_device(index)
    if why:
        built = str(getattr(module, "ARCHITECTURES", "unknown")).replace(",", ";")
        words = _device_words(module, index)
        hint = ""
        m = re.search(r"compute capability (\d+)\.(\d+)", words)
        if m:
            hint = f"; rebuild with ENSEMBLEPP_CUDA_ARCHITECTURES={m.group(1)}{m.group(2)} to run on it"
        return f"{words} cannot run this build's kernels (compiled for {built}): {why}{hint}"
    return ""


@functools.lru_cache(maxsize=None)
def _probe_cuda(index: int = 0) -> tuple[ModuleType | None, str]:
    try:
        module = _import_cuda()
    except ImportError as exc:  # built without nvcc, or a broken install
        return None, f"the CUDA module is not built ({exc})"
    why = _probe_module(module, index)
    if why:
        return None, why
    try:
        import cupy  # noqa: F401, PLC0415
    except ImportError:
        return None, "CuPy is not installed (pip install 'ensemblepp[cuda]')"
    return module, ""


def has_cuda() -> bool:
    """Whether the CUDA backend can run here.

    Returns
    -------
    bool
        True when the ``_cuda`` module was built, a test kernel of it ran on CUDA device 0 and
        CuPy imports. :func:`backend_status` says why not.
    """
    return _probe_cuda(0)[0] is not None


def available_backends() -> list[str]:
    """Names of the backends that work on this machine.

    Returns
    -------
    list of str
        ``["cpu"]``, plus ``"cuda"`` when :func:`has_cuda` is true.
    """
    return ["cpu", "cuda"] if has_cuda() else ["cpu"]


def backend_status() -> dict[str, str]:
    """Each backend and, in words, whether it works here and why not.

    Returns
    -------
    dict of str to str
        ``{"cpu": "available (avx2 build)", "cuda": "available: GPU 0 (...)"}`` or, for CUDA,
        ``"unavailable: <reason>"``, e.g. no device, a driver older than the runtime, a GPU
        architecture the module was not compiled for, or CuPy missing.

    Examples
    --------
    >>> import ensemblepp
    >>> ensemblepp.backend_status()["cpu"]  # doctest: +SKIP
    'available (avx2 build)'
    """
    from ensemblepp import _core  # noqa: PLC0415

    module, why = _probe_cuda(0)
    cuda = f"available: {_device_words(module, 0)}" if module is not None else f"unavailable: {why}"
    return {"cpu": f"available ({_core.ISA} build)", "cuda": cuda}


def cuda_module(index: int = 0) -> ModuleType:
    """The compiled ``_cuda`` module, or a clear error saying why it cannot be used.

    Parameters
    ----------
    index : int, default 0
        The CUDA device that must run its kernels.

    Raises
    ------
    RuntimeError
        When the CUDA backend is unavailable.
    """
    module, reason = _probe_cuda(index)
    if module is None:
        raise RuntimeError(f"device='cuda' is unavailable: {reason}" if index == 0
                           else f"device='cuda:{index}' is unavailable: {reason}")
    return module


def _parse_device(device: Any) -> tuple[str, int | None]:
    if not isinstance(device, str):
        raise TypeError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    m = _DEVICE.fullmatch(device.strip())
    if m is None or (m.group(1).lower() == "cpu" and m.group(2) is not None):
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N' (N a device number), got {device!r}")
    return m.group(1).lower(), None if m.group(2) is None else int(m.group(2))


def _current_cuda_device() -> int:
    import cupy  # noqa: PLC0415

    return int(cupy.cuda.runtime.getDevice())


def device_index(device: str) -> int | None:
    """The CUDA device number a ``device`` argument names: N for ``"cuda:N"``, CuPy's current
    device for ``"cuda"``, None for ``"cpu"``."""
    kind, index = _parse_device(device)
    if kind == "cpu":
        return None
    return _current_cuda_device() if index is None else index


def check_device(device: str) -> str:
    """Validate a ``device`` argument.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` (CuPy's current device) or ``"cuda:N"``. State arrays are allocated
        by CuPy on its current device, so ``"cuda:N"`` is accepted when N is that device (select
        it with ``with cupy.cuda.Device(N):`` around the agent's construction, as for any CuPy
        array); a different N is refused rather than silently using another device.

    Returns
    -------
    str
        The normalised device kind, ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        For an unknown name, a device that does not exist or is not CuPy's current one.
    TypeError
        For a non-string.
    RuntimeError
        When the CUDA backend cannot run on that device (the reason in words).
    """
    kind, index = _parse_device(device)
    if kind == "cpu":
        return kind
    module, why = _probe_cuda(0 if index is None else index)
    if module is None and "does not exist" in why:
        raise ValueError(f"device: {why}")
    cuda_module(0 if index is None else index)
    current = _current_cuda_device()
    if index is None and current != 0:
        cuda_module(current)  # "cuda" is CuPy's current device: that is the one that must run the kernels
    elif index is not None and index != current:
        raise ValueError(
            f"device: 'cuda:{index}' is not CuPy's current device (cuda:{current}); the agent's arrays "
            f"would be allocated on cuda:{current}. Construct and use it inside "
            f"`with cupy.cuda.Device({index}):`, or select the GPU with CUDA_VISIBLE_DEVICES")
    return kind


def get_num_threads() -> int:
    """Number of threads the CPU kernels may use for one large call.

    Returns
    -------
    int
        OpenMP's limit (``OMP_NUM_THREADS`` or the core count); 1 without OpenMP.
    """
    from ensemblepp import _core  # noqa: PLC0415

    return int(_core.max_threads())


def set_num_threads(n: int) -> None:
    """Limit the threads of the CPU kernels.

    Only calls with enough work (large batches, large action sets) use several threads; on
    shared or virtual machines, where waking idle threads is slow, ``set_num_threads(1)`` can
    lower the latency of single steps.

    Parameters
    ----------
    n : int
        Number of threads, at least 1.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    from ensemblepp import _core  # noqa: PLC0415

    _core.set_max_threads(n)


def narrow_quietly(arr: np.ndarray, dtype: Any) -> np.ndarray:
    """``arr`` cast to ``dtype`` when that is a narrower float type, else ``arr`` itself.

    A value beyond the narrower type's range becomes an infinity, which the kernels' bounds then
    refuse by the argument's name. NumPy's cast would warn about the overflow first, and under
    warnings-as-errors that warning replaced the named error.

    Parameters
    ----------
    arr : numpy.ndarray
        Host array of real numbers.
    dtype : dtype
        The type the caller converts to.

    Returns
    -------
    numpy.ndarray
        A new array of ``dtype``, or ``arr`` unchanged when no narrowing float cast is needed.
    """
    target = np.dtype(dtype)
    if arr.dtype.kind == "f" and target.kind == "f" and arr.dtype.itemsize > target.itemsize:
        with np.errstate(over="ignore"):
            return arr.astype(target)
    return arr
