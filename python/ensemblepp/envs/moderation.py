"""Content moderation as a bandit: publish or block a stream of posts.

Every step shows one post. The agent either publishes it (action 0) or
blocks it (action 1). A published post is seen by a human reviewer, so the
agent learns its label from the reward: 1 for a benign post, -0.5 for a
hateful one. Blocking always pays 0.5 and reveals nothing more. Publishing
is therefore worth it when the probability ``p`` that the post is hateful
satisfies ``1 - 1.5 p > 0.5``, i.e. ``p < 1/3``.

Posts are embedded by all-MiniLM-L6-v2 through :mod:`ensemblepp.text` (the
encoder, its embedding cache and the fine-tunable feature network live
there); this module is only the environment. It needs the optional extra:
``pip install "ensemblepp[text]"``.

Two modes:

``mode="frozen"``
    Embeddings are computed once and cached on disk (keyed by the texts'
    checksum and the encoder), and the actions are vectors of length
    ``E + 2 = 386``: publish is ``[e, 1, 0]`` and block ``[0, 0, 1]``. Block
    gets only an indicator because its reward does not depend on the post.
    Any agent that takes ``(K, d)`` arrays (linear or neural) can play it.
``mode="text"``
    The actions are the raw pairs ``[(text, 0), (text, 1)]``, for a neural
    agent whose feature network is a :class:`~ensemblepp.text.TextActionEncoder`: the encoder
    then trains with the agent (fine-tuning), and maps the pairs to the same
    386-dimensional vectors as the frozen mode.

For the Davidson et al. (2017) tweets (:func:`ensemblepp.datasets.load_hate_speech`)
a post is hateful when its majority label is class 0 ("hate speech"), 5.8% of
the tweets; class 1 ("offensive language") and class 2 ("neither") count as
benign. ``hate_classes=(0, 1)`` treats offensive posts as harmful as well.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..datasets import load_hate_speech
from ..text import BLOCK, EMBEDDING_DIM, PUBLISH, action_features, embed_texts
# The encoder moved to ensemblepp.text; these names stay importable from here.
from ..text import ENCODER_NAME, MissingTextExtra, TextActionEncoder, encoder_id, load_encoder  # noqa: F401
from .base import Environment, SeedLike, _positive_int

__all__ = ["ContentModeration", "PUBLISH", "BLOCK"]


class ContentModeration(Environment):
    """Publish or block a stream of posts, with human review of published posts.

    Rewards: publish a benign post 1, publish a hateful post -0.5, block 0.5
    (whatever the post). The best action is publish for a benign post and
    block for a hateful one, so a step's regret is 0.5 for blocking a benign
    post, 1.0 for publishing a hateful one, and 0 otherwise. Rewards carry no
    noise: the label of a post is fixed.

    Posts come in an order shuffled by the seed and are reshuffled after
    every pass. With ``n_posts`` a random subset is used, drawn from
    ``subset_seed`` (not from ``seed``), so that every seed of an experiment
    sees the same posts and shares one embedding cache.

    Extra metrics (:meth:`info`, names in :attr:`metrics`): ``reviewed`` (1
    when the post was published and so sent to human review), ``correct`` (1
    when the action was the best one) and ``hateful`` (the post's label).

    Parameters
    ----------
    texts : sequence of str, optional
        Posts of your own; then ``labels`` is required. Default: the Davidson
        et al. tweets.
    labels : array-like of bool or {0, 1}, optional
        1 (True) for a hateful post.
    hate_classes : sequence of int, default (0,)
        For the Davidson data: which classes count as hateful (0 hate speech,
        1 offensive language, 2 neither).
    n_posts : int, optional
        Use a random subset of this many posts. Embedding all 24783 tweets
        takes about ten minutes on one CPU core (3000 take 80 s); it is done
        once, later runs read the cache.
    subset_seed : int, default 0
        Seed of that subset.
    mode : {"frozen", "text"}, default "frozen"
        Precomputed embeddings as ``(2, 386)`` action arrays, or raw
        ``(text, action)`` pairs for a fine-tuned encoder (single instance).
    embeddings : numpy.ndarray, optional
        ``(n, E)`` precomputed embeddings of the (subset of) posts, instead of
        all-MiniLM-L6-v2 (frozen mode).
    encoder : SentenceTransformer, optional
        Already loaded encoder to embed with (frozen mode).
    device : str, default "cpu"
        Device for the encoder.
    batch_size : int, default 64
        Texts per encoder forward pass.
    cache : bool, default True
        Use the on-disk embedding cache.
    cache_path : path-like, optional
        Folder for the embedding cache.
    data_dir : path-like, optional
        Folder with ``hate_speech/labeled_data.csv``.
    download : bool, default True
        Download the tweets when no folder has them.
    n_instances : int or None, default None
        ``B`` instances (frozen mode only), or None.
    seed : int or sequence of int, default 0
        Seed(s) of the post order.

    Attributes
    ----------
    texts : list of str
        The posts in use.
    hateful : numpy.ndarray
        ``(n,)`` bool labels.
    embeddings : numpy.ndarray or None
        ``(n, E)`` float32 in frozen mode.
    """

    metrics = ("reviewed", "correct", "hateful")
    rewards = {"publish_benign": 1.0, "publish_hate": -0.5, "block": 0.5}

    def __init__(
        self,
        texts: Sequence[str] | None = None,
        labels: Any = None,
        hate_classes: Sequence[int] = (0,),
        n_posts: int | None = None,
        subset_seed: int = 0,
        mode: str = "frozen",
        embeddings: np.ndarray | None = None,
        encoder: Any = None,
        device: str = "cpu",
        batch_size: int = 64,
        cache: bool = True,
        cache_path: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        download: bool = True,
        n_instances: int | None = None,
        seed: SeedLike = 0,
    ) -> None:
        if mode not in ("frozen", "text"):
            raise ValueError(f"mode must be 'frozen' or 'text', got mode={mode!r}")
        if mode == "text" and n_instances is not None:
            raise ValueError("mode='text' plays a single instance: n_instances must be None")
        all_texts, hateful, sha, name = self._prepare(texts, labels, hate_classes, data_dir, download)
        if n_posts is not None:
            n_posts = _positive_int(n_posts, "n_posts")
            if n_posts > len(all_texts):
                raise ValueError(f"n_posts={n_posts} exceeds the {len(all_texts)} posts available")
            if isinstance(subset_seed, (bool, np.bool_)) or not isinstance(subset_seed, (int, np.integer)):
                raise TypeError(f"subset_seed must be an int, got {type(subset_seed).__name__}")
            keep = np.sort(np.random.default_rng(int(subset_seed)).choice(len(all_texts), n_posts, replace=False))
            all_texts = [all_texts[i] for i in keep]
            hateful = hateful[keep]
        if embeddings is not None:
            if mode != "frozen":
                raise ValueError("embeddings= is only used with mode='frozen'")
            emb = np.asarray(embeddings, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != len(all_texts):
                raise ValueError(f"embeddings must be (n_posts={len(all_texts)}, E), got shape {emb.shape}")
            if not np.isfinite(emb).all():
                raise ValueError("embeddings has NaN or inf values")
        elif mode == "frozen":
            emb = embed_texts(all_texts, model=encoder, device=device, batch_size=batch_size,
                              cache=cache, cache_path=cache_path, data_sha256=sha)
        else:
            emb = None
        width = (EMBEDDING_DIM if emb is None else emb.shape[1]) + 2
        super().__init__(width, 2, n_instances, seed)
        self.mode = mode
        self.dataset = name
        self.texts = all_texts
        self.hateful = hateful
        self.embeddings = emb
        self.n_posts = n_posts
        self.subset_seed = int(subset_seed)
        self.hate_classes = tuple(int(c) for c in hate_classes)
        self._last: dict[str, np.ndarray] = {}
        self.reset()

    @staticmethod
    def _prepare(texts: Any, labels: Any, hate_classes: Sequence[int], data_dir: Any,
                 download: bool) -> tuple[list[str], np.ndarray, str, str]:
        if texts is None:
            if labels is not None:
                raise ValueError("labels= needs texts=")
            classes = np.asarray(list(hate_classes))
            if classes.size == 0 or classes.dtype.kind not in "iu" or np.any((classes < 0) | (classes > 2)):
                raise ValueError(f"hate_classes must be a non-empty subset of {{0, 1, 2}}, got {hate_classes!r}")
            data = load_hate_speech(data_dir, download=download)
            return list(data.texts), np.isin(data.target, classes), data.sha256, "hate_speech"
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        if labels is None:
            raise ValueError("texts= needs labels= (1 or True for a hateful post)")
        lab = np.asarray(labels)
        if lab.shape != (len(texts),):
            raise ValueError(f"labels must have shape ({len(texts)},), got {lab.shape}")
        if lab.dtype != np.bool_:
            if lab.dtype.kind not in "iuf" or not np.isin(lab, [0, 1]).all():
                raise ValueError("labels must be booleans or 0/1")
            lab = lab.astype(bool)
        if not texts:
            raise ValueError("texts is empty")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must all be strings")
        return texts, lab, "", "custom"

    # -- Environment hooks -------------------------------------------------------
    def _draw_instances(self) -> None:
        n = len(self.texts)
        self._order = [r.permutation(n) for r in self._rng_context]
        self._pos = np.zeros(self._batch, dtype=np.int64)
        self._load_posts()

    def _load_posts(self) -> None:
        self._posts = np.array([o[p] for o, p in zip(self._order, self._pos)], dtype=np.int64)
        hate = self.hateful[self._posts]
        r = self.rewards
        self._means = np.empty((self._batch, 2))
        self._means[:, PUBLISH] = np.where(hate, r["publish_hate"], r["publish_benign"])
        self._means[:, BLOCK] = r["block"]
        self._X = None if self.embeddings is None else action_features(self.embeddings[self._posts])

    def _advance(self) -> None:
        self._pos += 1
        for b, order in enumerate(self._order):
            if self._pos[b] == len(order):
                self._order[b] = self._rng_context[b].permutation(len(order))
                self._pos[b] = 0
        self._load_posts()

    def _batched_actions(self) -> np.ndarray:
        if self._X is None:  # pragma: no cover - actions() handles text mode
            raise RuntimeError("no action vectors in mode='text'")
        return self._X

    def _batched_means(self) -> np.ndarray:
        return self._means

    def _batched_rewards(self, means: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        return means.copy()

    def _record(self, idx: np.ndarray | None, chosen: np.ndarray, reward: np.ndarray,
                regret: np.ndarray) -> None:
        assert idx is not None
        self._last = {
            "reviewed": (idx == PUBLISH).astype(np.float64),
            "correct": (regret == 0).astype(np.float64),
            "hateful": self.hateful[self._posts].astype(np.float64),
        }

    # -- protocol ----------------------------------------------------------------------
    def actions(self) -> Any:
        """Current actions.

        Returns
        -------
        numpy.ndarray or list
            Frozen mode: ``(2, E + 2)`` or ``(B, 2, E + 2)`` float64, rows
            publish then block. Text mode: ``[(text, 0), (text, 1)]`` for a
            :class:`~ensemblepp.text.TextActionEncoder`.
        """
        if self.mode == "text":
            text = self.texts[int(self._posts[0])]
            return [(text, PUBLISH), (text, BLOCK)]
        return super().actions()

    def info(self) -> dict[str, Any]:
        """Metrics of the last step: ``reviewed``, ``correct``, ``hateful`` (0/1 floats or ``(B,)``)."""
        return {k: self._out(v) for k, v in self._last.items()}

    def post(self) -> str | list[str]:
        """Text of the current post(s)."""
        if self.n_instances is None:
            return self.texts[int(self._posts[0])]
        return [self.texts[int(i)] for i in self._posts]

    def label(self) -> bool | np.ndarray:
        """Whether the current post(s) are hateful."""
        lab = self.hateful[self._posts]
        return bool(lab[0]) if self.n_instances is None else lab.copy()

    def config(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "mode": self.mode, "hate_classes": list(self.hate_classes),
                "n_posts": self.n_posts, "subset_seed": self.subset_seed,
                "n_instances": self.n_instances,
                "seed": self.seeds if self.n_instances is not None else self.seeds[0]}

