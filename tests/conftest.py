"""Shared fixtures: every linear test runs on each backend, CUDA skipped without a device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ensemblepp import has_cuda

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not has_cuda(), reason="no CUDA device or CuPy")),
]

#: ../shared/data beside the checkout (real data sets, see its README); ENSEMBLEPP_TEST_DATA
#: points clones that live elsewhere at it.
SHARED_DATA = Path(os.environ.get("ENSEMBLEPP_TEST_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Backend name: 'cpu', and 'cuda' where a GPU exists."""
    return request.param


def host(a):
    """A NumPy copy of an array of any backend."""
    from ensemblepp.linear import to_numpy

    return to_numpy(a)
