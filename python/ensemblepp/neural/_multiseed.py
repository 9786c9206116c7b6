"""Many independent neural agents (seeds) stepped as one batched computation.

:class:`MultiSeed` builds ``S`` ordinary agents, one per seed, stacks their
parameters and buffers along a new leading axis and evaluates the network of
all seeds with hand-batched products (the default MLP networks) or
:func:`torch.func.vmap` over :func:`torch.func.functional_call` (any other);
one backward pass (for EpiNet's squared loss with indices per observation,
gradients written out by hand) and one fused Adam step update every seed. Each seed keeps
its own generator and draws from it in exactly the order the single agent
does (acting index, then ``xi`` at update, then minibatch slots and training
indices per optimiser step), so seed ``s`` of a batch follows the trajectory
of ``cls(dim, seed=s, ...)`` alone, up to float rounding of the batched
products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.func import functional_call, vmap
from torch.optim.adam import adam as _functional_adam

from ._agents import _MODE_DEPENDENT, NeuralAgent
from ._models import MLP, EnsemblePlusNet, EnsemblePlusPlusNet, EpiNetNet, GreedyNet

__all__ = ["MultiSeed"]

def _blinear(a: torch.Tensor, wt: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``a @ wt + b`` per seed: ``a`` (S, rows, in) or shared (N, in), ``wt`` (S, in, out),
    ``b`` (S, out); returns a new (S, rows, out) tensor."""
    if a.dim() == 2:  # one input shared by every seed
        a = a.unsqueeze(0).expand(wt.shape[0], -1, -1)
    if b is None:
        return torch.bmm(a, wt)
    return torch.baddbmm(b.unsqueeze(1), a, wt)


def _linear_weights(model: torch.nn.Module) -> set[str]:
    """Names of the ``nn.Linear`` weights that :func:`_bmlp` multiplies (stored transposed)."""
    names = set()
    for prefix in _MLP_PREFIXES:
        seq = model.get_submodule(prefix) if _has_submodule(model, prefix) else None
        if isinstance(seq, torch.nn.Sequential):
            names |= {f"{prefix}.{i}.weight" for i, m in enumerate(seq) if isinstance(m, torch.nn.Linear)}
    return names


_MLP_PREFIXES = ("feature_net.layers", "prior_net.layers", "epi_rest")


def _has_submodule(model: torch.nn.Module, name: str) -> bool:
    try:
        return model.get_submodule(name) is not None
    except AttributeError:
        return False


def _bmlp(params: dict[str, torch.Tensor], prefix: str, layers: torch.nn.Sequential,
          x: torch.Tensor, owned: bool = False) -> torch.Tensor:
    """The default MLP (Linear/ReLU layers) of every seed at once, ``x`` (S, ..., in) or shared
    (N, in). Its weights are stored transposed, ``(S, in, out)``, so that their gradients come
    out in the stored layout. ``owned``: ``x`` is a temporary that a leading ReLU may overwrite.

    Every leading axis after the seed's is folded into one (a single batched product of S
    (rows x in) @ (in x out) matrices per layer), and the ReLUs work in place on the fresh
    output of the product before it (neither a product nor a sum keeps its output for the
    backward pass); a ReLU in place on a reshaped view would make autograd copy the whole
    tensor back.
    """
    S = next(params[f"{prefix}.{i}.weight"] for i, m in enumerate(layers)
             if isinstance(m, torch.nn.Linear)).shape[0]
    lead = x.shape[:1] if x.dim() == 2 else x.shape[1:-1]
    a = x
    for i, mod in enumerate(layers):
        if isinstance(mod, torch.nn.Linear):
            if a.dim() > 3:
                a = a.reshape(S, -1, a.shape[-1])
            a = _blinear(a, params[f"{prefix}.{i}.weight"], params.get(f"{prefix}.{i}.bias"))
            owned = True
        elif isinstance(mod, torch.nn.ReLU):
            a = torch.relu_(a) if owned else torch.relu(a)
        else:  # pragma: no cover - guarded by _native_ok
            raise TypeError(f"unsupported layer {type(mod).__name__}")
    return a.reshape((S, *lead, a.shape[-1]))


def _bcontract(g: torch.Tensor, zeta: torch.Tensor) -> torch.Tensor:
    """``out[s, b, z, o] = sum_m g[s, b, o, m] zeta[s, (b,) z, m]``."""
    S, B, n_out, M = g.shape
    if zeta.dim() == 3:
        out = torch.bmm(g.reshape(S, B * n_out, M), zeta.transpose(1, 2))  # (S, B*n_out, n_z)
        return out.reshape(S, B, n_out, -1).transpose(2, 3)
    return torch.matmul(zeta, g.transpose(-1, -2))


def _native_ok(model: torch.nn.Module) -> bool:
    """Whether the hand-batched forward below covers ``model`` (default MLP networks only)."""
    def plain(seq: Any) -> bool:
        return isinstance(seq, torch.nn.Sequential) and all(
            isinstance(m, (torch.nn.Linear, torch.nn.ReLU)) for m in seq)

    if not (isinstance(model.feature_net, MLP) and plain(model.feature_net.layers)):
        return False
    if isinstance(model, EnsemblePlusPlusNet):
        return model.prior_net is None
    if isinstance(model, EnsemblePlusNet):
        return isinstance(model.prior_net, MLP) and plain(model.prior_net.layers)
    if isinstance(model, EpiNetNet):
        return model.uses_x and plain(model.epi_rest) and _epinet_layers(model) is not None
    return isinstance(model, GreedyNet)


