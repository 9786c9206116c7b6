"""The compiled CPU kernels, in the best build this processor runs.

The extension is built twice (``_core_generic``, and ``_core_avx2`` on x86-64, or ``_core_native``
for the building machine with ``ENSEMBLEPP_NATIVE=ON``); all expose the same functions.
``ENSEMBLEPP_ISA=generic`` forces the portable build.
"""

from __future__ import annotations

import os
import platform


def _cpu_has_avx2_fma() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # numpy >= 2
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features  # numpy 1.x
        except ImportError:
            return False
    return bool(features.get("AVX2")) and bool(features.get("FMA3"))


ISA = "generic"
if os.environ.get("ENSEMBLEPP_ISA", "").lower() != "generic":
    # A build with ENSEMBLEPP_NATIVE=ON: compiled for the building machine's instruction set.
    try:
        from ensemblepp._core_native import *  # noqa: F403
        from ensemblepp._core_native import POLICIES, max_threads, set_max_threads  # noqa: F401

        ISA = "native"
    except ModuleNotFoundError as exc:
        if exc.name != "ensemblepp._core_native":
            raise
if ISA == "generic" and os.environ.get("ENSEMBLEPP_ISA", "").lower() != "generic" \
        and platform.machine().lower() in ("x86_64", "amd64"):
    if _cpu_has_avx2_fma():
        try:
            from ensemblepp._core_avx2 import *  # noqa: F403
            from ensemblepp._core_avx2 import POLICIES, max_threads, set_max_threads  # noqa: F401

            ISA = "avx2"
        except ModuleNotFoundError as exc:
            # Built without the AVX2 module; a broken build of it (any other ImportError) is raised.
            if exc.name != "ensemblepp._core_avx2":
                raise
if ISA == "generic":
    from ensemblepp._core_generic import *  # noqa: F403
    from ensemblepp._core_generic import POLICIES, max_threads, set_max_threads  # noqa: F401
