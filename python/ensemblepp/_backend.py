"""Backend probe: which compiled backends import and whether a CUDA device exists.

The probe runs once per process; its answers are cached.
"""

from __future__ import annotations

import functools
from types import ModuleType

__all__ = ["has_cuda", "available_backends", "cuda_module", "check_device", "get_num_threads", "set_num_threads"]


@functools.lru_cache(maxsize=None)
def _probe_cuda() -> tuple[ModuleType | None, str]:
    try:
        from ensemblepp import _cuda  # noqa: PLC0415
    except ImportError as exc:  # built without nvcc, or a broken install
        return None, f"the CUDA module is not built ({exc})"
    try:
        count = _cuda.device_count()
    except RuntimeError as exc:
        return None, f"the CUDA runtime failed ({exc})"
    if count < 1:
        why = getattr(_cuda, "device_error", lambda: "")()
        return None, f"no CUDA device is usable ({why})" if why else "no CUDA device is visible"
    try:
        import cupy  # noqa: F401, PLC0415
    except ImportError:
        return None, "CuPy is not installed (pip install 'ensemblepp[cuda]')"
    return _cuda, ""


def has_cuda() -> bool:
    """Whether the CUDA backend can run here.

    Returns
    -------
    bool
        True when the ``_cuda`` module was built, a CUDA device is visible and CuPy imports.
    """
    return _probe_cuda()[0] is not None


def available_backends() -> list[str]:
    """Names of the backends that work on this machine.

    Returns
    -------
    list of str
        ``["cpu"]``, plus ``"cuda"`` when :func:`has_cuda` is true.
    """
    return ["cpu", "cuda"] if has_cuda() else ["cpu"]


def cuda_module() -> ModuleType:
    """The compiled ``_cuda`` module, or a clear error saying why it cannot be used.

    Raises
    ------
    RuntimeError
        When the CUDA backend is unavailable.
    """
    module, reason = _probe_cuda()
    if module is None:
        raise RuntimeError(f"device='cuda' is unavailable: {reason}")
    return module


def check_device(device: str) -> str:
    """Validate a ``device`` argument.

    Parameters
    ----------
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:0"`` is accepted as ``"cuda"``).

    Returns
    -------
    str
        The normalised device name.
    """
    if not isinstance(device, str):
        raise TypeError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    name = device.split(":")[0].lower()
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if name == "cuda":
        cuda_module()
    return name


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