def _native_forward(model: torch.nn.Module, p: dict[str, torch.Tensor], x: torch.Tensor,
                    zeta: torch.Tensor, work: dict | None = None, shift: torch.Tensor | None = None,
                    prior: torch.Tensor | None = None) -> torch.Tensor:
    """``f(x, zeta)`` of every seed, ``(S, B, n_z, n_out)``; ``x`` is (S, B, d) or shared (B, d),
    ``zeta`` (S, n_z, M) or (S, B, n_z, M). The same arithmetic as the models' own forward.
    ``work``: workspace kept between calls; ``shift``: see :func:`_epinet_per_observation`
    (EpiNet with indices per observation only); ``prior``: :func:`_frozen_prior` at ``x``
    when already known (EpiNet and Ensemble+)."""
    S = zeta.shape[0]
    h = _bmlp(p, "feature_net.layers", model.feature_net.layers, x)
    if h.dim() == 2:
        h = h.expand(S, -1, -1)
    B = h.shape[1]
    n_out = model.n_outputs
    if isinstance(model, GreedyNet):
        return torch.bmm(h, p["base_weight"]).unsqueeze(2)
    M = model.index_dim
    if isinstance(model, EnsemblePlusPlusNet):
        base = torch.bmm(h, p["base_weight"])
        w = model.posterior_scale * p["ensemble_weight"] + model.prior_scale * p["prior_weight"]
        g = torch.bmm(h.detach(), w).reshape(S, B, n_out, M)
        return base.unsqueeze(2) + _bcontract(g, zeta)
    if isinstance(model, EnsemblePlusNet):
        if prior is None:
            prior = _frozen_prior(model, p, x if x.dim() == 3 else x.expand(S, -1, -1))
        post = torch.bmm(h, p["ensemble_weight"])
        if "ensemble_bias" in p:
            post = post + p["ensemble_bias"].unsqueeze(1)
        g = model.posterior_scale * post + model.prior_scale * prior
        return _bcontract(g.reshape(S, B, n_out, M), zeta)
    # EpiNetNet
    xs = x if x.dim() == 3 else x.expand(S, -1, -1)
    base = torch.bmm(h, p["base_weight"])
    if "base_bias" in p:
        base = base + p["base_bias"].unsqueeze(1)
    hs = h.detach()
    a = torch.bmm(hs, p["epi_h"]) + p["epi_b"].unsqueeze(1) + torch.bmm(xs, p["epi_x"])
    if prior is None:
        with torch.no_grad():
            prior = _epinet_prior(p, xs, model._n_prior_layers, M)  # (S, B, M * n_out)
    if zeta.dim() == 4:
        return base.unsqueeze(2) + _epinet_per_observation(model, p, a, prior, zeta, work, shift)
    pre = a.unsqueeze(2) + torch.bmm(zeta, p["epi_z"]).unsqueeze(1)
    zb = zeta.unsqueeze(1).unsqueeze(3)  # (S, 1, n_z, 1, M)
    epi = _bmlp(p, "epi_rest", model.epi_rest, pre, owned=True)  # (S, B, n_z, M * n_out)
    n_z = epi.shape[2]
    # sum_m (s_post epi_m + s_prior p_m) z_m: the two index contractions of the single
    # network as one, the prior broadcast over the n_z indices.
    comb = torch.add(model.prior_scale * prior.reshape(S, B, 1, M, n_out).transpose(-1, -2),
                     epi.reshape(S, B, n_z, n_out, M), alpha=model.posterior_scale)
    return base.unsqueeze(2) + (comb * zb).sum(-1)


def _prior_is_frozen(model: torch.nn.Module) -> bool:
    """Whether :func:`_frozen_prior` of ``model`` depends on frozen weights only (EpiNet's prior
    MLPs; Ensemble+'s prior trunk when it is a separate network without trainable weights)."""
    if isinstance(model, EpiNetNet):
        return True
    return isinstance(model, EnsemblePlusNet) and model.prior_net is not model.feature_net and \
        not any(t.requires_grad for t in model.prior_net.parameters())


