"""One posterior per user, for many users: a linear policy sharded over Ray actors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._ids import UserIds, shard_of, user_ids
from ._shard import CHECKPOINT_FORMAT, ShardState, policy_class

__all__ = ["ShardedPolicy"]

MANIFEST = "sharded.json"


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the tests skip without ray
        raise ImportError('ensemblepp.distributed needs Ray: pip install "ensemblepp[ray]"') from exc
    return ray


class _ShardActor:
    """The Ray actor around one :class:`ShardState` (Ray re-runs ``__init__`` after a crash,
    which reloads the checkpoint and replays the log)."""

    def __init__(self, policy: str, options: dict[str, Any], seed: int, folder: str | None, fsync: bool,
                 threads: int | None) -> None:
        if threads is not None:
            from ensemblepp import set_num_threads

            set_num_threads(threads)
        self._state = ShardState(policy, options, seed, folder, fsync)

    def info(self) -> dict[str, Any]:
        return {"n_users": self._state.n_users, "seq": self._state.seq, "pid": os.getpid(),
                "recovered": dict(self._state.recovered)}

    def act(self, seq: int, users: UserIds, actions: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return self._state.act(seq, users, actions, mask)

    def update(self, seq: int, users: UserIds, x: np.ndarray, r: np.ndarray) -> None:
        self._state.update(seq, users, x, r)

    def checkpoint(self, folder: str | None) -> int:
        return self._state.checkpoint(folder)

    def export(self, users: UserIds) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return self._state.export(users)


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = _ray().remote(_ShardActor)
    return _ACTOR


def _jsonable(value: Any, name: str) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, name) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{name}: option values must be numbers, strings, lists or arrays, got {type(value).__name__}")


class ShardedPolicy:
    """A batched linear policy with one agent per user, sharded over Ray actors.

    Users are arbitrary ids (ints in [0, 2**64) or strings). A user's random stream is keyed by
    (``seed``, a stable 64-bit hash of its id), and its shard is another stable hash of that id,
    so a user makes the same decisions whatever the number of shards, the other users in a call,
    or the order in which users arrived; and it makes the same decisions as an in-process batched
    policy built with ``stream_ids=ShardedPolicy.stream_ids(users)``. A user seen for the first
    time starts from the prior.

    Parameters
    ----------
    policy : type or str
        A linear policy class (``ensemblepp.LinearEnsemble``, ``LinearTS``, ...) or its name.
    n_shards : int, default 1
        Number S of actors.
    seed : int, default 0
        Seed of every user's random stream.
    folder : path-like, optional
        Makes the policy durable: every shard logs each operation there before applying it and
        :meth:`checkpoint` writes snapshots there; an actor that dies is restarted by Ray,
        reloads its last checkpoint, replays its log and ends bit-identical to one that did not
        die. An existing folder is resumed (its manifest must match these arguments).
        Without a folder, a dead actor's users are lost and calls to it fail.
    fsync : bool, default False
        ``os.fsync`` every log record (survives a machine crash, at the cost of a disk flush
        per call).
    actor_options : dict, optional
        Extra ``ray.remote`` options of the actors (``num_cpus``, ``num_gpus``, ``resources``,
        ...). A CUDA policy (``device="cuda"``) gets ``num_gpus=1`` unless given.
    threads : int, optional
        Compiled-core threads in each actor (``ensemblepp.set_num_threads``).
    **policy_options
        Options of the policy (``dim``, ``ensemble_size``, ``prior_var``, ``dtype``, ...).

    Examples
    --------
    >>> import numpy as np, ensemblepp as epp                         # doctest: +SKIP
    >>> from ensemblepp.distributed import ShardedPolicy              # doctest: +SKIP
    >>> users = ShardedPolicy(epp.LinearEnsemble, n_shards=4, dim=64, ensemble_size=16, seed=0)  # doctest: +SKIP
    >>> a = users.act(["alice", "bob", 17], np.eye(64)[:10])          # doctest: +SKIP
    >>> users.update(["alice", "bob", 17], np.eye(64)[a], [1.0, 0.0, 0.5])  # doctest: +SKIP
    """

    def __init__(self, policy: Any, n_shards: int = 1, *, seed: int = 0, folder: str | os.PathLike | None = None,
                 fsync: bool = False, actor_options: dict[str, Any] | None = None, threads: int | None = None,
                 **policy_options: Any) -> None:
        ray = _ray()
        cls = policy_class(policy)
        if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or not 1 <= n_shards <= 65536:
            raise ValueError(f"n_shards: expected an int in [1, 65536], got {n_shards!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
            raise ValueError(f"seed: expected an int in [0, 2**64), got {seed!r}")
        options = {k: _jsonable(v, k) for k, v in policy_options.items()}
        # Builds one agent here first: a bad option fails now, naming itself, not in S actors.
        # (On the CPU: the driver need not have the actors' GPU.)
        probe = ShardState(cls, {k: v for k, v in options.items() if k != "device"}, int(seed))
        self._dim, self._dtype = probe._dim, probe._dtype
        self._device = str(policy_options.get("device", "cpu"))
        self._cls = cls
        self._options = options
        self._seed = int(seed)
        self._n_shards = int(n_shards)
        self._folder = None if folder is None else Path(folder)
        if self._folder is not None:
            self._check_manifest()
        opts = dict(actor_options or {})
        if self._device.startswith("cuda"):
            opts.setdefault("num_gpus", 1)
        durable = self._folder is not None
        # With a folder a restarted actor recovers exactly and retried calls are idempotent
        # (sequence numbers), so Ray may restart and retry freely; without one it must not.
        opts.setdefault("max_restarts", -1 if durable else 0)
        opts.setdefault("max_task_retries", -1 if durable else 0)
        actor = _actor_class().options(**opts)
        self._actors = [
            actor.remote(cls.__name__, options, self._seed,
                         None if self._folder is None else str(self._folder / f"shard-{i:05d}"), fsync, threads)
            for i in range(self._n_shards)]
        infos = ray.get([a.info.remote() for a in self._actors])
        self._seq = [int(i["seq"]) for i in infos]

    # ---- configuration -----------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "policy": self._cls.__name__, "n_shards": self._n_shards,
                "seed": self._seed, "options": self._options}

    def _check_manifest(self) -> None:
        assert self._folder is not None
        path = self._folder / MANIFEST
        mine = self._manifest()
        if path.exists():
            try:
                theirs = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"folder: {path} cannot be read: {exc}") from exc
            if not isinstance(theirs, dict):
                raise ValueError(f"folder: {path} is not a JSON object")
            for key in ("format", "policy", "n_shards", "seed", "options"):
                if theirs.get(key) != mine[key]:
                    raise ValueError(f"folder: {path} was written with {key}={theirs.get(key)!r}, "
                                     f"not {mine[key]!r} (resharding is not supported)")
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(mine, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    @property
    def n_shards(self) -> int:
        """Number of actors."""
        return self._n_shards

    @property
    def seed(self) -> int:
        """Seed of the users' random streams."""
        return self._seed

    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return self._dim

    @property
    def actors(self) -> list[Any]:
        """The Ray actor handles, one per shard (for monitoring; do not call them directly)."""
        return list(self._actors)

    @property
    def n_users(self) -> int:
        """Number of users seen so far (one remote call per shard)."""
        return sum(i["n_users"] for i in self.info())

    def info(self) -> list[dict[str, Any]]:
        """Per shard: users, last sequence number, process id, and what its last start recovered."""
        return _ray().get([a.info.remote() for a in self._actors])

    @staticmethod
    def stream_ids(ids: Any) -> np.ndarray:
        """The stream id (uint64) of each user id: what an in-process policy needs to match."""
        return user_ids(ids).streams

    def shard_of(self, ids: Any) -> np.ndarray:
        """The shard of each user id."""
        return shard_of(user_ids(ids).streams, self._n_shards)

    # ---- requests ------------------------------------------------------------------------
    def _split(self, users: UserIds) -> list[tuple[int, np.ndarray]]:
        if self._n_shards == 1:
            return [(0, np.arange(len(users)))] if len(users) else []
        shard = shard_of(users.streams, self._n_shards)
        order = np.argsort(shard, kind="stable")
        bounds = np.searchsorted(shard[order], np.arange(self._n_shards + 1))
        return [(s, order[bounds[s]:bounds[s + 1]]) for s in range(self._n_shards) if bounds[s + 1] > bounds[s]]

    def _array(self, a: Any, name: str, dtype: Any) -> np.ndarray:
        from ensemblepp.linear import to_numpy

        arr = to_numpy(a)
        if arr.dtype.kind not in ("b" if dtype is bool else "biuf"):
            raise TypeError(f"{name}: expected a {'boolean' if dtype is bool else 'real numeric'} array, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=dtype)
        if dtype is not bool and not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        return arr

    def act(self, user_ids: Any, actions: Any, mask: Any = None) -> np.ndarray:
        """Choose an action for each request position.

        Parameters
        ----------
        user_ids : sequence of int or str, or integer array, shape (n,)
            Who acts; a user appearing several times acts that many times, in order.
        actions : array_like
            (K, d) shared by every position, or (n, K, d) one set per position.
        mask : array_like of bool, optional
            Available actions: (K,) or (n, K); every position needs one.

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
            The chosen index per position, in request order.
        """
        ray = _ray()
        users = self._users(user_ids)
        n, d = len(users), self._dim
        X = self._array(actions, "actions", self._dtype)
        if not ((X.ndim == 2 or (X.ndim == 3 and X.shape[0] == n)) and X.shape[-1] == d and X.shape[-2] >= 1):
            raise ValueError(f"actions: expected shape (K, {d}) or ({n}, K, {d}), got {X.shape}")
        K = X.shape[-2]
        M = None
        if mask is not None:
            M = self._array(mask, "mask", bool)
            if M.shape not in ((K,), (n, K)):
                raise ValueError(f"mask: expected shape ({K},) or ({n}, {K}), got {M.shape}")
            if not M.any(axis=-1).all():
                raise ValueError("mask: every position needs at least one available action")
        out = np.empty(n, np.int64)
        parts = self._split(users)
        shared_X = ray.put(X) if X.ndim == 2 and len(parts) > 1 else X
        refs = []
        for s, idx in parts:
            self._seq[s] += 1
            Xs = shared_X if X.ndim == 2 else X[idx]
            Ms = None if M is None else (M if M.ndim == 1 else M[idx])
            refs.append(self._actors[s].act.remote(self._seq[s], users.take(idx), Xs, Ms))
        for (_, idx), res in zip(parts, ray.get(refs)):
            out[idx] = res
        return out

    def update(self, user_ids: Any, x: Any, r: Any) -> None:
        """Learn from one observation per request position (a repeated user learns in order).

        Parameters
        ----------
        user_ids : sequence of int or str, or integer array, shape (n,)
        x : array_like, shape (n, d)
            Features of the played actions.
        r : array_like, shape (n,)
            Rewards.

        Raises
        ------
        ValueError
            For shapes that do not match or non-finite values; no shard is changed then. (A
            shard that refuses a valid-looking observation, e.g. one its arithmetic cannot
            represent, raises after the other shards applied theirs: there is no two-phase
            commit across shards.)
        """
        _ray().get(self._submit_update(user_ids, x, r))

    def _submit_update(self, user_ids: Any, x: Any, r: Any) -> list[Any]:
        """Validate an update and send it; the refs of the shards' replies."""
        users = self._users(user_ids)
        n, d = len(users), self._dim
        X = self._array(x, "x", np.float64)
        R = self._array(r, "r", np.float64)
        if X.shape != (n, d):
            raise ValueError(f"x: expected shape ({n}, {d}), got {X.shape}")
        if R.shape != (n,):
            raise ValueError(f"r: expected shape ({n},), got {R.shape}")
        refs = []
        for s, idx in self._split(users):
            self._seq[s] += 1
            refs.append(self._actors[s].update.remote(self._seq[s], users.take(idx), X[idx], R[idx]))
        return refs

    def _users(self, ids: Any) -> UserIds:
        users = user_ids(ids)
        if len(users) > 2**31:
            raise ValueError(f"user_ids: {len(users)} ids in one call is too many")
        return users

    # ---- state -----------------------------------------------------------------------------
    def checkpoint(self, folder: str | os.PathLike | None = None) -> None:
        """Write every shard atomically (the policy's model file plus the users of each shard).

        Parameters
        ----------
        folder : path-like, optional
            Default: the policy's own folder, whose logs then restart empty. Another folder
            receives a snapshot that ``ShardedPolicy(..., folder=that_folder)`` resumes from.
        """
        ray = _ray()
        if folder is None and self._folder is None:
            raise ValueError("folder: this policy was created without a folder; give one")
        if folder is not None and (self._folder is None or Path(folder).resolve() != self._folder.resolve()):
            target = Path(folder)
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / (MANIFEST + ".tmp")
            tmp.write_text(json.dumps(self._manifest(), indent=1), encoding="utf-8")
            os.replace(tmp, target / MANIFEST)
            ray.get([a.checkpoint.remote(str(target / f"shard-{i:05d}")) for i, a in enumerate(self._actors)])
            return
        ray.get([a.checkpoint.remote(None) for a in self._actors])

    def agents(self, user_ids: Any) -> Any:
        """An in-process batched policy holding copies of these (known) users, in this order.

        It continues exactly as the sharded users would (same stream ids and state).
        """
        ray = _ray()
        users = self._users(user_ids)
        if len(set(users.streams.tolist())) != len(users):
            raise ValueError("user_ids: repeated user")
        if not len(users):
            raise ValueError("user_ids: no users given")
        parts = self._split(users)
        got = ray.get([self._actors[s].export.remote(users.take(idx)) for s, idx in parts])
        rows: dict[str, np.ndarray] = {}
        streams = np.empty(len(users), np.uint64)
        for (_, idx), (r, st) in zip(parts, got):
            for k, a in r.items():
                if k not in rows:
                    rows[k] = np.empty((len(users),) + a.shape[1:], a.dtype)
                rows[k][idx] = a
            streams[idx] = st
        return self._cls._from_state(rows, **self._options, n_agents=len(users), seed=self._seed, stream_ids=streams)

    def close(self) -> None:
        """Stop the actors (a durable policy's folder keeps everything needed to resume)."""
        ray = _ray()
        for a in self._actors:
            ray.kill(a, no_restart=True)
        self._actors = []

    def __enter__(self) -> ShardedPolicy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ShardedPolicy({self._cls.__name__}, n_shards={self._n_shards}, seed={self._seed}, "
                f"folder={None if self._folder is None else str(self._folder)!r})")

