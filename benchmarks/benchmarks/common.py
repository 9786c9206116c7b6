"""Helpers shared by the asv suites: backend selection and device synchronisation."""

from __future__ import annotations

import numpy as np

import ensemblepp as epp


def require_backend(backend: str) -> None:
    """Skip (asv: NotImplementedError in setup) where a backend is missing."""
    if backend not in epp.available_backends():
        raise NotImplementedError(f"backend {backend!r} is not available here")


def to_device(a: np.ndarray, backend: str):
    """An input array on the backend's device, in the layout the kernels take without copying."""
    if backend == "cuda":
        import cupy

        return cupy.asarray(a)
    return np.ascontiguousarray(a)


def synchronize(backend: str) -> None:
    """Wait for queued GPU work so that a timing covers it."""
    if backend == "cuda":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
