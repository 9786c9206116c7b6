"""Backend probe: which compiled backends import and whether a CUDA device exists.

The probe runs once per process; its answers are cached.
"""

from __future__ import annotations

import functools
from types import ModuleType

__all__ = ["has_cuda", "available_backends", "cuda_module", "check_device"]


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
