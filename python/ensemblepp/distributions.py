"""The five sampling distributions of Ensemble++, drawn from the compiled Philox generator.

Every distribution draws an M-vector. At the *perturbation* scale it has unit second moment,
E|v|^2 = 1; at the *reference* scale it is sqrt(M) times that, so E[v v^T] = I_M:

==============  ==================================================================
``gaussian``    N(0, I/M)
``sphere``      uniform on the unit sphere S^(M-1)
``cube``        uniform on {+-1/sqrt(M)}^M
``coordinate``  +-e_i with i uniform and a random sign
``sparse``      s distinct coordinates (default s = min(2, M)), each +-1/sqrt(s)
==============  ==================================================================
"""

from __future__ import annotations

import numpy as np

from ensemblepp import _core

__all__ = ["DISTRIBUTIONS", "SCALINGS", "draw", "distribution_code", "default_sparsity"]

DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "sphere", "cube", "coordinate", "sparse")
SCALINGS: tuple[str, ...] = ("perturbation", "reference")


def distribution_code(name: str, argname: str = "distribution") -> int:
    """Integer code of a distribution name (the ABI of the compiled kernels).

    Parameters
    ----------
    name : str
        One of :data:`DISTRIBUTIONS`.
    argname : str
        Name of the caller's argument, used in the error message.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if not isinstance(name, str) or name not in DISTRIBUTIONS:
        raise ValueError(f"{argname}: unknown distribution {name!r}; expected one of {DISTRIBUTIONS}")
    return DISTRIBUTIONS.index(name)


def default_sparsity(ensemble_size: int) -> int:
    """Default number of nonzero coordinates of ``sparse``: min(2, M)."""
    return min(2, ensemble_size)


def check_sparsity(sparsity: int | None, ensemble_size: int, argname: str = "sparsity") -> int:
    """Validate a sparsity argument (None means the default)."""
    if sparsity is None:
        return default_sparsity(ensemble_size)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, np.integer)):
        raise TypeError(f"{argname}: expected an int, got {type(sparsity).__name__}")
    if not 1 <= sparsity <= ensemble_size:
        raise ValueError(f"{argname}: must be in [1, {ensemble_size}], got {sparsity}")
    return int(sparsity)


def draw(
    name: str,
    size: int,
    dim: int,
    *,
    scaling: str = "perturbation",
    seed: int = 0,
    agent: int = 0,
    step: int = 0,
    sparsity: int | None = None,
) -> np.ndarray:
    """Draw vectors from one of the Ensemble++ distributions.

    Draw ``i`` is the one that an agent with index ``agent`` makes at counter value
    ``step + i``, so the result reproduces, number for number, the draws of the linear
    policies (which advance the counter by one per vector).

    Parameters
    ----------
    name : str
        One of :data:`DISTRIBUTIONS`.
    size : int
        Number of vectors.
    dim : int
        Length M of each vector.
    scaling : {"perturbation", "reference"}
        Unit second moment, or sqrt(M) times that.
    seed : int
        Seed of the Philox stream (0 <= seed < 2**64).
    agent : int
        Stream id of the agent (0 <= agent < 2**64), as ``stream_ids`` of the linear policies.
    step : int
        Counter value of the first draw; ``step + size`` must not pass 2**48.
    sparsity : int, optional
        Nonzero coordinates of ``sparse`` (default min(2, dim)).

    Returns
    -------
    numpy.ndarray
        Array of shape (size, dim), float64.

    Examples
    --------
    >>> import ensemblepp as epp
    >>> z = epp.draw("sphere", 4, 8, seed=1)
    >>> bool(abs((z ** 2).sum(axis=1) - 1).max() < 1e-12)
    True
    """
    code = distribution_code(name, "name")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling: expected one of {SCALINGS}, got {scaling!r}")
    for argname, value in (("size", size), ("dim", dim), ("seed", seed), ("agent", agent), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{argname}: expected an int, got {type(value).__name__}")
    if size < 0:
        raise ValueError(f"size: must be >= 0, got {size}")
    if not 1 <= dim <= _core.MAX_VECTOR_LENGTH:
        raise ValueError(f"dim: must be in [1, {_core.MAX_VECTOR_LENGTH}], got {dim}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    if not 0 <= agent < 2**64:
        raise ValueError(f"agent: must be in [0, 2**64), got {agent}")
    if not 0 <= step or step + size > _core.MAX_STEPS:
        raise ValueError(f"step: the draws must stay in [0, 2**48), got step={step}, size={size}")
    s = check_sparsity(sparsity, dim)
    scale = 1.0 if scaling == "perturbation" else float(np.sqrt(dim))
    out = _core.draw_matrix(code, int(dim), s, scale, int(seed), np.array([step], np.uint64), int(size),
                            np.array([agent], np.uint64))
    return out[0]
