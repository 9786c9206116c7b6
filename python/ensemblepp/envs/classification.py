"""A labelled data set played as a contextual bandit.

Each step shows one row of the data set; the agent picks a class, and the
reward is 1 when the class is the row's label (plus optional Gaussian noise).
The action vectors use the disjoint encoding of the Ensemble++ paper: with
row features ``f`` (length ``d_x``) and ``K`` classes, action ``a`` is
``x_a = e_a (x) f``, the vector of length ``K d_x`` that holds ``f`` in block
``a`` and zeros elsewhere, so a linear model learns one weight vector per class.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..datasets import TabularData, encode_tabular, load_tabular
from .base import BlockStream, Environment, SeedLike, _positive_float, _positive_int

__all__ = ["ClassificationBandit", "disjoint_actions"]

_NOISE_BLOCK = 1024


def disjoint_actions(features: np.ndarray, n_actions: int) -> np.ndarray:
    """Disjoint encoding ``x_a = e_a (x) f`` of one or several feature rows.

    Parameters
    ----------
    features : numpy.ndarray
        ``(d_x,)`` or ``(B, d_x)`` feature rows.
    n_actions : int
        Number of actions ``K``.

    Returns
    -------
    numpy.ndarray
        ``(K, K d_x)`` or ``(B, K, K d_x)`` float64; row ``a`` holds ``f`` in
        columns ``a d_x .. (a + 1) d_x - 1``.
    """
    f = np.asarray(features, dtype=np.float64)
    single = f.ndim == 1
    fb = f[None] if single else f
    if fb.ndim != 2:
        raise ValueError(f"features must be (d_x,) or (B, d_x), got shape {f.shape}")
    b, dx = fb.shape
    out = np.zeros((b, n_actions, n_actions, dx))
    idx = np.arange(n_actions)
    out[:, idx, idx, :] = fb[:, None, :]
    out = out.reshape(b, n_actions, n_actions * dx)
    return out[0] if single else out


class ClassificationBandit(Environment):
    """A classification data set as a ``K``-armed contextual bandit.

    Rows come in an order shuffled by the seed; when every row has been shown
    the rows are shuffled again (a new epoch). Action ``a`` on a row with
    label ``y`` has expected reward ``1{a = y}`` and observed reward
    ``1{a = y} + N(0, noise_std^2)``; the regret of a step is ``1 - 1{a = y}``
    (the best action, the true class, has expected reward 1).

    Parameters
    ----------
    dataset : {"mushroom", "shuttle"} or None, default None
        A UCI data set loaded with :mod:`ensemblepp.datasets` (Mushroom: 8124
        rows, 2 classes; Shuttle: 58000 rows, 7 classes). Give either this or
        ``X`` and ``y``.
    X : numpy.ndarray, optional
        ``(n, p)`` features of your own data (strings or numbers).
    y : numpy.ndarray, optional
        ``(n,)`` labels of any type; classes are the sorted unique values.
    categorical : sequence of bool, optional
        Which columns of ``X`` are categorical (default: all columns of a
        string array, none of a numeric one).
    encode : bool, default True
        One-hot encode categorical columns and standardise numeric ones (see
        :func:`ensemblepp.datasets.encode_tabular`); False uses ``X`` as given
        (it must then be numeric).
    intercept : bool, default True
        Append a constant 1 to the features so that each class gets its own
        bias (with the disjoint encoding a linear model otherwise has none).
    noise_std : float, default 0.0
        Standard deviation of the Gaussian noise added to the 0/1 reward.
    n_rows : int, optional
        Use a random subset of this many rows, drawn from the seed (default:
        all rows).
    data_dir : path-like, optional
        Folder with the raw files (see :mod:`ensemblepp.datasets`).
    download : bool, default True
        Download a missing data set from its official source.
    n_instances : int or None, default None
        ``B`` instances, each with its own row order and noise, or None.
    seed : int or sequence of int, default 0
        Seed(s), see :func:`ensemblepp.envs.base.instance_seeds`.

    Attributes
    ----------
    features : numpy.ndarray
        ``(n, d_x)`` encoded features (with the intercept column, if any).
    labels : numpy.ndarray
        ``(n,)`` int64 class indices.
    classes : list
        Class names (or the unique values of ``y``).
    feature_dim : int
        ``d_x``; ``dim = n_actions * feature_dim``.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0]]); y = np.array(["a", "b", "a"])
    >>> env = ClassificationBandit(X=X, y=y, seed=0)
    >>> env.actions().shape
    (2, 4)
    """

    def __init__(
        self,
        dataset: str | None = None,
        X: np.ndarray | None = None,
        y: np.ndarray | None = None,
        categorical: Any = None,
        encode: bool = True,
        intercept: bool = True,
        noise_std: float = 0.0,
        n_rows: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        download: bool = True,
        n_instances: int | None = None,
        seed: SeedLike = 0,
    ) -> None:
        features, labels, classes, name = self._prepare(dataset, X, y, categorical, encode, data_dir, download)
        if intercept:
            features = np.concatenate([features, np.ones((features.shape[0], 1))], axis=1)
        n_actions = len(classes)
        if n_actions < 2:
            raise ValueError(f"y must have at least two classes, got {classes}")
        super().__init__(n_actions * features.shape[1], n_actions, n_instances, seed)
        self.noise_std = _positive_float(noise_std, "noise_std", allow_zero=True)
        if n_rows is not None:
            n_rows = _positive_int(n_rows, "n_rows")
            if n_rows > features.shape[0]:
                raise ValueError(f"n_rows={n_rows} exceeds the {features.shape[0]} rows of the data")
        self.n_rows = n_rows
        self.dataset = name
        self.intercept = bool(intercept)
        self.features = features
        self.labels = labels
        self.classes = classes
        self.feature_dim = features.shape[1]
        self.reset()

    @staticmethod
    def _prepare(dataset: str | None, X: Any, y: Any, categorical: Any, encode: bool,
                 data_dir: Any, download: bool) -> tuple[np.ndarray, np.ndarray, list, str]:
        if dataset is not None:
            if X is not None or y is not None:
                raise ValueError("give either dataset= or X= and y=, not both")
            if not isinstance(dataset, str):
                raise TypeError(f"dataset must be a string, got {type(dataset).__name__}")
            data: TabularData = load_tabular(dataset, data_dir, download=download)
            features, _ = encode_tabular(data.features, data.categorical)
            return features, data.target, list(data.classes), dataset
        if X is None or y is None:
            raise ValueError("give dataset= ('mushroom' or 'shuttle') or both X= and y=")
        Xa = np.asarray(X)
        ya = np.asarray(y)
        if Xa.ndim != 2:
            raise ValueError(f"X must be a 2-d (n, p) array, got shape {Xa.shape}")
        if ya.ndim != 1 or ya.shape[0] != Xa.shape[0]:
            raise ValueError(f"y must be 1-d with one label per row of X ({Xa.shape[0]}), got shape {ya.shape}")
        if ya.dtype.kind == "f" and not np.isfinite(ya).all():
            raise ValueError("y has NaN or inf labels")
        classes, labels = np.unique(ya, return_inverse=True)
        if encode:
            features, _ = encode_tabular(Xa, categorical)
        else:
            if Xa.dtype.kind not in "biuf":
                raise TypeError(f"X must be numeric when encode=False, got dtype {Xa.dtype}")
            features = Xa.astype(np.float64)
            if not np.isfinite(features).all():
                raise ValueError("X has NaN or inf values")
        return features, labels.astype(np.int64), classes.tolist(), "custom"

    # -- Environment hooks -------------------------------------------------------
    def _draw_instances(self) -> None:
        n = self.features.shape[0]
        if self.n_rows is None:
            self._pool = [np.arange(n) for _ in self._rng_instance]
        else:
            self._pool = [np.sort(r.choice(n, self.n_rows, replace=False)) for r in self._rng_instance]
        self._order = [r.permutation(p) for r, p in zip(self._rng_context, self._pool)]
        self._pos = np.zeros(self._batch, dtype=np.int64)
        self._noise = BlockStream(self._rng_noise, lambda r, k: r.standard_normal(k), _NOISE_BLOCK)
        self._load_rows()

    def _load_rows(self) -> None:
        self._rows = np.array([order[p] for order, p in zip(self._order, self._pos)], dtype=np.int64)
        self._X = disjoint_actions(self.features[self._rows], self.n_actions or 0)
        self._means = np.zeros((self._batch, self.n_actions or 0))
        self._means[np.arange(self._batch), self.labels[self._rows]] = 1.0

    def _advance(self) -> None:
        self._pos += 1
        for b, order in enumerate(self._order):
            if self._pos[b] == len(order):
                # A new epoch: reshuffle so later passes do not repeat the order.
                self._order[b] = self._rng_context[b].permutation(self._pool[b])
                self._pos[b] = 0
        self._load_rows()

    def _batched_actions(self) -> np.ndarray:
        return self._X

    def _batched_means(self) -> np.ndarray:
        return self._means

    def _batched_best(self) -> np.ndarray:
        return np.ones(self._batch)

    def _batched_rewards(self, means: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        # Drawn even when noise_std is 0 so the stream does not depend on it.
        return means + self.noise_std * self._noise.next()

    # -- extras ----------------------------------------------------------------------
    def context(self) -> np.ndarray:
        """Encoded features of the current row(s), ``(d_x,)`` or ``(B, d_x)`` (a copy)."""
        return self._out(self.features[self._rows].copy())

    def label(self) -> int | np.ndarray:
        """Class index of the current row(s): int or ``(B,)`` int64."""
        lab = self.labels[self._rows]
        return int(lab[0]) if self.n_instances is None else lab.copy()

    @property
    def row(self) -> int | np.ndarray:
        """Index in the data set of the current row(s)."""
        return int(self._rows[0]) if self.n_instances is None else self._rows.copy()

    def config(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "noise_std": self.noise_std, "intercept": self.intercept,
                "n_rows": self.n_rows, "n_instances": self.n_instances,
                "seed": self.seeds if self.n_instances is not None else self.seeds[0]}

