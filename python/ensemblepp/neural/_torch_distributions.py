"""The five index distributions of Ensemble++, drawn with a torch generator.

Every distribution draws M-vectors in two scalings of one family (DESIGN.md,
"Notation and distributions"):

* *perturbation* scale, unit second moment ``E|v|^2 = 1``:

  - ``gaussian``: N(0, I / M);
  - ``sphere``: uniform on the unit sphere S^(M-1);
  - ``cube``: uniform on {+-1/sqrt(M)}^M;
  - ``coordinate``: +-e_i with i uniform and a random sign;
  - ``sparse``: s distinct coordinates (default s = min(2, M)), each +-1/sqrt(s).

* *reference* scale: sqrt(M) times the perturbation draw, so that
  ``E[zeta zeta^T] = I_M``.

The compiled core has its own Philox version of these for the linear agents;
this module is the torch-only version the neural agents use, so that every draw
comes from the agent's own :class:`torch.Generator` on the agent's device.
"""

from __future__ import annotations

import math

import torch

__all__ = ["DISTRIBUTIONS", "SCALES", "NORMAL_BASED", "check_distribution", "draw", "from_normal",
           "coordinate_support"]

DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "sphere", "cube", "coordinate", "sparse")
SCALES: tuple[str, ...] = ("perturbation", "reference")
# Distributions that are a fixed function of standard normal draws (see from_normal).
NORMAL_BASED: tuple[str, ...] = ("gaussian", "sphere")


def check_distribution(name: str, argument: str = "distribution") -> str:
    """Return ``name`` if it names one of :data:`DISTRIBUTIONS`, else raise.

    Parameters
    ----------
    name : str
        Candidate distribution name.
    argument : str
        Name of the caller's argument, used in the error message.

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    ValueError
        If ``name`` is not a known distribution.
    """
    if not isinstance(name, str) or name not in DISTRIBUTIONS:
        raise ValueError(f"{argument} must be one of {DISTRIBUTIONS}, got {name!r}")
    return name


def _random_signs(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def draw(name: str, size: tuple[int, ...] | int, dim: int, *, generator: torch.Generator,
         scaling: str = "perturbation", sparsity: int | None = None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw vectors of length ``dim`` from one of the five distributions.

    The signature follows :func:`ensemblepp.draw` (``name, size, dim`` and
    keyword ``scaling`` and ``sparsity``); the random source is a
    :class:`torch.Generator` instead of the Philox counter (``seed``,
    ``agent``, ``step``), and ``size`` may also be a tuple of leading dimensions.

    Parameters
    ----------
    name : {"gaussian", "sphere", "cube", "coordinate", "sparse"}
        The distribution.
    size : int or tuple of int
        Number of vectors, or their leading (batch) shape; the result has
        shape ``(size, dim)`` or ``(*size, dim)``.
    dim : int
        Length M of each vector (the ensemble size), at least 1.
    generator : torch.Generator
        Source of randomness; the draws live on ``generator.device``.
    scaling : {"perturbation", "reference"}
        ``"perturbation"`` gives unit second moment ``E|v|^2 = 1``;
        ``"reference"`` multiplies that by ``sqrt(dim)`` so ``E[v v^T] = I``.
    sparsity : int, optional
        Number s of non-zero coordinates for ``"sparse"`` (default ``min(2, dim)``).
    dtype : torch.dtype
        Floating-point dtype of the result.

    Returns
    -------
    torch.Tensor
        Draws of shape ``(*shape, dim)`` on the generator's device.

    Raises
    ------
    ValueError
        If ``name``, ``scale``, ``dim`` or ``sparsity`` is invalid.
    """
    check_distribution(name, "name")
    if scaling not in SCALES:
        raise ValueError(f"scaling must be one of {SCALES}, got {scaling!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    lead = (size,) if isinstance(size, int) else tuple(size)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in lead):
        raise ValueError(f"size must be a non-negative int or a tuple of them, got {size!r}")
    if name == "sparse":
        s = min(2, dim) if sparsity is None else sparsity
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= dim:
            raise ValueError(f"sparsity must be an int in [1, {dim}], got {sparsity!r}")
    device = generator.device
    full = lead + (dim,)
    if name in NORMAL_BASED:
        return from_normal(name, torch.randn(full, generator=generator, device=device, dtype=dtype), scaling)
    if name == "cube":
        v = _random_signs(full, generator, device, dtype) / math.sqrt(dim)
    elif name == "coordinate":
        idx = torch.randint(0, dim, lead + (1,), generator=generator, device=device)
        signs = _random_signs(lead + (1,), generator, device, dtype)
        v = torch.zeros(full, device=device, dtype=dtype).scatter_(-1, idx, signs)
    else:  # sparse
        # The s smallest of M i.i.d. uniforms index s distinct coordinates uniformly.
        keys = torch.rand(full, generator=generator, device=device)
        idx = keys.topk(s, dim=-1, largest=False).indices
        signs = _random_signs(lead + (s,), generator, device, dtype) / math.sqrt(s)
        v = torch.zeros(full, device=device, dtype=dtype).scatter_(-1, idx, signs)
    if scaling == "reference":
        v = v * math.sqrt(dim)
    return v


def from_normal(name: str, g: torch.Tensor, scaling: str = "perturbation") -> torch.Tensor:
    """The ``gaussian`` or ``sphere`` draw made from standard normal draws ``g``.

    :func:`draw` uses it on ``torch.randn`` output, so a caller that draws the
    normals of many generators into one tensor (one row each) and transforms
    them once gets what :func:`draw` gives each generator.

    Parameters
    ----------
    name : {"gaussian", "sphere"}
        The distribution (one of :data:`NORMAL_BASED`).
    g : torch.Tensor, shape (..., dim)
        Independent standard normal draws.
    scaling : {"perturbation", "reference"}
        As for :func:`draw`.

    Returns
    -------
    torch.Tensor
        Same shape as ``g``.
    """
    if name not in NORMAL_BASED:
        raise ValueError(f"name must be one of {NORMAL_BASED}, got {name!r}")
    dim = g.shape[-1]
    if name == "gaussian":
        v = g / math.sqrt(dim)
    else:
        # A zero Gaussian vector has probability zero; the clamp only guards the division.
        v = g / g.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    if scaling == "reference":
        v = v * math.sqrt(dim)
    return v


def coordinate_support(dim: int, *, scaling: str = "reference", device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All 2M points of the ``coordinate`` distribution, ``+-e_j`` (times sqrt(M) at reference scale).

    The symmetrized Ensemble++ loss averages over this whole support instead of
    sampling it, which is exact and costs no random draws.

    Parameters
    ----------
    dim : int
        Ensemble size M.
    scaling : {"perturbation", "reference"}
        Scaling of the points.
    device, dtype
        Where and how to allocate the result.

    Returns
    -------
    torch.Tensor
        Shape ``(2 * dim, dim)``: rows ``e_0, ..., e_{M-1}, -e_0, ..., -e_{M-1}`` (scaled).
    """
    if scaling not in SCALES:
        raise ValueError(f"scaling must be one of {SCALES}, got {scaling!r}")
    eye = torch.eye(dim, device=device, dtype=dtype)
    if scaling == "reference":
        eye = eye * math.sqrt(dim)
    return torch.cat([eye, -eye], dim=0)
