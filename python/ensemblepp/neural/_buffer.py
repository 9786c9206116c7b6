"""FIFO replay buffer of (x, r, xi) kept as preallocated tensors on the agent's device."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """First-in first-out buffer of observations ``(x, r, xi)``.

    Vector inputs live in one preallocated ``(capacity, dim)`` float32 tensor
    on the buffer's device, so adding and sampling never leave the device.
    With ``dim=None`` the inputs are arbitrary Python objects (text, token
    lists) kept in a list, and a sampled batch is a list.

    Parameters
    ----------
    capacity : int
        Maximum number of observations; the oldest one is overwritten first.
    dim : int or None
        Input dimension, or None for object inputs.
    xi_dim : int
        Length of the perturbation vector ``xi`` stored with each observation.
    device : torch.device or str
        Device of the tensors.
    """

    def __init__(self, capacity: int, dim: int | None, xi_dim: int,
                 device: torch.device | str = "cpu") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.dim = dim
        self.xi_dim = xi_dim
        self.device = torch.device(device)
        self.x: torch.Tensor | list[Any]
        if dim is None:
            self.x = [None] * capacity
        else:
            self.x = torch.zeros(capacity, dim, device=self.device)
        self.r = torch.zeros(capacity, device=self.device)
        self.xi = torch.zeros(capacity, xi_dim, device=self.device)
        self.pos = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, x: Any, r: float, xi: torch.Tensor) -> None:
        """Append one observation, overwriting the oldest when full."""
        self.x[self.pos] = x
        self.r[self.pos] = r
        self.xi[self.pos] = xi
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def gather(self, idx: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Observations at slot indices ``idx`` (a device int64 tensor)."""
        if self.dim is None:
            items = self.x
            return [items[i] for i in idx.tolist()], self.r[idx], self.xi[idx]
        return self.x[idx], self.r[idx], self.xi[idx]

    def ordered(self) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """All stored observations, oldest first."""
        start = (self.pos - self.size) % self.capacity
        order = [(start + i) % self.capacity for i in range(self.size)]
        idx = torch.tensor(order, dtype=torch.long, device=self.device)
        return self.gather(idx)

    def state_dict(self) -> dict[str, Any]:
        """Contents and write position (only the filled slots of object inputs)."""
        x: Any = list(self.x[: self.size]) if self.dim is None else self.x.clone()
        return {"capacity": self.capacity, "dim": self.dim, "xi_dim": self.xi_dim,
                "pos": self.pos, "size": self.size, "x": x,
                "r": self.r.clone(), "xi": self.xi.clone()}

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ValueError if ``state`` does not fit this buffer."""
        try:
            cap, dim, xi_dim = state["capacity"], state["dim"], state["xi_dim"]
            pos, size = int(state["pos"]), int(state["size"])
            r, xi, x = state["r"], state["xi"], state["x"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"buffer state is missing an entry ({exc})") from exc
        if (cap, dim, xi_dim) != (self.capacity, self.dim, self.xi_dim):
            raise ValueError(f"buffer state has capacity/dim/xi_dim {(cap, dim, xi_dim)}, this buffer "
                             f"{(self.capacity, self.dim, self.xi_dim)}")
        if not (0 <= size <= cap and 0 <= pos < cap):
            raise ValueError(f"buffer state has invalid pos={pos} or size={size}")
        if tuple(r.shape) != (cap,) or tuple(xi.shape) != (cap, xi_dim):
            raise ValueError("buffer state has tensors of the wrong shape")
        if dim is None:
            if len(x) != size:
                raise ValueError("buffer state has the wrong number of inputs")
        elif tuple(x.shape) != (cap, dim):
            raise ValueError("buffer state has inputs of the wrong shape")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore contents saved by :meth:`state_dict`."""
        self.check_state_dict(state)
        if self.dim is None:
            items = list(state["x"])
            self.x = items + [None] * (self.capacity - len(items))
        else:
            self.x.copy_(state["x"])
        self.r.copy_(state["r"])
        self.xi.copy_(state["xi"])
        self.pos, self.size = int(state["pos"]), int(state["size"])