def _frozen_prior(model: torch.nn.Module, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The prior term before its scale, ``(S, n, M * n_out)``, at ``x`` (S, n, d): EpiNet's
    prior MLP outputs ``[m, o]``; Ensemble+'s prior trunk times its prior heads."""
    if isinstance(model, EpiNetNet):
        return _epinet_prior(p, x, model._n_prior_layers, model.index_dim)
    return torch.bmm(_bmlp(p, "prior_net.layers", model.prior_net.layers, x), p["prior_weight"])


def _paired_linears(mods: Sequence[torch.nn.Module], relu_first: bool) -> list[int] | None:
    """Positions of the Linear layers when ``mods`` is ``[ReLU, Linear] * k`` (``relu_first``)
    or ``[Linear, ReLU] * k``, k >= 1, every Linear with a bias; else None."""
    mods = list(mods)
    if not mods or len(mods) % 2:
        return None
    first = 1 if relu_first else 0
    for j in range(0, len(mods), 2):
        linear, relu = mods[j + first], mods[j + 1 - first]
        if not (isinstance(relu, torch.nn.ReLU) and isinstance(linear, torch.nn.Linear) and linear.bias is not None):
            return None
    return list(range(first, len(mods), 2))


def _epinet_layers(model: EpiNetNet) -> list[int] | None:
    """Positions of the Linear layers of ``model.epi_rest`` when it is ``[ReLU, Linear] * k``
    with biases (how :class:`EpiNetNet` builds it), else None."""
    return _paired_linears(model.epi_rest, relu_first=True)


def _epi_rest_params(model: EpiNetNet, p: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """``W_1, b_1, ..., W_L, b_L`` of ``model.epi_rest`` from the stacked parameters ``p``."""
    return [p[f"epi_rest.{i}.{kind}"] for i in _epinet_layers(model) for kind in ("weight", "bias")]


def _workspace(work: dict, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A tensor of ``shape`` kept in ``work`` and reused by every step (same shape, dtype, device)."""
    t = work.get(name)
    if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
        t = work[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return t


def _index_forward(work: dict, s_post: float, zeta: torch.Tensor, coef: torch.Tensor, a: torch.Tensor,
                   wz: torch.Tensor, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""EpiNet's index term with ``n_z`` indices per observation, every seed at once, ``(S, n_out, N)``.

    For seed ``s``, observation ``b`` and index ``z`` (``N = B * n_z`` columns
    ``(b, z)``), with ``Z = zeta[s, b, z]``, ``a_b`` the part of the epinet's
    first layer that depends on the observation only and ``c_b`` (``coef``) a
    coefficient per observation and index coordinate (the prior term
    ``s_prior p(x_b)``, plus the target perturbation when the loss folds it in):

    .. math::

        h_0 = \mathrm{relu}(W_z^\top Z + a_b), \quad h_{k} = \mathrm{relu}(W_k^\top h_{k-1} + b_k),
        \quad E = s_{post} (W_L^\top h_{L-1} + b_L) + c_b,
        \quad \mathrm{out}_o = \sum_m E_{o, m} Z_m.

    ``layers`` holds ``W_1, b_1, ..., W_L, b_L`` (weights stored ``(S, in, out)``).
    Activations are feature-major, ``(S, width, N)``, so that ``a_b`` and
    ``c_b`` broadcast along the fastest axis (a broadcast along a middle axis
    copies several times slower). They live in workspace tensors made once and
    reused at every step (``work``), where :func:`_index_backward` finds them:
    at these sizes (``S * 15 * N`` floats, 1 MB at S = 8) a fresh tensor comes
    from ``mmap`` and is faulted in page by page (autograd's backward pass of
    the same arithmetic made several more such temporaries per step).
    """
    S, B, n_z, M = zeta.shape
    N = B * n_z
    ws, bs = layers[0::2], layers[1::2]
    rows = bs[-1].shape[1]  # n_out * M, [o, m]
    n_out = rows // M
    zc = _workspace(work, "zc", (S, M, N), zeta)
    zc.view(S, M, B, n_z).copy_(zeta.permute(0, 3, 1, 2))
    hs = [_workspace(work, f"h{k}", (S, w.shape[1], N), zeta) for k, w in enumerate(ws)]
    h = hs[0]
    h.view(S, -1, B, n_z).copy_(a.transpose(1, 2).unsqueeze(3))
    h.baddbmm_(wz.transpose(1, 2), zc).relu_()
    for k in range(1, len(ws)):
        h = torch.baddbmm(bs[k - 1].unsqueeze(2), ws[k - 1].transpose(1, 2), h, out=hs[k]).relu_()
    e = _workspace(work, "e", (S, rows, N), zeta)
    # The part of E that does not depend on z: s_post b_L + c_b, (S, [o, m], B).
    const = torch.add(coef.view(S, B, M, n_out).permute(0, 3, 2, 1).reshape(S, rows, B, 1),
                      bs[-1].view(S, rows, 1, 1), alpha=s_post)
    e.view(S, rows, B, n_z).copy_(const)
    e.baddbmm_(ws[-1].transpose(1, 2), h, alpha=s_post)
    return e.view(S, n_out, M, N).mul_(zc.unsqueeze(1)).sum(2)


def _index_backward(work: dict, s_post: float, grad_out: torch.Tensor, wz: torch.Tensor,
                    ws: Sequence[torch.Tensor], n_z: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Gradients of :func:`_index_forward` (run last on ``work``) given ``grad_out``
    ``(S, n_out, N)``: ``(d/da (S, B, e1), d/dW_z, [d/dW_1, d/db_1, ...])``.

    Overwrites the workspace: ``E`` with ``dL/dE`` and each activation with the
    gradient of its layer's input once the activation has been used.
    """
    zc, g = work["zc"], work["e"]
    S, M, N = zc.shape
    n_out = grad_out.shape[1]
    torch.mul((s_post * grad_out).unsqueeze(2), zc.unsqueeze(1), out=g.view(S, n_out, M, N))
    grads: list[torch.Tensor] = []
    for k in range(len(ws) - 1, -1, -1):
        h = work[f"h{k}"]
        grads[:0] = [torch.bmm(h, g.transpose(1, 2)), g.sum(2)]
        gh = _workspace(work, f"g{h.shape[1]}", tuple(h.shape), h)  # scratch, never g or h
        torch.bmm(ws[k], g, out=gh)
        torch.ops.aten.threshold_backward.grad_input(gh, h, 0.0, grad_input=h)
        g = h
    g_wz = torch.bmm(zc, g.transpose(1, 2))
    # The sum over z as a product with ones: torch's sum over a 16-wide inner axis is slower.
    g_a = torch.mv(g.view(-1, n_z), g.new_ones(n_z)).view(S, -1, N // n_z).transpose(1, 2)
    return g_a, g_wz, grads


class _EpiNetIndexTerm(torch.autograd.Function):
    """:func:`_index_forward` with :func:`_index_backward` as its backward pass."""

    @staticmethod
    def forward(ctx: Any, work: dict, s_post: float, zeta: torch.Tensor, coef: torch.Tensor,
                a: torch.Tensor, wz: torch.Tensor, *layers: torch.Tensor) -> torch.Tensor:
        ctx.work, ctx.s_post, ctx.n_z = work, s_post, zeta.shape[2]
        ctx.save_for_backward(wz, *layers[0::2])
        return _index_forward(work, s_post, zeta, coef, a, wz, layers)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        wz, *ws = ctx.saved_tensors
        g_a, g_wz, grads = _index_backward(ctx.work, ctx.s_post, grad_out, wz, ws, ctx.n_z)
        return (None, None, None, None, g_a, g_wz, *grads)


def _manual_ok(model: torch.nn.Module) -> bool:
    """Whether :func:`_epinet_mse_grads` covers ``model``: an EpiNet on the default feature
    MLP (``[Linear, ReLU] * k``, with biases) and one output."""
    if not (isinstance(model, EpiNetNet) and _native_ok(model) and model.n_outputs == 1):
        return False
    return _paired_linears(model.feature_net.layers, relu_first=False) is not None


def _epinet_grad_names(model: EpiNetNet) -> list[str]:
    """The parameters :func:`_epinet_mse_grads` gives gradients for."""
    names = ["base_weight", "epi_h", "epi_b", "epi_x", "epi_z"] + (["base_bias"] if model.base_bias is not None else [])
    names += [f"epi_rest.{i}.{k}" for i in _epinet_layers(model) for k in ("weight", "bias")]
    names += [f"feature_net.layers.{i}.{k}" for i, m in enumerate(model.feature_net.layers)
              if isinstance(m, torch.nn.Linear) for k in ("weight", "bias")]
    return names


def _epinet_mse_grads(model: EpiNetNet, p: dict[str, torch.Tensor], x: torch.Tensor, zeta: torch.Tensor,
                      r: torch.Tensor, xi: torch.Tensor, prior: torch.Tensor, c: float,
                      work: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""EpiNet's squared loss with indices per observation and its gradients, every seed at
    once, without autograd: ``(losses (S,), {parameter name: gradient})``.

    The loss of seed ``s`` is :meth:`NeuralAgent.loss_value`,
    ``mean_{b, z} (r_b + c <z, xi_b> - f(x_b, z))^2``, with ``f = w_b^T h(x) + b_b``
    plus the index term of :func:`_index_forward`, into which the perturbation
    enters as the coefficient ``-c xi_b``. ``x`` (S, B, d), ``zeta`` (S, B, n_z, M),
    ``r`` (S, B), ``xi`` (S, B, M), ``prior`` the prior outputs at ``x`` (S, B, M).
    Every gradient is the one autograd gives for the single agent's loss, in
    the batch's stored layouts; written by hand because the autograd graph
    (about 20 nodes, a gradient buffer per node) costs a measurable share of
    the step at these sizes (docs/results.md, many seeds).
    """
    S, B, n_z, M = zeta.shape
    N = B * n_z
    lins = [i for i, m in enumerate(model.feature_net.layers) if isinstance(m, torch.nn.Linear)]
    acts = [x]
    for i in lins:
        acts.append(torch.baddbmm(p[f"feature_net.layers.{i}.bias"].unsqueeze(1), acts[-1],
                                  p[f"feature_net.layers.{i}.weight"]).relu_())
    h = acts[-1]  # (S, B, F)
    base = torch.bmm(h, p["base_weight"])  # (S, B, 1)
    if "base_bias" in p:
        base += p["base_bias"].unsqueeze(1)
    a = torch.baddbmm(p["epi_b"].unsqueeze(1), h, p["epi_h"]).baddbmm_(x, p["epi_x"])
    coef = torch.add(model.prior_scale * prior, xi, alpha=-c)  # (S, B, M)
    rest = _epi_rest_params(model, p)
    y = _index_forward(work, model.posterior_scale, zeta, coef, a, p["epi_z"], rest)  # (S, 1, N), (b, z)
    # The residual r_b + c <z, xi_b> - f, in place of y.
    resid = y.view(S, B, n_z).neg_().add_(r.unsqueeze(2) - base)
    losses = resid.square().mean(dim=(1, 2))
    g_out = resid.mul_(-2.0 / N)  # dL/df
    g_base = g_out.sum(2, keepdim=True)  # (S, B, 1)
    g_a, g_wz, g_rest = _index_backward(work, model.posterior_scale, g_out.view(S, 1, N), p["epi_z"],
                                        rest[0::2], n_z)
    ht = h.transpose(1, 2)
    grads = {"base_weight": torch.bmm(ht, g_base), "epi_h": torch.bmm(ht, g_a), "epi_b": g_a.sum(1),
             "epi_x": torch.bmm(x.transpose(1, 2), g_a), "epi_z": g_wz}
    if "base_bias" in p:
        grads["base_bias"] = g_base.sum(1)
    for j, i in enumerate(_epinet_layers(model)):
        grads[f"epi_rest.{i}.weight"], grads[f"epi_rest.{i}.bias"] = g_rest[2 * j], g_rest[2 * j + 1]
    # Only the base head sends a gradient into the features (the epinet reads sg(h)).
    g = g_base * p["base_weight"].transpose(1, 2)  # (S, B, F)
    for k in range(len(lins) - 1, -1, -1):
        i = lins[k]
        g = torch.ops.aten.threshold_backward(g, acts[k + 1], 0.0)
        grads[f"feature_net.layers.{i}.weight"] = torch.bmm(acts[k].transpose(1, 2), g)
        grads[f"feature_net.layers.{i}.bias"] = g.sum(1)
        if k:
            g = torch.bmm(g, p[f"feature_net.layers.{i}.weight"].transpose(1, 2))
    return losses, grads


def _epinet_per_observation(model: EpiNetNet, p: dict[str, torch.Tensor], a: torch.Tensor, prior: torch.Tensor,
                            zeta: torch.Tensor, work: dict | None = None,
                            shift: torch.Tensor | None = None) -> torch.Tensor:
    """EpiNet's index terms for ``n_z`` indices per observation, ``zeta`` (S, B, n_z, M):
    ``sum_m (s_post epi_m(x_b, z) + s_prior p_m(x_b) + shift_{b, m}) z_m``, shape
    (S, B, n_z, n_out) (:class:`_EpiNetIndexTerm`; ``prior`` the prior outputs
    ``p(x_b)``, (S, B, [m, o]); ``work`` keeps its workspace between calls; ``shift``
    (S, B, M, n_out), optional, is added to the prior's coefficients)."""
    S, B, n_z, M = zeta.shape
    with torch.no_grad():
        coef = model.prior_scale * prior  # (S, B, [m, o])
        if shift is not None:
            coef += shift.reshape(coef.shape)
    layers = _epi_rest_params(model, p)
    out = _EpiNetIndexTerm.apply({} if work is None else work, model.posterior_scale, zeta, coef, a,
                                 p["epi_z"], *layers)  # (S, n_out, N), columns (b, z)
    return out.transpose(1, 2).reshape(S, B, n_z, model.n_outputs)


def _epinet_prior(p: dict[str, torch.Tensor], xs: torch.Tensor, n_layers: int, M: int) -> torch.Tensor:
    """The M frozen prior MLPs of every seed, ``(S, B, M * n_out)`` (``[m, o]`` flattened).

    Layer 0 is one ``(B, in) @ (in, M * width)`` product per seed, the later
    layers one product with the block-diagonal ``(M * in, M * out)`` matrix of
    the M networks' weights, so that the activations keep their ``(S, B, M *
    width)`` layout and are never transposed (the layouts are made once, by
    :func:`_prior_layouts`).
    """
    act = torch.baddbmm(p["_prior_b0"], xs, p["_prior_w0"])
    for i in range(1, n_layers):
        act = torch.baddbmm(p[f"_prior_b{i}"], torch.relu_(act), p[f"_prior_w{i}"])
    return act


def _prior_layouts(buffers: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The stacked prior weights ``prior_w{i}`` ``(S, M, in, out)`` and biases ``prior_b{i}``
    ``(S, M, 1, out)`` in the layouts :func:`_epinet_prior` multiplies."""
    out = {}
    for i in range(n_layers):
        w, b = buffers[f"prior_w{i}"], buffers[f"prior_b{i}"]
        S, M, n_in, n_out = w.shape
        if i == 0:
            lay = w.permute(0, 2, 1, 3).reshape(S, n_in, M * n_out)
        else:
            lay = w.new_zeros(S, M, n_in, M, n_out)
            for m in range(M):
                lay[:, m, :, m, :] = w[:, m]
            lay = lay.reshape(S, M * n_in, M * n_out)
        out[f"_prior_w{i}"] = lay.contiguous()
        out[f"_prior_b{i}"] = b.reshape(S, 1, M * n_out).contiguous()
    return out


def _perturbation_shift(agent: NeuralAgent, r: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """The target perturbation as index coefficients, ``(S, B, M, n_out)``:
    ``-c xi_b`` on the output the loss perturbs (the only one under ``"mse"``, the
    label's logit under ``"ce"``). With it, ``sum_m shift_{b, m, o} z_m`` is the
    perturbation term of :meth:`NeuralAgent.loss_value` for output ``o``."""
    shift = (-agent.perturbation_scale * xi).unsqueeze(3)
    if agent.loss == "mse":
        return shift
    onehot = torch.nn.functional.one_hot(r.long(), agent.n_outputs).to(xi.dtype)  # (S, B, C)
    return shift * onehot.unsqueeze(2)


def _native_loss(agent: NeuralAgent, out: torch.Tensor, r: torch.Tensor, xi: torch.Tensor,
                 z: torch.Tensor, perturbed: bool = False) -> torch.Tensor:
    """Per-seed loss ``(S,)``: :meth:`NeuralAgent.loss_value` of every seed.
    ``perturbed``: ``out`` already holds ``f - c <z, xi> e_label`` (see :func:`_perturbation_shift`)."""
    labels = r.long() if agent.loss == "ce" else None
    if perturbed:
        logits = out
        if agent.loss == "mse":
            return (r.unsqueeze(2) - out[..., 0]).square().mean(dim=(1, 2))
    else:
        if z.dim() == 3:
            pert = torch.bmm(xi, z.transpose(1, 2))  # (S, B, n_z)
        else:
            pert = torch.matmul(z, xi.unsqueeze(3)).squeeze(3)
        pert = agent.perturbation_scale * pert
        if agent.loss == "mse":
            return (r.unsqueeze(2) + pert - out[..., 0]).square().mean(dim=(1, 2))
        onehot = torch.nn.functional.one_hot(labels, agent.n_outputs).to(out.dtype)  # (S, B, C)
        logits = out - pert.unsqueeze(3) * onehot.unsqueeze(2)
    S, B, n_z, C = logits.shape
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, C), labels.repeat_interleave(n_z, dim=1).reshape(-1),
                                           reduction="none")
    return ce.reshape(S, B * n_z).mean(dim=1)



class MultiSeed:
    """``S`` independent copies of one neural agent class, one per seed, stepped together.

    Parameters
    ----------
    agent_cls : type
        :class:`~ensemblepp.neural.NeuralEnsemble`, :class:`~ensemblepp.neural.EnsemblePlus`,
        :class:`~ensemblepp.neural.EpiNet` or :class:`~ensemblepp.neural.NeuralGreedy`
        (any :class:`~ensemblepp.neural.NeuralAgent` subclass).
    dim : int
        Input dimension (vector inputs only).
    seeds : sequence of int
        One seed per agent, distinct or not; agent ``i`` is ``agent_cls(dim, seed=seeds[i], **options)``.
    **options
        Constructor options shared by all agents.

    Attributes
    ----------
    n_agents : int
        ``S``.
    seeds : list of int
        The seeds.
    n_seen : int
        Observations given to each agent.

    Raises
    ------
    ValueError
        For ``dim=None``, an empty seed list, or a network whose output
        depends on train/eval mode (dropout, batch norm), which the batched
        step does not reproduce.
    """

    def __init__(self, agent_cls: type[NeuralAgent], dim: int, seeds: Sequence[int], **options: Any) -> None:
        if not (isinstance(agent_cls, type) and issubclass(agent_cls, NeuralAgent)):
            raise TypeError(f"agent_cls must be a NeuralAgent subclass, got {agent_cls!r}")
        if dim is None:
            raise ValueError("MultiSeed needs vector inputs (an int dim), got dim=None")
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
            raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
        self.agents = [agent_cls(dim, seed=s, **options) for s in seeds]
        first = self.agents[0]
        if any(isinstance(m, _MODE_DEPENDENT) for m in first.model.modules()):
            raise ValueError("MultiSeed cannot batch networks with dropout or normalisation layers")
        self.agent_cls = agent_cls
        self.seeds = [a.seed for a in self.agents]
        self.n_agents = len(self.agents)
        self.dim = first.dim
        self.device = first.device
        self.index_dim = first.index_dim
        self.n_outputs = first.n_outputs
        self._template = first
        names = [n for n, _ in first.model.named_parameters()]
        models = [a.model for a in self.agents]
        # Hand-batched products for the default networks (much less overhead than
        # vmap over functional_call); any other module goes through vmap.
        self._native = _native_ok(first.model)
        # The native path keeps the MLP weights as (S, in, out): a product with a transposed
        # (S, out, in) weight returns a non-contiguous gradient that autograd copies every step.
        self._transposed = _linear_weights(first.model) if self._native else set()
        self.params: dict[str, torch.Tensor] = {}
        for name in names:
            ref = dict(first.model.named_parameters())[name]
            stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in models])
            if name in self._transposed:
                stacked = stacked.transpose(1, 2)
            self.params[name] = stacked.contiguous().clone().requires_grad_(ref.requires_grad)
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models]).clone()
                        for name, _ in first.model.named_buffers()}
        trainable = [p for p in self.params.values() if p.requires_grad]
        self._trainable = trainable
        try:
            self.optimizer = torch.optim.Adam(trainable, lr=first.lr, weight_decay=0.0, fused=True)
        except RuntimeError:  # parameters the fused kernel does not support
            self.optimizer = torch.optim.Adam(trainable, lr=first.lr, weight_decay=0.0)
        S, cap = self.n_agents, first.buffer_capacity
        self._x = torch.zeros(S, cap, dim, device=self.device)
        self._r = torch.zeros(S, cap, device=self.device)
        self._xi = torch.zeros(S, cap, first.index_dim, device=self.device)
        # The frozen prior networks of EpiNet and Ensemble+ give each stored observation one
        # output for good: computed once when it is stored, gathered with it for every minibatch.
        self._prior_rows = None
        if self._native and _prior_is_frozen(first.model):
            self._prior_rows = torch.zeros(S, cap, first.index_dim * first.n_outputs, device=self.device)
        self._pos = 0
        self._size = 0
        self.n_seen = 0
        self.n_sgd_steps = 0
        self._row_offsets = (torch.arange(S, device=self.device) * cap).unsqueeze(1)
        self._idx = torch.empty(S, first.batch_size, dtype=torch.int64, device=self.device)
        # Row views made once: each step fills seed s's row from seed s's generator in one call.
        self._idx_rows = list(self._idx.unbind(0))
        self._draw_buffers: dict[tuple[Any, ...], tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self._work: dict[str, torch.Tensor] = {}  # the training step's reused activations
        # Everything the hand-batched forward reads, in one dict (the tensors are updated in
        # place), with EpiNet's frozen prior weights also in the layout it multiplies.
        self._native_inputs = {**self.params, **self.buffers}
        # EpiNet's squared loss with indices per observation: gradients by hand, no autograd.
        self._manual = self._native and first.loss == "mse" and _manual_ok(first.model) and \
            set(_epinet_grad_names(first.model)) == {n for n, t in self.params.items() if t.requires_grad}
        if self._native and isinstance(first.model, EpiNetNet):
            self._native_inputs.update(_prior_layouts(self.buffers, first.model._n_prior_layers))
        model = first.model

        def forward(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                    x: torch.Tensor, zeta: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (params, buffers), (x, zeta))

        def loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor,
                 r: torch.Tensor, xi: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return first._loss_from_output(forward(params, buffers, x, z), r, xi, z)

        self._forward = forward
        self._loss = loss

    # --- draws ----------------------------------------------------------------------
    def _draw_all(self, kind: str, batch: int = 0) -> torch.Tensor:
        """Draw ``kind`` (see :meth:`NeuralAgent._draw_plan`) of every seed, stacked ``(S, ...)``.

        Each seed's primitive draw comes from its own generator, written into
        its row of one tensor, and the plan's ``finish`` runs once on all rows:
        one small torch call per seed instead of the whole draw per seed.
        """
        tmpl = self._template
        method = {"act": "_act_index", "xi": "_draw_xi", "train": "_train_index"}[kind]
        if getattr(type(tmpl), method) is not getattr(NeuralAgent, method):
            # A subclass that draws in its own method rather than through a plan.
            args = (batch,) if kind == "train" else ()
            return torch.stack([getattr(a, method)(*args) for a in self.agents])
        plan = tmpl._draw_plan(kind, batch)
        if plan is None:
            return torch.stack([a._make_draw(kind, batch) for a in self.agents])
        primitive, shape, high, finish = plan
        if primitive == "none":
            u = finish(None)
            return u.unsqueeze(0).expand(self.n_agents, *u.shape)
        out, rows = self._draw_buffer(primitive, shape)
        # Tensor.normal_ and Tensor.random_ are what torch.randn and torch.randint call on
        # their output, so each row holds exactly the single agent's draw.
        if primitive == "randn":
            for row, a in zip(rows, self.agents):
                row.normal_(generator=a.generator)
        else:
            for row, a in zip(rows, self.agents):
                row.random_(0, high, generator=a.generator)
        return finish(out)

    def _draw_buffer(self, primitive: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A preallocated ``(S, *shape)`` tensor for ``primitive`` draws and its per-seed rows.

        Reused by every draw of that shape: a draw is consumed (copied into the
        buffers, or used by one forward and backward pass) before the next one.
        """
        # torch.randn draws in the default dtype, so the single agent's draws do too.
        dtype = torch.get_default_dtype() if primitive == "randn" else torch.int64
        key = (primitive, tuple(shape), dtype)
        buf = self._draw_buffers.get(key)
        if buf is None:
            out = torch.empty((self.n_agents, *shape), dtype=dtype, device=self.device)
            buf = self._draw_buffers[key] = (out, list(out.unbind(0)))
        return buf

    # --- inputs ---------------------------------------------------------------------
    def _as_actions(self, actions: Any) -> torch.Tensor:
        x = self._template._as_vectors(actions, "actions")
        ok = (x.dim() == 2 and x.shape[1] == self.dim) or \
             (x.dim() == 3 and x.shape[0] == self.n_agents and x.shape[2] == self.dim)
        if not ok or x.shape[-2] == 0:
            raise ValueError(f"actions must have shape (K, {self.dim}) or ({self.n_agents}, K, {self.dim}) "
                             f"with K >= 1, got {tuple(x.shape)}")
        return x

    # --- acting ---------------------------------------------------------------------
    def act(self, actions: Any, mask: Any = None) -> np.ndarray:
        """Choose one action per agent.

        Parameters
        ----------
        actions : array_like or torch.Tensor, shape (K, dim) or (S, K, dim)
            Candidate actions, shared by all agents or one set per agent.
        mask : array_like of bool, shape (K,) or (S, K), optional
            Available actions (at least one per agent).

        Returns
        -------
        numpy.ndarray of int64, shape (S,)
            The chosen action of every agent.

        Raises
        ------
        ValueError, TypeError
            On a wrong shape, dtype or NaN/inf; nothing is drawn then.
        """
        x = self._as_actions(actions)
        K = x.shape[-2]
        m = None
        if mask is not None:
            mt = mask.detach() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
            if mt.dtype != torch.bool:
                raise TypeError(f"mask must be boolean, got dtype {mt.dtype}")
            if tuple(mt.shape) not in ((K,), (self.n_agents, K)):
                raise ValueError(f"mask must have shape ({K},) or ({self.n_agents}, {K}), got {tuple(mt.shape)}")
            mt = mt.to(self.device).expand(self.n_agents, K)
            if not bool(mt.any(dim=1).all()):
                raise ValueError("mask must allow at least one action for every agent")
            m = mt
        with torch.inference_mode():
            zeta = self._draw_all("act")  # (S, 1, M)
            if self._native:
                out = _native_forward(self._template.model, self._native_inputs, x, zeta)
            else:
                in_x = 0 if x.dim() == 3 else None
                out = vmap(self._forward, in_dims=(0, 0, in_x, 0))(self.params, self.buffers, x, zeta)
            if self._template.loss == "mse":
                scores = out[:, :, 0, 0]
            else:
                scores = torch.softmax(out[:, :, 0, :], dim=-1) @ self._template._class_values
            if m is not None:
                scores = scores.masked_fill(~m, -math.inf)
            return torch.argmax(scores, dim=1).cpu().numpy()

    # --- learning -------------------------------------------------------------------
    def update(self, x: Any, r: Any) -> None:
        """Store one observation per agent and train all agents on schedule.

        Parameters
        ----------
        x : array_like or torch.Tensor, shape (S, dim)
            Features of each agent's action.
        r : array_like or torch.Tensor, shape (S,)
            Rewards (class labels under ``loss="ce"``).

        Raises
        ------
        ValueError, TypeError
            On a wrong shape, dtype, NaN/inf or invalid label; nothing changes then.
        """
        tmpl = self._template
        xt = tmpl._as_vectors(x, "x")
        if tuple(xt.shape) != (self.n_agents, self.dim):
            raise ValueError(f"x must have shape ({self.n_agents}, {self.dim}), got {tuple(xt.shape)}")
        rt = tmpl._as_vectors(r, "r")
        if tuple(rt.shape) != (self.n_agents,):
            raise ValueError(f"r must have shape ({self.n_agents},), got {tuple(rt.shape)}")
        if tmpl.loss == "ce":
            bad = (rt != rt.round()) | (rt < 0) | (rt >= self.n_outputs)
            if bool(bad.any()):
                raise ValueError(f"with loss='ce', r must hold class labels in 0..{self.n_outputs - 1}")
        xi = self._draw_all("xi")
        if self._prior_rows is not None:
            with torch.no_grad():
                self._prior_rows[:, self._pos] = _frozen_prior(tmpl.model, self._native_inputs, xt.unsqueeze(1))[:, 0]
        self._x[:, self._pos] = xt
        self._r[:, self._pos] = rt
        self._xi[:, self._pos] = xi
        self._pos = (self._pos + 1) % tmpl.buffer_capacity
        self._size = min(self._size + 1, tmpl.buffer_capacity)
        self.n_seen += 1
        since_start = self.n_seen - tmpl.update_start
        if since_start >= 0 and since_start % tmpl.update_every == 0:
            for _ in range(tmpl.n_updates):
                self.sgd_step()

    def sgd_step(self) -> torch.Tensor:
        """One Adam step of every agent on its own minibatch; returns the ``(S,)`` losses."""
        tmpl = self._template
        n = self._size
        if n == 0:
            raise ValueError("the buffer is empty: call update() first")
        idx = self._idx
        for row, a in zip(self._idx_rows, self.agents):
            row.random_(0, n, generator=a.generator)
        z = self._draw_all("train", tmpl.batch_size)
        # Slot idx[s, j] of seed s is row s * capacity + idx[s, j] of the flattened buffers:
        # one index_select per buffer instead of advanced indexing with two index tensors.
        flat = (idx + self._row_offsets).reshape(-1)
        B = tmpl.batch_size
        x = self._x.view(-1, self.dim).index_select(0, flat).reshape(self.n_agents, B, self.dim)
        r = self._r.view(-1).index_select(0, flat).reshape(self.n_agents, B)
        if self.index_dim:
            xi = self._xi.view(-1, self.index_dim).index_select(0, flat).reshape(self.n_agents, B, self.index_dim)
        else:
            xi = self._xi[:, :B]  # empty (S, B, 0)
        decay = tmpl.weight_decay / n
        for group in self.optimizer.param_groups:
            group["weight_decay"] = decay
        if self._manual and z.dim() == 4:
            prior = self._prior_rows.view(-1, self._prior_rows.shape[2]).index_select(0, flat).reshape(
                self.n_agents, B, -1)
            with torch.no_grad():
                losses, grads = _epinet_mse_grads(tmpl.model, self._native_inputs, x, z, r, xi, prior,
                                                  tmpl.perturbation_scale, self._work)
            for name, g in grads.items():
                self.params[name].grad = g
            self._adam_step(self._trainable)
            self.n_sgd_steps += 1
            return losses
        if self._native:
            # EpiNet with indices per observation takes the target perturbation as one more
            # index coefficient of its index term, which contracts with z anyway.
            fold = z.dim() == 4 and isinstance(tmpl.model, EpiNetNet)
            shift = _perturbation_shift(tmpl, r, xi) if fold else None
            prior = None if self._prior_rows is None else self._prior_rows.view(-1, self._prior_rows.shape[2]) \
                .index_select(0, flat).reshape(self.n_agents, B, -1)
            out = _native_forward(tmpl.model, self._native_inputs, x, z, self._work, shift, prior)
            losses = _native_loss(tmpl, out, r, xi, z, perturbed=fold)
        else:
            losses = vmap(self._loss)(self.params, self.buffers, x, r, xi, z)
        trainable = self._trainable
        for p in trainable:
            p.grad = None
        # Seeds share no parameters, so the gradient of the sum is every seed's own gradient.
        losses.sum().backward()
        self._adam_step(trainable)
        self.n_sgd_steps += 1
        return losses.detach()

    def _adam_step(self, params: list[torch.Tensor]) -> None:
        """``self.optimizer.step()``, through torch's functional Adam once its state exists.

        The optimiser's own ``step`` wraps the fused kernel in hooks, profiler
        records and grad-mode switches that cost about as much as the update
        itself at these sizes; ``torch.optim.adam.adam`` is the function
        that ``step`` calls, given the same state tensors (updated in place,
        so :meth:`agent` and ``optimizer.state_dict()`` see them).
        """
        group = self.optimizer.param_groups[0]
        grads = [p.grad for p in params]
        state = [self.optimizer.state.get(p) for p in params]
        if any(g is None for g in grads) or not all(state) or group["amsgrad"] or not group["fused"]:
            self.optimizer.step()
            return
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            _functional_adam(params, grads, [st["exp_avg"] for st in state],
                             [st["exp_avg_sq"] for st in state], [], [st["step"] for st in state],
                             fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                             weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    # --- one seed as an ordinary agent ------------------------------------------------
    def _layout(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """One seed's slice of stacked parameter ``name`` in the module's own layout."""
        return value.T if name in self._transposed else value

    def param(self, name: str, i: int) -> torch.Tensor:
        """Seed ``i``'s parameter ``name`` (a name of ``model.named_parameters()``), detached,
        in the module's own layout (a view of the batch's storage)."""
        return self._layout(name, self.params[name][i].detach())

    def agent(self, i: int) -> NeuralAgent:
        """Agent ``i`` as an ordinary single agent, its state copied out of the batch.

        The returned agent continues seed ``i``'s trajectory on its own: it has
        that seed's weights, optimiser moments, buffer, counters and generator
        (``state_dict()`` of it is a checkpoint of seed ``i``). It is the batch's
        own copy of that agent and shares its generator, so step either the
        batch or the returned agent afterwards, not both.
        """
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_agents:
            raise ValueError(f"i must be an int in [0, {self.n_agents}), got {i!r}")
        a = self.agents[i]
        with torch.no_grad():
            for name, p in a.model.named_parameters():
                p.copy_(self.param(name, i))
            for name, b in a.model.named_buffers():
                b.copy_(self.buffers[name][i])
        names = [n for n, p in self.params.items() if p.requires_grad]
        for p_single, name in zip(a.optimizer.param_groups[0]["params"], names):
            st = self.optimizer.state.get(self.params[name])
            if st:
                # Contiguous copies: the fused Adam kernel reads its state as flat memory.
                a.optimizer.state[p_single] = {
                    k: v.clone() if k == "step" else self._layout(name, v[i]).clone(
                        memory_format=torch.contiguous_format) for k, v in st.items()}
        a.optimizer.param_groups[0]["weight_decay"] = self.optimizer.param_groups[0]["weight_decay"]
        cap = a.buffer_capacity
        a.buffer.x.copy_(self._x[i])
        a.buffer.r.copy_(self._r[i])
        a.buffer.xi.copy_(self._xi[i])
        a.buffer.pos, a.buffer.size = self._pos % cap, self._size
        a.n_seen = self.n_seen
        a.n_sgd_steps = self.n_sgd_steps
        return a

    def __repr__(self) -> str:
        return (f"MultiSeed({self.agent_cls.__name__}, dim={self.dim}, n_agents={self.n_agents}, "
                f"n_seen={self.n_seen})")
