"""Scalable approximate Thompson sampling with Ensemble++.

The linear policies run on a compiled C++/Eigen core (and a CUDA core where a
GPU exists); the neural agents are written in PyTorch and are imported only
when first used, so ``import ensemblepp`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> submodule that defines it. Loaded on first access (PEP 562)
# so that importing the package pulls in neither torch nor matplotlib.
_LAZY = {
    "LinearEnsemble": "ensemblepp.linear",
    "LinearTS": "ensemblepp.linear",
    "LinearEnsembleSampling": "ensemblepp.linear",
    "LinUCB": "ensemblepp.linear",
    "LinearGreedy": "ensemblepp.linear",
    "load": "ensemblepp.files",
    "ModelFileError": "ensemblepp.files",
    "draw": "ensemblepp.distributions",
    "DISTRIBUTIONS": "ensemblepp.distributions",
    "NeuralEnsemble": "ensemblepp.neural",
    "EnsemblePlus": "ensemblepp.neural",
    "EpiNet": "ensemblepp.neural",
    "NeuralGreedy": "ensemblepp.neural",
    "EnsemblePlusPlusNet": "ensemblepp.neural",
    "run_experiment": "ensemblepp.experiments",
    "load_results": "ensemblepp.experiments",
    "has_cuda": "ensemblepp._backend",
    "get_num_threads": "ensemblepp._backend",
    "set_num_threads": "ensemblepp._backend",
    "available_backends": "ensemblepp._backend",
    "backend_status": "ensemblepp._backend",
}
_SUBMODULES = {"neural", "envs", "experiments", "datasets", "linear", "distributions", "text", "files"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"ensemblepp.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'ensemblepp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
