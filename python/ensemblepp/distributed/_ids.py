"""Stable user ids: the 64-bit random-stream id of a user and the shard that holds it.

Python's ``hash`` is salted per process, so it cannot place a user on the same shard in two
processes; these functions are fixed forever (changing them would move every user to another
stream and shard).

* An integer user id ``u`` (0 <= u < 2**64) gets the stream id ``mix64(u + GAMMA)``, the
  SplitMix64 output function (Steele, Lea and Flood, OOPSLA 2014): a bijection of the 64-bit
  integers, so two integer users never share a stream.
* A string user id gets the first 8 bytes (little-endian) of its BLAKE2b digest of the UTF-8
  text, personalised with ``ensemblepp-user``.
* The shard of a user is ``mix64(stream_id ^ SHARD_SALT) % n_shards``, so the shard does not
  follow the low bits of the stream id.

NumPy integer arrays are hashed in one vectorised pass; lists may mix ints and strings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["UserIds", "user_ids", "stream_ids", "shard_of", "mix64"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SHARD_SALT = np.uint64(0xD6E8FEB86659FD93)
_PERSON = b"ensemblepp-user"
_INT, _STR = 0, 1


def mix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser of a uint64 array (a bijection; wraps modulo 2**64)."""
    z = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def _int_streams(ints: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return mix64(ints.astype(np.uint64) + _GAMMA)


def _str_stream(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "little")


@dataclass
class UserIds:
    """A request's user ids in a form that travels cheaply and compares exactly.

    Attributes
    ----------
    kinds : numpy.ndarray of uint8, shape (n,)
        0 for an integer id, 1 for a string id.
    ints : numpy.ndarray of uint64, shape (n,)
        The integer ids (0 where the id is a string).
    strs : list of str or None
        The string ids ("" where the id is an integer); None when every id is an integer.
    streams : numpy.ndarray of uint64, shape (n,)
        The stream id of each user.
    """

    kinds: np.ndarray
    ints: np.ndarray
    strs: list[str] | None
    streams: np.ndarray

    def __len__(self) -> int:
        return int(self.streams.shape[0])

    def take(self, idx: np.ndarray) -> UserIds:
        """The ids at positions ``idx`` (in that order)."""
        strs = None if self.strs is None else [self.strs[i] for i in idx.tolist()]
        return UserIds(self.kinds[idx], self.ints[idx], strs, self.streams[idx])

    def key(self, i: int) -> int | str:
        """The original id at position ``i``."""
        return self.strs[i] if self.kinds[i] == _STR else int(self.ints[i])  # type: ignore[index]

    def keys(self) -> list[int | str]:
        """The original ids, in order."""
        if self.strs is None:
            return self.ints.tolist()
        return [s if k == _STR else i for k, i, s in zip(self.kinds.tolist(), self.ints.tolist(), self.strs)]


def user_ids(ids: Any, name: str = "user_ids") -> UserIds:
    """Validate user ids (a NumPy integer array, or a sequence of ints and strings).

    Parameters
    ----------
    ids : array_like or sequence
        Integer ids must lie in [0, 2**64); strings may be any text.
    name : str
        Argument name used in error messages.

    Returns
    -------
    UserIds

    Raises
    ------
    TypeError, ValueError
        Naming ``name`` and the offending position.
    """
    if isinstance(ids, (str, bytes)) or np.ndim(ids) == 0 and not hasattr(ids, "__len__"):
        raise TypeError(f"{name}: expected a sequence or 1-D array of ids, got {type(ids).__name__}")
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array, got shape {ids.shape}")
        if ids.dtype.kind in "iu":
            if ids.dtype.kind == "i" and ids.size and int(ids.min()) < 0:
                raise ValueError(f"{name}: integer ids must be >= 0, got {int(ids.min())}")
            ints = ids.astype(np.uint64)
            return UserIds(np.zeros(ids.size, np.uint8), ints, None, _int_streams(ints))
        if ids.dtype.kind != "U" and ids.dtype != object:
            raise TypeError(f"{name}: expected integer or string ids, got dtype {ids.dtype}")
        ids = ids.tolist()
    try:
        seq = list(ids)
    except TypeError:
        raise TypeError(f"{name}: expected a sequence or 1-D array of ids, got {type(ids).__name__}") from None
    n = len(seq)
    kinds = np.zeros(n, np.uint8)
    ints = np.zeros(n, np.uint64)
    strs: list[str] | None = None
    str_streams: dict[int, int] = {}
    for i, u in enumerate(seq):
        if isinstance(u, str):
            if strs is None:
                strs = [""] * n
            kinds[i] = _STR
            strs[i] = u
            str_streams[i] = _str_stream(u)
        elif isinstance(u, (int, np.integer)) and not isinstance(u, (bool, np.bool_)):
            if not 0 <= int(u) < 2**64:
                raise ValueError(f"{name}[{i}]: integer ids must lie in [0, 2**64), got {int(u)}")
            ints[i] = int(u)
        else:
            raise TypeError(f"{name}[{i}]: expected an int or a str, got {type(u).__name__}")
    streams = _int_streams(ints)
    for i, s in str_streams.items():
        streams[i] = s
    return UserIds(kinds, ints, strs, streams)


def stream_ids(ids: Any) -> np.ndarray:
    """The 64-bit random-stream id of each user id (uint64 array).

    Examples
    --------
    >>> stream_ids([0, 1, "alice"]).dtype
    dtype('uint64')
    """
    return user_ids(ids).streams


def shard_of(streams: np.ndarray, n_shards: int) -> np.ndarray:
    """The shard (int64 in [0, n_shards)) of each stream id."""
    return (mix64(np.asarray(streams, np.uint64) ^ _SHARD_SALT) % np.uint64(n_shards)).astype(np.int64)
