"""Index-conditioned networks f(x, zeta) for the neural agents.

Every model maps a batch of inputs ``x`` (B items) and index vectors ``zeta``
to outputs of shape ``(B, n_zeta, n_outputs)`` in one pass: ``zeta`` is either
``(n_zeta, M)`` (the same indices for every input) or ``(B, n_zeta, M)`` (own
indices per input). The index dimension M is :attr:`index_dim` (0 for the
greedy model, which ignores ``zeta``).

Parameter initialisation draws only from the :class:`torch.Generator` passed
in, so the same seed gives the same network on every device and the global
torch RNG is never touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._torch_distributions import draw

__all__ = [
    "MLP",
    "EnsemblePlusPlusNet",
    "EnsemblePlusNet",
    "EpiNetNet",
    "GreedyNet",
    "infer_feature_dim",
]


def _check_hidden(hidden: Sequence[int], name: str = "hidden") -> tuple[int, ...]:
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {hidden!r}")
    out = tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in out):
        raise ValueError(f"{name} must hold positive ints, got {hidden!r}")
    return out


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_scale(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return float(value)


def _linear_init_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int,
                  generator: torch.Generator) -> None:
    # Same law as torch.nn.Linear.reset_parameters (kaiming-uniform with a = sqrt(5),
    # i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))), but from our generator.
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
        if bias is not None:
            bias.uniform_(-bound, bound, generator=generator)


STYLES: tuple[str, ...] = ("ensemblepp", "official")


def check_style(style: Any) -> str:
    """Return ``style`` if it is one of :data:`STYLES`, else raise ValueError."""
    if not isinstance(style, str) or style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return style


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    # torch.nn.Linear's default law for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def _xavier_normal(shape: tuple[int, ...], fan_in: int, fan_out: int,
                   generator: torch.Generator) -> torch.Tensor:
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(shape, generator=generator) * std


def _unit_rows(n_rows: int, n_outputs: int, index_dim: int, generator: torch.Generator) -> torch.Tensor:
    """(n_rows, n_outputs * index_dim) with every (row, output) M-vector uniform on the unit sphere."""
    rows = draw("sphere", (n_rows, n_outputs), index_dim, generator=generator)
    return rows.reshape(n_rows, n_outputs * index_dim)


class MLP(nn.Module):
    """Fully connected ReLU network ``in -> hidden[0] -> ... -> hidden[-1]``.

    Every layer is followed by a ReLU, so the output is a feature vector of
    length :attr:`feature_dim` (``hidden[-1]``, or ``in_dim`` when ``hidden``
    is empty and the network is the identity).

    Parameters
    ----------
    in_dim : int
        Input dimension.
    hidden : sequence of int
        Widths of the hidden layers (default ``(64, 64)``).
    generator : torch.Generator, optional
        Source of the initial weights (torch's ``nn.Linear`` law); a fresh
        generator seeded with 0 when omitted.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (64, 64),
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        in_dim = _check_positive_int(in_dim, "in_dim")
        hidden = _check_hidden(hidden)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            lin = nn.Linear(width, h)
            _linear_init_(lin.weight, lin.bias, width, gen)
            layers += [lin, nn.ReLU()]
            width = h
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.feature_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of ``x`` (``(B, in_dim)`` -> ``(B, feature_dim)``)."""
        return self.layers(x)


def infer_feature_dim(net: nn.Module, dim: int | None, feature_dim: int | None,
                      argument: str = "feature_dim") -> int:
    """Output width of a user feature network.

    Looks, in order, at ``feature_dim`` if given, at an int attribute
    ``feature_dim`` or ``out_features`` of ``net``, at a sentence-transformers
    style ``get_sentence_embedding_dimension()``, and finally runs ``net`` on a
    zero batch of shape ``(2, dim)`` when ``dim`` is an int.

    Raises
    ------
    ValueError
        If the width cannot be found or the probe output is not ``(2, F)``.
    """
    if feature_dim is not None:
        return _check_positive_int(feature_dim, argument)
    for attr in ("feature_dim", "out_features"):
        value = getattr(net, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    getter = getattr(net, "get_sentence_embedding_dimension", None)
    if callable(getter):
        value = getter()
        if isinstance(value, int) and value > 0:
            return value
    if dim is None:
        raise ValueError(f"cannot infer the output width of {type(net).__name__}: pass {argument}")
    param = next(iter(net.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, dim, device=device))
    except Exception as exc:  # any failure of a user module means we cannot probe it
        raise ValueError(f"cannot infer the output width of {type(net).__name__} by running it on "
                         f"a (2, {dim}) batch ({exc}); pass {argument}") from exc
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        raise ValueError(f"{type(net).__name__} must map (B, {dim}) inputs to (B, F) features; "
                         f"pass {argument} if it takes other inputs")
    return int(out.shape[1])


def _feature_network(dim: int | None, hidden: Sequence[int], feature_net: nn.Module | None,
                     feature_dim: int | None, generator: torch.Generator,
                     argument: str = "feature_net") -> tuple[nn.Module, int]:
    if feature_net is None:
        if dim is None:
            raise ValueError(f"dim=None (non-vector inputs) needs a {argument}")
        net = MLP(dim, hidden, generator)
        if feature_dim is not None and feature_dim != net.feature_dim:
            raise ValueError(f"feature_dim={feature_dim} does not match hidden={tuple(hidden)}")
        return net, net.feature_dim
    if not isinstance(feature_net, nn.Module):
        raise TypeError(f"{argument} must be a torch.nn.Module, got {type(feature_net).__name__}")
    return feature_net, infer_feature_dim(feature_net, dim, feature_dim)


def _contract(g: torch.Tensor, zeta: torch.Tensor) -> torch.Tensor:
    """``out[b, z, o] = sum_m g[b, o, m] zeta[(b,) z, m]`` as one matrix product."""
    B, n_out, M = g.shape
    if zeta.dim() == 2:
        return (g.reshape(B * n_out, M) @ zeta.T).reshape(B, n_out, -1).transpose(1, 2)
    return torch.bmm(zeta, g.transpose(1, 2))


def _check_zeta(zeta: torch.Tensor, batch: int, index_dim: int) -> None:
    if zeta.dim() == 2:
        ok = zeta.shape[1] == index_dim
    elif zeta.dim() == 3:
        ok = zeta.shape[0] == batch and zeta.shape[2] == index_dim
    else:
        ok = False
    if not ok:
        raise ValueError(f"zeta must have shape (n_zeta, {index_dim}) or ({batch}, n_zeta, "
                         f"{index_dim}), got {tuple(zeta.shape)}")


def _batch_size(x: Any) -> int:
    return x.shape[0] if isinstance(x, torch.Tensor) else len(x)


class EnsemblePlusPlusNet(nn.Module):
    r"""The Ensemble++ network.

    .. math::

        f(x, \zeta) = w_b^\top h(x) + s_{post} \langle W^\top \mathrm{sg}(h(x)), \zeta\rangle
                      + s_{prior} \langle W_0^\top h_p(x), \zeta\rangle

    with ``h`` the feature network, ``w_b`` the base head (no bias), ``W``
    (F x M per output) the trainable ensemble directions (xavier-normal init),
    ``W0`` the frozen prior directions (each row, per output, a unit M-vector),
    ``sg`` stop-gradient and ``h_p = sg(h)`` unless a separate frozen
    ``prior_net`` is given.

    Parameters
    ----------
    dim : int or None
        Input dimension (None when the feature network takes non-vector inputs).
    ensemble_size : int
        Number M of ensemble directions.
    hidden : sequence of int
        Widths of the default MLP feature network (ignored with ``feature_net``).
    feature_net : torch.nn.Module, optional
        Any feature network; it is trained by the base head's loss unless its
        parameters have ``requires_grad=False``.
    prior_net : torch.nn.Module, optional
        A separate prior feature network, frozen here (``requires_grad_(False)``).
    feature_dim, prior_feature_dim : int, optional
        Output widths of ``feature_net`` / ``prior_net`` when they cannot be inferred.
    n_outputs : int
        Number of outputs (1 for regression, the number of classes for classification).
    prior_scale, posterior_scale : float
        ``s_prior`` and ``s_post``.
    generator : torch.Generator, optional
        Source of the initial weights.
    style : {"ensemblepp", "official"}
        Initial law of the base head ``w_b``: xavier-normal (``"ensemblepp"``)
        or torch's ``nn.Linear`` default ``U(+-1/sqrt(F))`` as in the authors'
        code (``"official"``). Everything else is the same in both.
    """

    def __init__(self, dim: int | None, ensemble_size: int = 8, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, prior_net: nn.Module | None = None,
                 feature_dim: int | None = None, prior_feature_dim: int | None = None,
                 n_outputs: int = 1, prior_scale: float = 1.0, posterior_scale: float = 1.0,
                 generator: torch.Generator | None = None, style: str = "ensemblepp") -> None:
        super().__init__()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        M = _check_positive_int(ensemble_size, "ensemble_size")
        n_out = _check_positive_int(n_outputs, "n_outputs")
        self.style = check_style(style)
        self.prior_scale = _check_scale(prior_scale, "prior_scale")
        self.posterior_scale = _check_scale(posterior_scale, "posterior_scale")
        self.feature_net, F = _feature_network(dim, hidden, feature_net, feature_dim, gen)
        if prior_net is not None:
            if not isinstance(prior_net, nn.Module):
                raise TypeError(f"prior_net must be a torch.nn.Module, got {type(prior_net).__name__}")
            Fp = infer_feature_dim(prior_net, dim, prior_feature_dim, "prior_feature_dim")
            prior_net.requires_grad_(False)
        else:
            Fp = F
        self.prior_net = prior_net
        self.index_dim = M
        self.n_outputs = n_out
        self.feature_dim = F
        if self.style == "official":
            # The authors' base head is nn.Linear(F, n_out, bias=False) at torch's default law,
            # and their ensemble layer maps z (M) to all F * n_out weights: xavier fans (M, F n_out).
            self.base_weight = nn.Parameter(_uniform((F, n_out), F, gen))
            self.ensemble_weight = nn.Parameter(_xavier_normal((F, n_out * M), F * n_out, M, gen))
        else:
            self.base_weight = nn.Parameter(_xavier_normal((F, n_out), F, n_out, gen))
            self.ensemble_weight = nn.Parameter(_xavier_normal((F, n_out * M), F, M, gen))
        self.register_buffer("prior_weight", _unit_rows(Fp, n_out, M, gen))

    def features(self, x: Any) -> torch.Tensor:
        """Features ``h(x)``, shape ``(B, F)``."""
        return self.feature_net(x)

    def prior_features(self, x: Any, h: torch.Tensor) -> torch.Tensor:
        """Prior features ``h_p(x)``: ``sg(h)`` or the frozen prior network's output."""
        if self.prior_net is None:
            return h.detach()
        with torch.no_grad():
            return self.prior_net(x)

    def directions(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Base output ``(B, n_outputs)`` and index directions ``g`` ``(B, n_outputs, M)``.

        ``f(x, zeta) = base + <g, zeta>``; ``g`` carries no gradient into the feature network.
        """
        h = self.features(x)
        base = h @ self.base_weight
        hs = h.detach()
        if self.prior_net is None:
            # h_p = sg(h): both heads act on the same features, so fold them into one product.
            g = hs @ (self.posterior_scale * self.ensemble_weight
                      + self.prior_scale * self.prior_weight)
        else:
            g = self.posterior_scale * (hs @ self.ensemble_weight) \
                + self.prior_scale * (self.prior_features(x, h) @ self.prior_weight)
        return base, g.reshape(h.shape[0], self.n_outputs, self.index_dim)

    def forward(self, x: Any, zeta: torch.Tensor) -> torch.Tensor:
        """``f(x, zeta)`` for all inputs and indices at once, shape ``(B, n_zeta, n_outputs)``."""
        _check_zeta(zeta, _batch_size(x), self.index_dim)
        base, g = self.directions(x)
        return base.unsqueeze(1) + _contract(g, zeta)


class EnsemblePlusNet(nn.Module):
    r"""Ensemble+ (Osband et al. 2018, randomized prior functions) as an index network.

    A shared trunk ``h`` (trained end to end, no stop-gradient) with M linear
    heads ``W`` (columns, biases ``b``), plus a separate frozen prior trunk
    ``h_p`` with M frozen heads ``W0``:

    .. math::

        f(x, \zeta) = s_{post} \langle W^\top h(x) + b, \zeta\rangle
                      + s_{prior} \langle W_0^\top h_p(x), \zeta\rangle

    so that ``f(x, e_k)`` is head ``k`` (times ``sqrt(M)`` for the
    reference-scale index ``sqrt(M) e_k``).

    ``style="ensemblepp"``: ``W0`` has unit rows as in
    :class:`EnsemblePlusPlusNet` (so ``prior_scale`` means the same in both),
    ``W`` is xavier-normal over the whole ``F x M`` matrix and there is no
    bias. ``style="official"``: as the authors' code, every head (trained and
    prior) is an ``nn.Linear(F, 1)`` with xavier-normal weight (standard
    deviation ``sqrt(2 / (F + 1))``) and a zero bias; the trained biases are
    learnt, the prior ones stay zero and are left out.

    Without ``prior_net`` the prior trunk is a frozen, independently
    initialised copy of the default MLP; with a user ``feature_net`` it is a
    frozen deep copy of it at construction (or the network itself when all its
    parameters are already frozen).

    Parameters are those of :class:`EnsemblePlusPlusNet`; ``posterior_scale``
    multiplies the trained heads.
    """

    def __init__(self, dim: int | None, ensemble_size: int = 8, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, prior_net: nn.Module | None = None,
                 feature_dim: int | None = None, prior_feature_dim: int | None = None,
                 n_outputs: int = 1, prior_scale: float = 1.0, posterior_scale: float = 1.0,
                 generator: torch.Generator | None = None, style: str = "ensemblepp") -> None:
        super().__init__()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        M = _check_positive_int(ensemble_size, "ensemble_size")
        n_out = _check_positive_int(n_outputs, "n_outputs")
        self.style = check_style(style)
        self.prior_scale = _check_scale(prior_scale, "prior_scale")
        self.posterior_scale = _check_scale(posterior_scale, "posterior_scale")
        self.feature_net, F = _feature_network(dim, hidden, feature_net, feature_dim, gen)
        if prior_net is None:
            if feature_net is None:
                prior_net = MLP(dim, hidden, gen)
            elif any(p.requires_grad for p in feature_net.parameters()):
                prior_net = copy.deepcopy(feature_net)
            else:
                prior_net = feature_net
            Fp = F
        elif not isinstance(prior_net, nn.Module):
            raise TypeError(f"prior_net must be a torch.nn.Module, got {type(prior_net).__name__}")
        else:
            Fp = infer_feature_dim(prior_net, dim, prior_feature_dim, "prior_feature_dim")
        if prior_net is not feature_net:
            prior_net.requires_grad_(False)
        self.prior_net = prior_net
        self.index_dim = M
        self.n_outputs = n_out
        self.feature_dim = F
        if self.style == "official":
            # One nn.Linear(F, 1) per head and output: xavier-normal with fan (F, 1).
            self.ensemble_weight = nn.Parameter(_xavier_normal((F, n_out * M), F, 1, gen))
            self.ensemble_bias = nn.Parameter(torch.zeros(n_out * M))
            self.register_buffer("prior_weight", _xavier_normal((Fp, n_out * M), Fp, 1, gen))
        else:
            self.ensemble_weight = nn.Parameter(_xavier_normal((F, n_out * M), F, M, gen))
            self.ensemble_bias = None
            self.register_buffer("prior_weight", _unit_rows(Fp, n_out, M, gen))

    def forward(self, x: Any, zeta: torch.Tensor) -> torch.Tensor:
        """``f(x, zeta)``, shape ``(B, n_zeta, n_outputs)``."""
        B = _batch_size(x)
        _check_zeta(zeta, B, self.index_dim)
        h = self.feature_net(x)
        if self.prior_net is self.feature_net:
            hp = h.detach()
        else:
            with torch.no_grad():
                hp = self.prior_net(x)
        post = h @ self.ensemble_weight
        if self.ensemble_bias is not None:
            post = post + self.ensemble_bias
        g = self.posterior_scale * post + self.prior_scale * (hp @ self.prior_weight)
        return _contract(g.reshape(B, self.n_outputs, self.index_dim), zeta)


class EpiNetNet(nn.Module):
    r"""Epistemic neural network with an epinet (Osband et al. 2023).

    .. math::

        f(x, z) = w_b^\top h(x) + s_{post}\, \sigma_L([x, \mathrm{sg}(h(x)), z])^\top z
                  + s_{prior} \sum_{m} z_m p_m(x)

    ``sigma_L`` is a trainable MLP ``[x, sg(h), z] -> 15 -> 15 -> M * n_outputs``
    (read as an ``n_outputs x M`` matrix contracted with ``z``), and ``p_m`` are
    M frozen MLPs ``x -> 5 -> 5 -> n_outputs``. When the inputs are not vectors
    (``dim=None``) both take ``sg(h(x))`` in place of ``x``.

    Parameters
    ----------
    dim : int or None
        Input dimension.
    ensemble_size : int
        Index dimension M.
    hidden, feature_net, feature_dim, n_outputs, prior_scale, posterior_scale, generator
        As for :class:`EnsemblePlusPlusNet`.
    epinet_hidden : sequence of int
        Hidden widths of ``sigma_L`` (default ``(15, 15)``).
    prior_hidden : sequence of int
        Hidden widths of every prior MLP (default ``(5, 5)``).
    style : {"ensemblepp", "official"}
        Initial laws. ``"ensemblepp"``: xavier-normal base head without bias,
        torch's ``nn.Linear`` default law for the epinet and the prior MLPs.
        ``"official"`` (the authors' code): base head ``nn.Linear(F, n_out)``
        with a bias at torch's default law; epinet and prior MLPs
        xavier-normal with zero biases.
    """

    def __init__(self, dim: int | None, ensemble_size: int = 8, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, feature_dim: int | None = None,
                 n_outputs: int = 1, prior_scale: float = 1.0, posterior_scale: float = 1.0,
                 epinet_hidden: Sequence[int] = (15, 15), prior_hidden: Sequence[int] = (5, 5),
                 generator: torch.Generator | None = None, style: str = "ensemblepp") -> None:
        super().__init__()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        M = _check_positive_int(ensemble_size, "ensemble_size")
        n_out = _check_positive_int(n_outputs, "n_outputs")
        epinet_hidden = _check_hidden(epinet_hidden, "epinet_hidden")
        prior_hidden = _check_hidden(prior_hidden, "prior_hidden")
        if not epinet_hidden:
            raise ValueError("epinet_hidden must hold at least one width")
        self.style = check_style(style)
        official = self.style == "official"
        self.prior_scale = _check_scale(prior_scale, "prior_scale")
        self.posterior_scale = _check_scale(posterior_scale, "posterior_scale")
        self.feature_net, F = _feature_network(dim, hidden, feature_net, feature_dim, gen)
        self.index_dim = M
        self.n_outputs = n_out
        self.feature_dim = F
        self.uses_x = dim is not None
        x_dim = dim if dim is not None else F
        if official:
            self.base_weight = nn.Parameter(_uniform((F, n_out), F, gen))
            self.base_bias = nn.Parameter(_uniform((n_out,), F, gen))
        else:
            self.base_weight = nn.Parameter(_xavier_normal((F, n_out), F, n_out, gen))
            self.base_bias = None
        # First epinet layer split by input block so that the x and h parts are
        # computed once per input and the z part once per index, then broadcast.
        e1 = epinet_hidden[0]
        fan_in = (x_dim if self.uses_x else 0) + F + M

        def first(rows: int) -> torch.Tensor:
            if official:
                return _xavier_normal((rows, e1), fan_in, e1, gen)
            return _uniform((rows, e1), fan_in, gen)

        self.epi_x = nn.Parameter(first(x_dim)) if self.uses_x else None
        self.epi_h = nn.Parameter(first(F))
        self.epi_z = nn.Parameter(first(M))
        self.epi_b = nn.Parameter(torch.zeros(e1) if official else _uniform((e1,), fan_in, gen))
        layers: list[nn.Module] = []
        width = e1
        for w in list(epinet_hidden[1:]) + [M * n_out]:
            lin = nn.Linear(width, w)
            if official:
                with torch.no_grad():
                    lin.weight.copy_(_xavier_normal((w, width), width, w, gen))
                    lin.bias.zero_()
            else:
                _linear_init_(lin.weight, lin.bias, width, gen)
            layers += [nn.ReLU(), lin]
            width = w
        self.epi_rest = nn.Sequential(*layers)
        # M frozen prior MLPs stored as stacked weights: one batched product per layer.
        widths = [x_dim] + list(prior_hidden) + [n_out]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            if official:
                w_i = _xavier_normal((M, a, b), a, b, gen)
                b_i = torch.zeros(M, 1, b)
            else:
                w_i = _uniform((M, a, b), a, gen)
                b_i = _uniform((M, 1, b), a, gen)
            self.register_buffer(f"prior_w{i}", w_i)
            self.register_buffer(f"prior_b{i}", b_i)
        self._n_prior_layers = len(widths) - 1

    def _prior(self, xp: torch.Tensor) -> torch.Tensor:
        """Outputs of the M prior MLPs, shape ``(B, M, n_outputs)``."""
        a = xp.unsqueeze(0).expand(self.index_dim, -1, -1)  # (M, B, in)
        for i in range(self._n_prior_layers):
            a = torch.baddbmm(getattr(self, f"prior_b{i}"), a, getattr(self, f"prior_w{i}"))
            if i + 1 < self._n_prior_layers:
                a = torch.relu(a)
        return a.transpose(0, 1)

    def forward(self, x: Any, zeta: torch.Tensor) -> torch.Tensor:
        """``f(x, zeta)``, shape ``(B, n_zeta, n_outputs)``."""
        B = _batch_size(x)
        _check_zeta(zeta, B, self.index_dim)
        h = self.feature_net(x)
        base = h @ self.base_weight
        if self.base_bias is not None:
            base = base + self.base_bias
        hs = h.detach()
        xin = x if self.uses_x else hs
        a = hs @ self.epi_h + self.epi_b
        if self.uses_x:
            a = a + xin @ self.epi_x
        zpart = zeta @ self.epi_z  # (n_zeta, e1) or (B, n_zeta, e1)
        pre = a.unsqueeze(1) + zpart
        epi = self.epi_rest(pre)  # (B, n_zeta, M * n_out)
        n_z = epi.shape[1]
        epi = epi.reshape(B, n_z, self.n_outputs, self.index_dim)
        zb = zeta.unsqueeze(0).expand(B, -1, -1) if zeta.dim() == 2 else zeta
        epi = (epi * zb.unsqueeze(2)).sum(-1)
        with torch.no_grad():
            prior = self._prior(xin)  # (B, M, n_out)
        prior_term = _contract(prior.transpose(1, 2), zeta)
        return base.unsqueeze(1) + self.posterior_scale * epi + self.prior_scale * prior_term


class GreedyNet(nn.Module):
    """Feature network plus a base head, ``f(x) = w_b^T h(x)``; it ignores ``zeta``.

    Parameters
    ----------
    dim, hidden, feature_net, feature_dim, n_outputs, generator
        As for :class:`EnsemblePlusPlusNet`.
    """

    index_dim = 0

    def __init__(self, dim: int | None, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, feature_dim: int | None = None,
                 n_outputs: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        n_out = _check_positive_int(n_outputs, "n_outputs")
        self.feature_net, F = _feature_network(dim, hidden, feature_net, feature_dim, gen)
        self.n_outputs = n_out
        self.feature_dim = F
        self.base_weight = nn.Parameter(_xavier_normal((F, n_out), F, n_out, gen))

    def forward(self, x: Any, zeta: torch.Tensor | None = None) -> torch.Tensor:
        """Base output as ``(B, 1, n_outputs)`` whatever ``zeta`` is."""
        return (self.feature_net(x) @ self.base_weight).unsqueeze(1)
