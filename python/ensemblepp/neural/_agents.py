"""Neural bandit agents: Ensemble++ and the Ensemble+, EpiNet and greedy baselines.

All four share :class:`NeuralAgent`: input checking, the FIFO buffer, the
training schedule, the optimisation loop (Adam with L2 weight decay
``weight_decay / len(buffer)``), the perturbed loss and (de)serialisation.
Each subclass only says which network it trains, how it draws the index
``zeta`` it acts with, which indices the loss averages over, and how the
per-observation perturbation ``xi`` is distributed.

Loss. For a minibatch of buffer entries ``(x_i, r_i, xi_i)`` and index vectors
``z`` the loss is ``mean_i mean_z l(f(x_i, z), r_i + c <z, xi_i>)`` with
``c = perturbation_scale``:

* ``loss="mse"``: ``l = (r_i + c <z, xi_i> - f(x_i, z))^2`` (``n_outputs=1``);
* ``loss="ce"``: the reward is a class label ``y_i`` in ``{0, ..., n_outputs-1}``
  (a binary reward is the label with ``n_outputs=2``) and ``f(x, z)`` are the
  class logits. The perturbation is subtracted from the logit of the observed
  label, ``l = CE(f(x_i, z) - c <z, xi_i> e_{y_i}, y_i)``, which shifts the
  fitted logit margin of every observation by its own ``c <z, xi_i>``: the
  analogue of the perturbed regression target. The action score is the
  expected label under ``softmax(f(x, zeta))``, ``sum_y y p_y``, which for
  ``n_outputs=2`` is the probability of reward 1.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import nn

from ensemblepp._backend import narrow_quietly

from ._buffer import ReplayBuffer
from ._models import EnsemblePlusNet, EnsemblePlusPlusNet, EpiNetNet, GreedyNet, check_style
from ._torch_distributions import NORMAL_BASED, check_distribution, coordinate_support, draw, from_normal

__all__ = ["NeuralAgent", "NeuralEnsemble", "EnsemblePlus", "EpiNet", "NeuralGreedy"]

_LOSSES = ("mse", "ce")
_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm,
                   nn.modules.instancenorm._InstanceNorm, nn.MultiheadAttention,
                   nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_STATE_FORMAT = "ensemblepp.neural/1"
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the networks and the replay buffer are float32
# (primitive, shape, high, finish): see NeuralAgent._draw_plan.
DrawPlan = tuple[str, tuple[int, ...], int, Callable[[Any], torch.Tensor]]


def _int_arg(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _float_arg(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")
    return float(value)


def _check_tensor(value: Any, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite tensor of this shape and dtype."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"state {name} must be a tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"state {name} has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype != dtype:
        raise ValueError(f"state {name} has dtype {value.dtype}, expected {dtype}")
    if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
        raise ValueError(f"state {name} holds NaN or inf")


def _identity(u: torch.Tensor) -> torch.Tensor:
    return u


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must name a torch device, got {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but torch sees no CUDA device")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


class NeuralAgent:
    """Shared machinery of the neural agents (not used directly).

    Subclasses implement :meth:`_build_model` and :meth:`_draw_plan` (with
    :meth:`_draw_unplanned` for draws that have no plan) and set
    :attr:`_xi_distribution`.

    Attributes
    ----------
    model : torch.nn.Module
        The index network ``f(x, zeta)``.
    optimizer : torch.optim.Adam
        Optimiser of the model's trainable parameters.
    buffer : ReplayBuffer
        FIFO buffer of ``(x, r, xi)``.
    generator : torch.Generator
        The agent's random stream on its device (index draws, ``xi``, minibatches).
    n_seen : int
        Number of observations given to :meth:`update`.
    n_sgd_steps : int
        Number of optimiser steps taken.
    """

    _xi_distribution: str = "sphere"

    def __new__(cls, *args: Any, **kwargs: Any) -> NeuralAgent:
        self = super().__new__(cls)
        # The constructor's arguments as given, for model files (ensemblepp.files): the
        # agent is rebuilt from them before its state is loaded. A call that does not bind
        # fails in __init__ with Python's own TypeError.
        try:
            bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        except TypeError:
            self._init_arguments = None
        else:
            self._init_arguments = dict(list(bound.arguments.items())[1:])
        return self

    def __init__(self, dim: int | None, *, index_dim: int, n_outputs: int, loss: str,
                 perturbation_scale: float, buffer_capacity: int, update_start: int,
                 update_every: int, n_updates: int, batch_size: int, lr: float,
                 weight_decay: float, device: str | torch.device, seed: int | None,
                 model_kwargs: dict[str, Any]) -> None:
        if dim is not None:
            dim = _int_arg(dim, "dim", 1)
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
        n_outputs = _int_arg(n_outputs, "n_outputs", 1)
        if loss == "mse" and n_outputs != 1:
            raise ValueError(f"loss='mse' needs n_outputs=1 (a scalar reward), got {n_outputs}")
        if loss == "ce" and n_outputs < 2:
            raise ValueError(f"loss='ce' needs n_outputs >= 2 classes, got {n_outputs}")
        self.dim = dim
        self.n_outputs = n_outputs
        self.loss = loss
        self.perturbation_scale = _float_arg(perturbation_scale, "perturbation_scale")
        self.buffer_capacity = _int_arg(buffer_capacity, "buffer_capacity", 1)
        self.update_start = _int_arg(update_start, "update_start", 1)
        self.update_every = _int_arg(update_every, "update_every", 1)
        self.n_updates = _int_arg(n_updates, "n_updates", 0)
        self.batch_size = _int_arg(batch_size, "batch_size", 1)
        self.lr = _float_arg(lr, "lr", positive=True)
        self.weight_decay = _float_arg(weight_decay, "weight_decay")
        if seed is None:
            # No seed given: draw one from the OS entropy and keep it, so the run can be repeated.
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        self.seed = _int_arg(seed, "seed", 0)
        if self.seed >= 2**63:
            raise ValueError(f"seed must be below 2**63, got {seed!r}")
        self.device = _resolve_device(device)
        self.index_dim = index_dim
        # Weights come from a CPU generator so a seed gives the same network on
        # every device; the run-time stream lives on the device (no host round trips).
        init_gen = torch.Generator().manual_seed(self.seed)
        self.model: nn.Module = self._build_model(init_gen, **model_kwargs).to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed((self.seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**63)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        try:
            # The fused kernel updates every parameter in one call: far less Python
            # and dispatch overhead per step than the per-parameter loop.
            self.optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=0.0, fused=True)
        except RuntimeError:  # parameters the fused kernel does not support (dtype, device)
            self.optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=0.0)
        # Switching train/eval walks every submodule; do it only where it changes the output.
        self._mode_switch = any(isinstance(m, _MODE_DEPENDENT) for m in self.model.modules())
        self.model.train(not self._mode_switch)
        self.buffer = ReplayBuffer(self.buffer_capacity, dim, index_dim, self.device)
        self.n_seen = 0
        self.n_sgd_steps = 0
        self._class_values = torch.arange(n_outputs, device=self.device, dtype=torch.float32)

    # --- what the subclasses define -------------------------------------------------
    def _build_model(self, generator: torch.Generator, **kwargs: Any) -> nn.Module:
        raise NotImplementedError

    def _draw_plan(self, kind: str, batch: int = 0) -> DrawPlan | None:
        """How the draw ``kind`` is made from one primitive torch draw, or None.

        ``kind`` is ``"act"`` (the acting index ``zeta``, ``(1, index_dim)``),
        ``"xi"`` (one perturbation, ``(index_dim,)``) or ``"train"`` (the
        indices of one loss evaluation on ``batch`` inputs, ``(n_z, index_dim)``
        or ``(batch, n_z, index_dim)``). A plan ``(primitive, shape, high, finish)``
        says the draw is ``finish(u)`` with ``u = torch.randn(shape)``
        (``"randn"``), ``torch.randint(0, high, shape)`` (``"randint"``) from the
        agent's generator, or no draw at all (``"none"``, ``u = None``).
        ``finish`` acts on the trailing ``len(shape)`` dimensions only, so
        :class:`MultiSeed` can give it the primitives of all seeds stacked
        along a leading axis and finish every seed's draw in one call. None
        means the draw is made otherwise (:meth:`_draw_unplanned`).
        """
        if kind == "xi":
            if self.index_dim == 0:
                return ("none", (), 0, lambda u: torch.zeros(0, device=self.device))
            if self._xi_distribution in NORMAL_BASED:
                name = self._xi_distribution
                return ("randn", (self.index_dim,), 0, lambda g: from_normal(name, g))
            return None
        raise NotImplementedError(f"{type(self).__name__} must define _draw_plan for {kind!r} draws "
                                  "(or override _act_index / _train_index)")

    def _draw_unplanned(self, kind: str, batch: int = 0) -> torch.Tensor:
        """The draws :meth:`_draw_plan` has no plan for."""
        if kind == "xi":
            return draw(self._xi_distribution, (), self.index_dim, generator=self.generator)
        raise NotImplementedError

    def _make_draw(self, kind: str, batch: int = 0) -> torch.Tensor:
        plan = self._draw_plan(kind, batch)
        if plan is None:
            return self._draw_unplanned(kind, batch)
        primitive, shape, high, finish = plan
        if primitive == "randn":
            return finish(torch.randn(shape, generator=self.generator, device=self.device))
        if primitive == "randint":
            return finish(torch.randint(0, high, shape, generator=self.generator, device=self.device))
        return finish(None)

    def _act_index(self) -> torch.Tensor:
        """Index ``zeta`` for one action choice, shape ``(1, index_dim)``."""
        return self._make_draw("act")

    def _train_index(self, batch: int) -> torch.Tensor:
        """Indices of one loss evaluation, ``(n_z, index_dim)`` or ``(batch, n_z, index_dim)``."""
        return self._make_draw("train", batch)

    def _draw_xi(self) -> torch.Tensor:
        return self._make_draw("xi")

    # --- inputs ---------------------------------------------------------------------
    def _as_actions(self, actions: Any) -> tuple[Any, int]:
        if self.dim is None:
            if not isinstance(actions, (list, tuple)):
                raise TypeError("with dim=None, actions must be a list (or tuple) of the items the "
                                f"feature network takes, got {type(actions).__name__}")
            if len(actions) == 0:
                raise ValueError("actions must hold at least one action")
            return list(actions), len(actions)
        x = self._as_vectors(actions, "actions")
        if x.dim() != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise ValueError(f"actions must have shape (K, {self.dim}) with K >= 1, "
                             f"got {tuple(x.shape)}")
        return x, x.shape[0]

    def _as_vectors(self, value: Any, name: str) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if not (value.dtype.is_floating_point or value.dtype in (torch.int32, torch.int64)):
                raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
            x = value.detach().to(device=self.device, dtype=torch.float32)
        else:
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"{name} must be an array of real numbers ({exc})") from exc
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
            # NumPy brings any byte order, float width or integer type to native float32 (torch
            # refuses the other byte order and long double); np.require keeps a 0-d input 0-d.
            arr = np.require(narrow_quietly(arr, np.float32), dtype=np.float32, requirements="C")
            x = torch.from_numpy(arr).to(self.device)
        # Checked in float32, the networks' type: a float64 1e300 is finite but becomes inf there.
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must be finite (no NaN or inf) and within float32's range (|value| <= 3.4e38)")
        return x

    def _as_mask(self, mask: Any, n_actions: int) -> torch.Tensor | None:
        if mask is None:
            return None
        if isinstance(mask, torch.Tensor):
            m = mask.detach()
            if m.dtype != torch.bool:
                raise TypeError(f"mask must be boolean, got dtype {m.dtype}")
        else:
            arr = np.asarray(mask)
            if arr.dtype != np.bool_:
                raise TypeError(f"mask must be boolean, got dtype {arr.dtype}")
            m = torch.as_tensor(arr)
        if tuple(m.shape) != (n_actions,):
            raise ValueError(f"mask must have shape ({n_actions},), got {tuple(m.shape)}")
        if not bool(m.any()):
            raise ValueError("mask must allow at least one action")
        return m.to(self.device)

    def _as_reward(self, r: Any) -> float:
        if isinstance(r, (torch.Tensor, np.ndarray)):
            if tuple(r.shape) != ():
                raise ValueError(f"r must be a scalar, got shape {tuple(r.shape)}")
            r = r.item()
        if isinstance(r, bool) or not isinstance(r, Real):
            raise TypeError(f"r must be a real number, got {type(r).__name__}")
        value = float(r)
        if not (math.isfinite(value) and abs(value) <= _FLOAT32_MAX):  # stored in float32
            raise ValueError(f"r must be finite and within float32's range (|r| <= 3.4e38), got {value}")
        if self.loss == "ce" and (value != int(value) or not 0 <= value < self.n_outputs):
            raise ValueError(f"with loss='ce', r must be a class label in 0..{self.n_outputs - 1}, "
                             f"got {value}")
        return value

    # --- acting ---------------------------------------------------------------------
    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        """Action scores from outputs ``(K, 1, n_outputs)``."""
        if self.loss == "mse":
            return out[:, 0, 0]
        return torch.softmax(out[:, 0, :], dim=-1) @ self._class_values

    def act(self, actions: Any, mask: Any = None) -> int:
        """Choose an action.

        Draws one index ``zeta`` for this step, shared by all actions, and
        returns the argmax of the scores ``f(x_k, zeta)`` (see the module
        docstring for the score under ``loss="ce"``).

        Parameters
        ----------
        actions : array_like or torch.Tensor, shape (K, dim); or list of K items
            Features of the K candidate actions (NumPy or torch; moved to the
            agent's device). With ``dim=None``, a list of whatever the feature
            network takes.
        mask : array_like of bool, shape (K,), optional
            Which actions are available (True); at least one must be.

        Returns
        -------
        int
            Index of the chosen action.

        Raises
        ------
        ValueError, TypeError
            On inputs of the wrong shape, dtype or with NaN/inf; nothing is drawn then.
        """
        x, n_actions = self._as_actions(actions)
        m = self._as_mask(mask, n_actions)
        if self._mode_switch and self.model.training:
            self.model.eval()
        with torch.inference_mode():
            zeta = self._act_index()
            scores = self._scores(self.model(x, zeta))
            if m is not None:
                scores = scores.masked_fill(~m, -math.inf)
            return int(torch.argmax(scores))

    # --- learning -------------------------------------------------------------------
    def update(self, x: Any, r: Any) -> None:
        """Store one observation and train on schedule.

        ``xi`` is drawn now and stored with ``(x, r)``. Once
        ``n_seen >= update_start``, every ``update_every`` observations run
        ``n_updates`` optimiser steps on minibatches of ``batch_size`` drawn
        with replacement from the buffer.

        Parameters
        ----------
        x : array_like or torch.Tensor, shape (dim,); or one item with ``dim=None``
            Features of the action taken.
        r : float
            Its reward (a class label under ``loss="ce"``).

        Raises
        ------
        ValueError, TypeError
            On a wrong shape or dtype, NaN/inf, or an invalid label; the agent is unchanged.
        """
        if self.dim is not None:
            xt = self._as_vectors(x, "x")
            if tuple(xt.shape) != (self.dim,):
                raise ValueError(f"x must have shape ({self.dim},), got {tuple(xt.shape)}")
        else:
            xt = x
        value = self._as_reward(r)
        self.buffer.add(xt, value, self._draw_xi())
        self.n_seen += 1
        since_start = self.n_seen - self.update_start
        if since_start >= 0 and since_start % self.update_every == 0:
            for _ in range(self.n_updates):
                self.sgd_step()

    def loss_value(self, x: Any, r: torch.Tensor, xi: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The training loss on a batch, without the weight decay.

        Parameters
        ----------
        x : torch.Tensor (B, dim) or list
            Inputs.
        r : torch.Tensor (B,)
            Rewards (labels under ``loss="ce"``).
        xi : torch.Tensor (B, index_dim)
            Stored perturbations.
        z : torch.Tensor (n_z, index_dim) or (B, n_z, index_dim)
            Indices to average over.

        Returns
        -------
        torch.Tensor
            Scalar ``mean_i mean_z l(f(x_i, z), r_i + c <z, xi_i>)``.
        """
        return self._loss_from_output(self.model(x, z), r, xi, z)

    def _loss_from_output(self, out: torch.Tensor, r: torch.Tensor, xi: torch.Tensor,
                          z: torch.Tensor) -> torch.Tensor:
        """:meth:`loss_value` given the network output ``out = f(x, z)`` of shape ``(B, n_z, n_out)``."""
        if z.dim() == 2:
            pert = xi @ z.T
        else:
            pert = torch.bmm(z, xi.unsqueeze(2)).squeeze(2)
        pert = self.perturbation_scale * pert  # (B, n_z)
        if self.loss == "mse":
            return (r.unsqueeze(1) + pert - out[..., 0]).square().mean()
        labels = r.long()
        onehot = nn.functional.one_hot(labels, self.n_outputs).to(out.dtype)
        logits = out - pert.unsqueeze(2) * onehot.unsqueeze(1)
        B, n_z, C = logits.shape
        return nn.functional.cross_entropy(logits.reshape(B * n_z, C),
                                           labels.repeat_interleave(n_z))

    def sgd_step(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """One Adam step on a minibatch.

        Parameters
        ----------
        idx : torch.Tensor, optional
            Buffer slots to train on; by default ``batch_size`` slots drawn
            uniformly with replacement from the agent's generator.

        Returns
        -------
        torch.Tensor
            The minibatch loss before the step, left on the device (no host sync).
        """
        n = len(self.buffer)
        if n == 0:
            raise ValueError("the buffer is empty: call update() first")
        if idx is None:
            idx = torch.randint(0, n, (self.batch_size,), generator=self.generator, device=self.device)
        x, r, xi = self.buffer.gather(idx)
        z = self._train_index(r.shape[0])
        if self._mode_switch and not self.model.training:
            self.model.train()
        decay = self.weight_decay / n
        for group in self.optimizer.param_groups:
            group["weight_decay"] = decay
        loss = self.loss_value(x, r, xi, z)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.n_sgd_steps += 1
        return loss.detach()

    # --- state ----------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"dim": self.dim, "index_dim": self.index_dim, "n_outputs": self.n_outputs,
                "loss": self.loss, "buffer_capacity": self.buffer_capacity,
                "style": getattr(self, "style", None)}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same trajectory.

        Returns
        -------
        dict
            Model and optimiser state, buffer, counters and the generator state
            (``torch.save`` can write it).
        """
        return {"format": _STATE_FORMAT, "class": type(self).__name__, "config": self._config(),
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "buffer": self.buffer.state_dict(),
                "n_seen": self.n_seen, "n_sgd_steps": self.n_sgd_steps,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an agent built with the same arguments.

        Everything is checked before anything changes: format, class and
        configuration; every model tensor's name, shape, dtype and finiteness;
        the optimiser state against this agent's parameters (one group with
        finite hyperparameters and a positive learning rate; per parameter a
        finite ``step >= 0`` and finite ``exp_avg`` / non-negative
        ``exp_avg_sq`` of the parameter's shape and dtype); the buffer's
        shapes, dtypes, finiteness and labels; the counters; and the generator
        state.

        Raises
        ------
        ValueError
            Naming the first field that is wrong; the agent is unchanged then.
        """
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError("state is not an ensemblepp neural agent state_dict")
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state belongs to {state.get('class')}, not {type(self).__name__}")
        if state.get("config") != self._config():
            raise ValueError(f"state config {state.get('config')} does not match {self._config()}")
        missing = [k for k in ("model", "optimizer", "buffer", "n_seen", "n_sgd_steps", "generator")
                   if k not in state]
        if missing:
            raise ValueError(f"state is missing {', '.join(missing)}")
        own = self.model.state_dict()
        model_state = state["model"]
        if not isinstance(model_state, dict) or set(model_state) != set(own):
            raise ValueError("state model parameters do not match this agent's network")
        for k, v in own.items():
            _check_tensor(model_state[k], f"model[{k!r}]", tuple(v.shape), v.dtype)
        self._check_optimizer_state(state["optimizer"])
        buf = state["buffer"]
        if not isinstance(buf, dict):
            raise ValueError("state buffer must be a dict")
        for key in ("r", "xi") + (("x",) if self.dim is not None else ()):
            if not isinstance(buf.get(key), torch.Tensor):
                raise ValueError(f"state buffer[{key!r}] must be a tensor")
            _check_tensor(buf[key], f"buffer[{key!r}]", tuple(buf[key].shape), torch.float32)
        for key in ("pos", "size"):
            if isinstance(buf.get(key), bool) or not isinstance(buf.get(key), Integral):
                raise ValueError(f"state buffer[{key!r}] must be an int, got {buf.get(key)!r}")
        self.buffer.check_state_dict(buf)
        if self.loss == "ce":
            labels = buf["r"]  # unfilled slots hold 0, a valid label
            if bool(((labels != labels.round()) | (labels < 0) | (labels >= self.n_outputs)).any()):
                raise ValueError("state buffer['r'] holds values that are not class labels")
        for key in ("n_seen", "n_sgd_steps"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value < 2**63:
                raise ValueError(f"state {key} must be an int in [0, 2**63), got {value!r}")
        if state["n_seen"] < int(buf["size"]):
            raise ValueError(f"state n_seen={state['n_seen']} is below the buffer size {int(buf['size'])}")
        gen_state = state["generator"]
        own_gen = self.generator.get_state()
        if not isinstance(gen_state, torch.Tensor) or gen_state.shape != own_gen.shape \
                or gen_state.dtype != own_gen.dtype:
            raise ValueError("state generator does not match this agent's device type")
        backup = self.state_dict()
        try:
            self._load(state)
        except Exception as exc:
            # Leave the agent exactly as it was, whatever part of the state was bad.
            self._load(backup)
            raise ValueError(f"cannot load state: {exc}") from exc

    def _check_optimizer_state(self, opt: Any) -> None:
        """Raise ValueError unless ``opt`` is an Adam state for exactly this agent's parameters."""
        own = self.optimizer.state_dict()
        if not isinstance(opt, dict) or set(opt) != {"state", "param_groups"}:
            raise ValueError("state optimizer must hold exactly 'state' and 'param_groups'")
        groups = opt["param_groups"]
        if not isinstance(groups, list) or len(groups) != len(own["param_groups"]):
            raise ValueError("state optimizer param_groups do not match this agent's optimiser")
        params = [p for p in self.model.parameters() if p.requires_grad]
        by_id: dict[Any, torch.Tensor] = {}
        for i, (group, mine) in enumerate(zip(groups, own["param_groups"])):
            if not isinstance(group, dict) or set(group) != set(mine) or group["params"] != mine["params"]:
                raise ValueError(f"state optimizer param_groups[{i}] does not match this agent's parameters")
            for key in ("lr", "eps", "weight_decay"):
                v = group[key]
                if isinstance(v, torch.Tensor):
                    v = v.item() if v.numel() == 1 else float("nan")
                if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v < 0 \
                        or (key == "lr" and v == 0):
                    raise ValueError(f"state optimizer param_groups[{i}]['{key}'] must be finite and "
                                     f"{'positive' if key == 'lr' else 'non-negative'}, got {v!r}")
            betas = group["betas"]
            if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                    and all(isinstance(b, Real) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
                raise ValueError(f"state optimizer param_groups[{i}]['betas'] must be two numbers in [0, 1)")
            by_id.update(zip(group["params"], params))
        entries = opt["state"]
        if not isinstance(entries, dict) or not set(entries) <= set(by_id):
            raise ValueError("state optimizer state names parameters this agent does not have")
        for pid, entry in entries.items():
            p = by_id[pid]
            where = f"optimizer state[{pid}]"
            if not isinstance(entry, dict) or not {"step", "exp_avg", "exp_avg_sq"} <= set(entry) \
                    or not set(entry) <= {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}:
                raise ValueError(f"state {where} must hold step, exp_avg and exp_avg_sq")
            step = entry["step"]
            step_value = step.item() if isinstance(step, torch.Tensor) and step.numel() == 1 else step
            if isinstance(step_value, bool) or not isinstance(step_value, Real) \
                    or not math.isfinite(step_value) or step_value < 0:
                raise ValueError(f"state {where}['step'] must be a finite number >= 0, got {step!r}")
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if key in entry:
                    _check_tensor(entry[key], f"{where}[{key!r}]", tuple(p.shape), p.dtype)
                    if key != "exp_avg" and bool((entry[key] < 0).any()):
                        raise ValueError(f"state {where}[{key!r}] must be non-negative")

    def save(self, path: str | os.PathLike) -> None:
        """Save the agent to a model file, atomically (see :mod:`ensemblepp.files`).

        The file holds the constructor's arguments (with the drawn seed), the model and Adam
        state, the buffer, the counters and the generator as arrays plus JSON, no pickle;
        :func:`ensemblepp.load` rebuilds the agent and restores the state through
        :meth:`load_state_dict`, so it continues the same trajectory.

        Raises
        ------
        TypeError
            For an agent built with a custom ``feature_net`` or ``prior_net`` module, which a
            file cannot rebuild (save :meth:`state_dict` yourself then).
        """
        from ensemblepp import files  # noqa: PLC0415

        files.save(self, path)

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.n_seen = int(state["n_seen"])
        self.n_sgd_steps = int(state["n_sgd_steps"])
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self.dim}, index_dim={self.index_dim}, "
                f"loss={self.loss!r}, device={str(self.device)!r}, n_seen={self.n_seen})")


_COMMON_DOC = """
    n_outputs : int
        1 for regression (``loss="mse"``), the number of classes for ``loss="ce"``.
    loss : {"mse", "ce"}
        Squared loss or cross-entropy (see :mod:`ensemblepp.neural`).
    perturbation_scale : float
        ``c`` in the perturbed target ``r + c <z, xi>`` (default 0.01).
    buffer_capacity : int
        FIFO buffer size (default 10,000).
    update_start : int
        First observation count at which training runs (default 128).
    update_every : int
        Train every this many observations (default 1).
    n_updates : int
        Optimiser steps per training round (default 1).
    batch_size : int
        Minibatch size, drawn with replacement (default 128).
    lr : float
        Adam learning rate (default 1e-3 for Ensemble++, Ensemble+ and EpiNet,
        chosen by the sweep of docs/results.md; 1e-4, the paper's, for greedy).
    weight_decay : float
        ``wd``; Adam's L2 coefficient is ``wd / len(buffer)`` (default 0.01).
    device : str or torch.device
        ``"cpu"`` or ``"cuda[:i]"``; parameters, buffer and random stream live there.
    seed : int, optional
        Seeds the initial weights (CPU generator, same on every device) and the
        agent's device generator; the same seed gives the same actions on CPU.
        None (the default) draws a seed from the operating system's entropy;
        it is kept in :attr:`seed` so the run can be repeated.
"""


class NeuralEnsemble(NeuralAgent):
    __doc__ = """Neural Ensemble++ agent (Li et al. 2024).

    Network :class:`~ensemblepp.neural.EnsemblePlusPlusNet`. Acts with one
    ``zeta`` per step drawn at reference scale from ``reference``, shared by
    all actions. Trains on the loss symmetrized over ``+-z`` with ``z`` from
    ``update``: for ``"coordinate"`` all 2M vectors ``+-sqrt(M) e_j``; for the
    other distributions M reference-scale draws per observation and their
    negatives. ``xi`` is uniform on the unit sphere.

    Parameters
    ----------
    dim : int or None
        Input dimension; None when ``feature_net`` takes non-vector inputs
        (actions are then lists of items).
    ensemble_size : int
        M (default 8).
    hidden : sequence of int
        Hidden widths of the default MLP feature network (default ``(64, 64)``).
    feature_net : torch.nn.Module, optional
        Feature network to use instead of the MLP.
    prior_net : torch.nn.Module, optional
        Separate frozen prior feature network (default: ``sg(h)``).
    prior_scale, posterior_scale : float
        ``s_prior``, ``s_post`` (defaults 0.1 / 1, chosen by the sweep of
        docs/results.md; the paper: quadratic 5 / 1, neural regression 0.2 / 0.1).
    reference : str, optional
        Distribution of the acting index (default ``"gaussian"``, or
        ``"sphere"`` with ``style="official"``).
    update : str
        Distribution of the training indices (default ``"coordinate"``).
    style : {"official", "ensemblepp"}
        ``"official"`` (default) reproduces the authors' code: base head at
        torch's ``nn.Linear`` law and a sphere acting index; ``"ensemblepp"``
        the earlier xavier base head and gaussian acting index (docs/design.md).

    """ + _COMMON_DOC + """
    feature_dim, prior_feature_dim : int, optional
        Output widths of ``feature_net`` / ``prior_net`` when they cannot be inferred.
    """

    _xi_distribution = "sphere"

    def __init__(self, dim: int | None, ensemble_size: int = 8, *, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, prior_net: nn.Module | None = None,
                 prior_scale: float = 0.1, posterior_scale: float = 1.0, n_outputs: int = 1,
                 loss: str = "mse", reference: str | None = None, update: str = "coordinate",
                 perturbation_scale: float = 0.01, buffer_capacity: int = 10000,
                 update_start: int = 128, update_every: int = 1, n_updates: int = 1,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.01,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 feature_dim: int | None = None, prior_feature_dim: int | None = None,
                 style: str = "official") -> None:
        self.style = check_style(style)
        if reference is None:
            reference = "sphere" if self.style == "official" else "gaussian"
        self.reference = check_distribution(reference, "reference")
        self.update_distribution = check_distribution(update, "update")
        M = _int_arg(ensemble_size, "ensemble_size", 1)
        super().__init__(dim, index_dim=M, n_outputs=n_outputs, loss=loss,
                         perturbation_scale=perturbation_scale, buffer_capacity=buffer_capacity,
                         update_start=update_start, update_every=update_every, n_updates=n_updates,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
                         seed=seed, model_kwargs=dict(
                             ensemble_size=M, hidden=hidden, feature_net=feature_net,
                             prior_net=prior_net, feature_dim=feature_dim,
                             prior_feature_dim=prior_feature_dim, prior_scale=prior_scale,
                             posterior_scale=posterior_scale, style=self.style))
        self._support = coordinate_support(M, device=self.device)

    def _build_model(self, generator: torch.Generator, **kwargs: Any) -> nn.Module:
        return EnsemblePlusPlusNet(self.dim, n_outputs=self.n_outputs, generator=generator, **kwargs)

    def _draw_plan(self, kind: str, batch: int = 0) -> DrawPlan | None:
        M = self.index_dim
        if kind == "act":
            ref = self.reference
            if ref in NORMAL_BASED:
                return ("randn", (1, M), 0, lambda g: from_normal(ref, g, "reference"))
            return None
        if kind == "train":
            dist = self.update_distribution
            if dist == "coordinate":
                return ("none", (), 0, lambda u: self._support)
            if dist in NORMAL_BASED:
                def finish(g: torch.Tensor) -> torch.Tensor:
                    z = from_normal(dist, g, "reference")
                    return torch.cat([z, -z], dim=-2)
                return ("randn", (batch, M, M), 0, finish)
            return None
        return super()._draw_plan(kind, batch)

    def _draw_unplanned(self, kind: str, batch: int = 0) -> torch.Tensor:
        M = self.index_dim
        if kind == "act":
            return draw(self.reference, 1, M, generator=self.generator, scaling="reference")
        if kind == "train":
            z = draw(self.update_distribution, (batch, M), M, generator=self.generator, scaling="reference")
            return torch.cat([z, -z], dim=1)
        return super()._draw_unplanned(kind, batch)


class EnsemblePlus(NeuralAgent):
    __doc__ = """Ensemble+ agent (Osband et al. 2018): M heads with randomized prior functions.

    Network :class:`~ensemblepp.neural.EnsemblePlusNet`. Each step one head
    ``k``, uniform, acts; every head trains on every observation with a
    perturbed target, ``xi ~ N(0, I/M)``:

    * ``style="ensemblepp"``: index ``sqrt(M) e_k``, target ``r + c sqrt(M) xi_k``,
      so each head's target noise has standard deviation ``c`` as in Ensemble++;
    * ``style="official"`` (the authors' code): index ``e_k``, target
      ``r + c xi_k`` (standard deviation ``c / sqrt(M)``), heads with biases
      and xavier-normal prior heads (see :class:`EnsemblePlusNet`).

    Parameters
    ----------
    dim, ensemble_size, hidden, feature_net, prior_net, prior_scale
        As for :class:`NeuralEnsemble`; the trunk is trained without
        stop-gradient and the prior trunk is separate and frozen.
    prior_scale : float
        Default 0.3: within the sweep's noise of its best (3) on the tuning
        bandits, and unlike 3 not over-exploring when reward gaps are small
        (docs/results.md).
    posterior_scale : float
        Multiplies the trained heads (default 1).
    style : {"official", "ensemblepp"}
        See above (default ``"official"``).

    """ + _COMMON_DOC + """
    feature_dim, prior_feature_dim : int, optional
        Output widths of ``feature_net`` / ``prior_net`` when they cannot be inferred.
    """

    _xi_distribution = "gaussian"

    def __init__(self, dim: int | None, ensemble_size: int = 8, *, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, prior_net: nn.Module | None = None,
                 prior_scale: float = 0.3, n_outputs: int = 1, loss: str = "mse",
                 perturbation_scale: float = 0.01, buffer_capacity: int = 10000,
                 update_start: int = 128, update_every: int = 1, n_updates: int = 1,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.01,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 feature_dim: int | None = None, prior_feature_dim: int | None = None,
                 posterior_scale: float = 1.0, style: str = "official") -> None:
        self.style = check_style(style)
        M = _int_arg(ensemble_size, "ensemble_size", 1)
        super().__init__(dim, index_dim=M, n_outputs=n_outputs, loss=loss,
                         perturbation_scale=perturbation_scale, buffer_capacity=buffer_capacity,
                         update_start=update_start, update_every=update_every, n_updates=n_updates,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
                         seed=seed, model_kwargs=dict(
                             ensemble_size=M, hidden=hidden, feature_net=feature_net,
                             prior_net=prior_net, feature_dim=feature_dim,
                             prior_feature_dim=prior_feature_dim, prior_scale=prior_scale,
                             posterior_scale=posterior_scale, style=self.style))
        unit = self.style == "official"
        self._heads = torch.eye(M, device=self.device) * (1.0 if unit else math.sqrt(M))

    def _build_model(self, generator: torch.Generator, **kwargs: Any) -> nn.Module:
        return EnsemblePlusNet(self.dim, n_outputs=self.n_outputs, generator=generator, **kwargs)

    def _draw_plan(self, kind: str, batch: int = 0) -> DrawPlan | None:
        if kind == "act":
            return ("randint", (1,), self.index_dim, lambda k: self._heads[k])
        if kind == "train":
            return ("none", (), 0, lambda u: self._heads)
        return super()._draw_plan(kind, batch)


class EpiNet(NeuralAgent):
    __doc__ = """Epinet agent (Osband et al. 2023).

    Network :class:`~ensemblepp.neural.EpiNetNet`. Acts with one
    ``z ~ N(0, I_M)`` per step; each optimiser step averages the loss over
    ``n_index_samples`` draws of ``z``, shared by the minibatch
    (``style="ensemblepp"``) or drawn afresh for every observation
    (``style="official"``, as the authors' code, which also uses its
    initial laws: see :class:`EpiNetNet`). ``xi`` is uniform on the unit
    sphere as in Ensemble++.

    Parameters
    ----------
    dim, ensemble_size, hidden, feature_net, prior_scale, posterior_scale
        As for :class:`NeuralEnsemble` (``ensemble_size`` is the index
        dimension; ``posterior_scale`` multiplies the learnable epinet).
    """ + _COMMON_DOC + """
    n_index_samples : int
        Index draws per optimiser step (default 16).
    epinet_hidden, prior_hidden : sequence of int
        Hidden widths of the epinet (default ``(15, 15)``) and of each prior MLP (``(5, 5)``).
    feature_dim : int, optional
        Output width of ``feature_net`` when it cannot be inferred.
    style : {"official", "ensemblepp"}
        See above (default ``"official"``).

    Notes
    -----
    The defaults (prior 0.3, posterior 1, lr 1e-3, ``"official"``) come from
    the sweep of docs/results.md: prior 0.3 is within the sweep's noise of
    its best (0.1) on the tuning bandits, and unlike 0.1 it leaves the
    suboptimal arm of a small bandit that greedy settles on.
    """

    _xi_distribution = "sphere"

    def __init__(self, dim: int | None, ensemble_size: int = 8, *, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, prior_scale: float = 0.3,
                 posterior_scale: float = 1.0, n_outputs: int = 1, loss: str = "mse",
                 perturbation_scale: float = 0.01, buffer_capacity: int = 10000,
                 update_start: int = 128, update_every: int = 1, n_updates: int = 1,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.01,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 n_index_samples: int = 16, epinet_hidden: Sequence[int] = (15, 15),
                 prior_hidden: Sequence[int] = (5, 5), feature_dim: int | None = None,
                 style: str = "official") -> None:
        self.style = check_style(style)
        M = _int_arg(ensemble_size, "ensemble_size", 1)
        self.n_index_samples = _int_arg(n_index_samples, "n_index_samples", 1)
        super().__init__(dim, index_dim=M, n_outputs=n_outputs, loss=loss,
                         perturbation_scale=perturbation_scale, buffer_capacity=buffer_capacity,
                         update_start=update_start, update_every=update_every, n_updates=n_updates,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
                         seed=seed, model_kwargs=dict(
                             ensemble_size=M, hidden=hidden, feature_net=feature_net,
                             feature_dim=feature_dim, prior_scale=prior_scale,
                             posterior_scale=posterior_scale, epinet_hidden=epinet_hidden,
                             prior_hidden=prior_hidden, style=self.style))

    def _build_model(self, generator: torch.Generator, **kwargs: Any) -> nn.Module:
        return EpiNetNet(self.dim, n_outputs=self.n_outputs, generator=generator, **kwargs)

    def _draw_plan(self, kind: str, batch: int = 0) -> DrawPlan | None:
        if kind == "act":
            return ("randn", (1, self.index_dim), 0, _identity)
        if kind == "train":
            shape = (self.n_index_samples, self.index_dim)
            if self.style == "official":
                shape = (batch, *shape)
            return ("randn", shape, 0, _identity)
        return super()._draw_plan(kind, batch)


class NeuralGreedy(NeuralAgent):
    __doc__ = """Greedy agent: the base head alone, no exploration.

    Network :class:`~ensemblepp.neural.GreedyNet`; acts on ``argmax_k f(x_k)``
    and trains on the unperturbed loss (``perturbation_scale`` is accepted for
    a uniform interface and has no effect: there is no index).

    Parameters
    ----------
    dim, hidden, feature_net
        As for :class:`NeuralEnsemble`.
    """ + _COMMON_DOC + """
    feature_dim : int, optional
        Output width of ``feature_net`` when it cannot be inferred.
    """

    def __init__(self, dim: int | None, *, hidden: Sequence[int] = (64, 64),
                 feature_net: nn.Module | None = None, n_outputs: int = 1, loss: str = "mse",
                 perturbation_scale: float = 0.01, buffer_capacity: int = 10000,
                 update_start: int = 128, update_every: int = 1, n_updates: int = 1,
                 batch_size: int = 128, lr: float = 1e-4, weight_decay: float = 0.01,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 feature_dim: int | None = None) -> None:
        super().__init__(dim, index_dim=0, n_outputs=n_outputs, loss=loss,
                         perturbation_scale=perturbation_scale, buffer_capacity=buffer_capacity,
                         update_start=update_start, update_every=update_every, n_updates=n_updates,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
                         seed=seed, model_kwargs=dict(hidden=hidden, feature_net=feature_net,
                                                      feature_dim=feature_dim))
        self._no_index = torch.zeros(1, 0, device=self.device)

    def _build_model(self, generator: torch.Generator, **kwargs: Any) -> nn.Module:
        return GreedyNet(self.dim, n_outputs=self.n_outputs, generator=generator, **kwargs)

    def _draw_plan(self, kind: str, batch: int = 0) -> DrawPlan | None:
        if kind in ("act", "train"):
            return ("none", (), 0, lambda u: self._no_index)
        return super()._draw_plan(kind, batch)
