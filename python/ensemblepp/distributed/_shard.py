"""One shard's state: the per-user agents of a batched linear policy, its log and checkpoints.

:class:`ShardState` is plain Python (no Ray): the Ray actor of :mod:`ensemblepp.distributed.sharded`
wraps one, and the tests drive it directly too.

The shard keeps the state rows of all its users in arrays it owns (capacity grown 1.5x at a
time, so adding a user is amortised O(1)). An operation on n users gathers their rows into a batched
policy of n agents with those users' stream ids, runs the policy's own ``act`` or ``update`` on
it, and writes the rows back. Because a user's random stream is keyed by (seed, stream id) only,
its decisions do not depend on which rows are gathered with it, so the shard count and the
users' arrival order do not matter. The gathered policy is built as :func:`ensemblepp.load`
builds one from a file: ``_from_state`` with ``_state_arrays()`` rows (the seam of
the model-file format).

Every mutating call carries a sequence number from the client. The shard computes the result
on the gathered copy, appends a record to its log, and only then writes the rows back, so a
process that dies at any point either has the record (and replays it on restart) or left the
state untouched (and the client's retry recomputes it). A retried call whose record is already
applied is answered from the log without applying it twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._ids import UserIds, user_ids
from ._log import ACT, UPDATE, DamagedLogError, LogRecord, LogWriter, check_fields, read_log

__all__ = ["ShardState", "policy_class", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ensemblepp-shard/1"
_STR = 1


def policy_class(policy: Any) -> type:
    """The linear policy class named or given by ``policy``.

    Raises
    ------
    ValueError
        For anything but a linear policy class of :mod:`ensemblepp.linear` or its name.
    """
    from ensemblepp import linear

    if isinstance(policy, str):
        cls = getattr(linear, policy, None)
    else:
        cls = policy
    if not (isinstance(cls, type) and issubclass(cls, linear.LinearPolicy) and cls is not linear.LinearPolicy):
        names = sorted(c for c in linear.__all__ if c not in ("LinearPolicy", "load"))
        raise ValueError(f"policy: expected a linear policy class or one of {', '.join(names)}, got {policy!r}")
    return cls


def _occurrence(slots: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same slot."""
    n = slots.shape[0]
    order = np.argsort(slots, kind="stable")
    s = slots[order]
    start = np.ones(n, bool)
    start[1:] = s[1:] != s[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    occ = np.empty(n, np.int64)
    occ[order] = np.arange(n) - first
    return occ


def _encode_users(kinds: np.ndarray, ints: np.ndarray, strs: dict[int, str] | list[str] | None,
                  streams: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    """User ids as plain arrays (string ids as one UTF-8 blob with offsets)."""
    n = kinds.shape[0]
    chunks = []
    for i in range(n):
        if kinds[i] == _STR:
            s = strs[i] if isinstance(strs, list) else strs[i]  # type: ignore[index]
            chunks.append(s.encode("utf-8"))
        else:
            chunks.append(b"")
    offsets = np.zeros(n + 1, np.uint64)
    offsets[1:] = np.cumsum([len(c) for c in chunks], dtype=np.uint64) if n else []
    blob = np.frombuffer(b"".join(chunks), np.uint8).copy()
    return {f"{prefix}kinds": np.ascontiguousarray(kinds, np.uint8), f"{prefix}ints": np.ascontiguousarray(ints, np.uint64),
            f"{prefix}blob": blob, f"{prefix}offsets": offsets, f"{prefix}streams": np.ascontiguousarray(streams, np.uint64)}


def _decode_users(arrays: dict[str, np.ndarray], where: str, prefix: str = "") -> UserIds:
    """Inverse of :func:`_encode_users`, checking every size and each stream id against its user id."""
    kinds, ints, blob = arrays[f"{prefix}kinds"], arrays[f"{prefix}ints"], arrays[f"{prefix}blob"]
    offsets, streams = arrays[f"{prefix}offsets"], arrays[f"{prefix}streams"]
    n = kinds.shape[0]
    if ints.shape != (n,) or streams.shape != (n,) or offsets.shape != (n + 1,):
        raise DamagedLogError(f"{where}: user id arrays of different lengths")
    if n and (offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) < 0) or int(offsets[-1]) != blob.shape[0]):
        raise DamagedLogError(f"{where}: string offsets do not describe the string blob")
    if np.any(kinds > _STR):
        raise DamagedLogError(f"{where}: unknown user id kind")
    is_str = kinds == _STR
    if np.any(np.diff(offsets.astype(np.int64))[~is_str] != 0):
        raise DamagedLogError(f"{where}: an integer user id has string bytes")
    if not is_str.any():
        users = user_ids(ints)  # vectorised: no Python loop over integer users
    else:
        raw = blob.tobytes()
        keys: list[int | str] = ints.tolist()
        for i in np.flatnonzero(is_str).tolist():
            try:
                keys[i] = raw[int(offsets[i]):int(offsets[i + 1])].decode("utf-8")
            except UnicodeDecodeError:
                raise DamagedLogError(f"{where}: string user id {i} is not UTF-8") from None
        users = user_ids(keys)
    if not np.array_equal(users.streams, streams):
        raise DamagedLogError(f"{where}: stored stream ids do not match the user ids")
    return users


_USER_FIELDS = [("kinds", "|u1", 1), ("ints", "<u8", 1), ("blob", "|u1", 1), ("offsets", "<u8", 1), ("streams", "<u8", 1)]


class ShardState:
    """The users of one shard, their agents, the update log and checkpoints.

    Parameters
    ----------
    policy : str or type
        A linear policy class of :mod:`ensemblepp.linear` (or its name).
    options : dict
        Constructor options of the policy (``dim`` required; not ``n_agents``, ``seed`` or
        ``stream_ids``).
    seed : int
        Seed shared by all users (a user's stream is keyed by (seed, its stream id)).
    folder : path-like, optional
        This shard's folder: its checkpoint is loaded and its log replayed on construction, and
        every operation is logged there. Without it nothing survives the process.
    fsync : bool, default False
        ``os.fsync`` each log record (survives a machine crash, not only a process crash).
    """

    def __init__(self, policy: Any, options: dict[str, Any], seed: int, folder: str | os.PathLike | None = None,
                 fsync: bool = False) -> None:
        self._cls = policy_class(policy)
        for key in ("n_agents", "seed", "stream_ids", "_state"):
            if key in options:
                raise ValueError(f"options: {key!r} is set by the shard, not by the caller")
        self._options = dict(options)
        self._seed = seed
        probe = self._make_fresh(np.array([0, 1], np.uint64))
        arrays = probe._state_arrays()
        for k, a in arrays.items():
            if a.shape[:1] != (2,):
                raise RuntimeError(f"state array {k!r} of {self._cls.__name__} is not one row per agent")
        self._dim = probe.dim
        self._dtype = probe.dtype
        self._arrays = {k: np.empty((0,) + a.shape[1:], a.dtype) for k, a in arrays.items()}
        self._n = 0
        self._kinds = np.empty(0, np.uint8)
        self._ints = np.empty(0, np.uint64)
        self._streams = np.empty(0, np.uint64)
        self._strs: dict[int, str] = {}
        self._slot: dict[int, int] = {}
        self._seq = 0
        self._last_reply: tuple[int, Any] = (0, None)
        self._folder = None if folder is None else Path(folder)
        self._log: LogWriter | None = None
        #: What the last start recovered: checkpoint, log records replayed, torn bytes dropped, seconds.
        self.recovered: dict[str, float] = {"checkpoint_seq": 0, "replayed": 0, "dropped_bytes": 0,
                                            "load_seconds": 0.0, "replay_seconds": 0.0}
        self._lock: Any = None
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_folder(self._folder)
            try:
                self._recover(fsync)
            except BaseException:
                self.close()
                raise

    # ---- policies over rows --------------------------------------------------------------
    def _make_fresh(self, streams: np.ndarray) -> Any:
        return self._cls(**self._options, n_agents=len(streams), seed=self._seed, stream_ids=streams)

    def _make(self, rows: dict[str, np.ndarray], streams: np.ndarray) -> Any:
        return self._cls._from_state(rows, **self._options, n_agents=len(streams), seed=self._seed, stream_ids=streams)

    @staticmethod
    def _rows_of(policy: Any) -> dict[str, np.ndarray]:
        from ensemblepp.linear import to_numpy

        return {k: to_numpy(a) for k, a in policy._state_arrays().items()}

    def _gather(self, slots: np.ndarray, new_streams: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of ``slots`` (distinct); slots from ``self._n`` on are new users at the prior."""
        old = slots < self._n
        fresh = self._rows_of(self._make_fresh(new_streams)) if new_streams.size else None
        out = {}
        for k, a in self._arrays.items():
            o = np.empty((slots.shape[0],) + a.shape[1:], a.dtype)
            o[old] = a[slots[old]]
            if fresh is not None:
                o[~old] = fresh[k][slots[~old] - self._n]
            out[k] = o
        return out

    def _streams_of(self, slots: np.ndarray, new_streams: np.ndarray) -> np.ndarray:
        old = slots < self._n
        s = np.empty(slots.shape[0], np.uint64)
        s[old] = self._streams[slots[old]]
        s[~old] = new_streams[slots[~old] - self._n]
        return s

    # ---- users -----------------------------------------------------------------------------
    def _resolve(self, users: UserIds) -> tuple[np.ndarray, np.ndarray]:
        """Slot of every request position, and the positions of new users' first appearances."""
        streams = users.streams.tolist()
        slots = np.empty(len(streams), np.int64)
        new: dict[int, int] = {}
        new_pos: list[int] = []
        get = self._slot.get
        for i, s in enumerate(streams):
            j = get(s)
            if j is None:
                j = new.get(s)
                if j is None:
                    j = self._n + len(new)
                    new[s] = j
                    new_pos.append(i)
            slots[i] = j
        pos = np.asarray(new_pos, np.int64)
        # Two different ids with one stream id (a 64-bit hash collision of strings) must not
        # silently share an agent: compare every position with the id its slot holds.
        old = slots < self._n
        kinds = np.empty(len(streams), np.uint8)
        ints = np.empty(len(streams), np.uint64)
        kinds[old], ints[old] = self._kinds[slots[old]], self._ints[slots[old]]
        kinds[~old], ints[~old] = users.kinds[pos][slots[~old] - self._n], users.ints[pos][slots[~old] - self._n]
        bad = (kinds != users.kinds) | (ints != users.ints)
        if users.strs is not None:
            first = {self._n + k: int(p) for k, p in enumerate(new_pos)}
            for i in np.flatnonzero(users.kinds == _STR).tolist():
                j = int(slots[i])
                held = self._strs.get(j) if j < self._n else users.strs[first[j]]
                bad[i] |= held != users.strs[i]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            j = int(slots[i])
            other = self._key(j) if j < self._n else users.key(new_pos[j - self._n])
            raise ValueError(f"user_ids: {users.key(i)!r} and {other!r} have the same 64-bit stream id; "
                             "rename one of them")
        return slots, pos

    def _key(self, slot: int) -> int | str:
        return self._strs[slot] if self._kinds[slot] == _STR else int(self._ints[slot])

    def _commit(self, slots: np.ndarray, rows: dict[str, np.ndarray], new_users: UserIds) -> None:
        k = len(new_users)
        if k:
            need = self._n + k
            cap = self._kinds.shape[0]
            if need > cap:
                # 1.5x: amortised O(1) per user with at most a third of the rows idle.
                cap = max(need, cap + cap // 2, 16)
                for name, a in self._arrays.items():
                    grown = np.empty((cap,) + a.shape[1:], a.dtype)
                    grown[:self._n] = a[:self._n]
                    self._arrays[name] = grown
                for name in ("_kinds", "_ints", "_streams"):
                    a = getattr(self, name)
                    grown = np.zeros(cap, a.dtype)
                    grown[:self._n] = a[:self._n]
                    setattr(self, name, grown)
            sl = slice(self._n, need)
            self._kinds[sl] = new_users.kinds
            self._ints[sl] = new_users.ints
            self._streams[sl] = new_users.streams
            if new_users.strs is not None:
                for i in np.flatnonzero(new_users.kinds == _STR).tolist():
                    self._strs[self._n + i] = new_users.strs[i]
            for i, s in enumerate(new_users.streams.tolist()):
                self._slot[s] = self._n + i
            self._n = need
        for name, a in self._arrays.items():
            a[slots] = rows[name]

    # ---- operations ------------------------------------------------------------------------
    def _act_rows(self, slots: np.ndarray, new_streams: np.ndarray, actions: np.ndarray | None,
                  mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Act for every position (``actions=None``: replay, only the random counters matter)."""
        occ = _occurrence(slots)
        first = np.flatnonzero(occ == 0)
        base = slots[first]  # distinct users in order of first appearance: the row order
        order = np.argsort(base)
        local = order[np.searchsorted(base[order], slots)]
        rows = self._gather(base, new_streams)
        streams = self._streams_of(base, new_streams)
        result = np.full(slots.shape[0], -1, np.int64)
        shared = actions is None or actions.ndim == 2
        dummy = np.zeros((1, self._dim), self._dtype)
        for r in range(int(occ.max()) + 1 if slots.size else 0):
            sel = first if r == 0 else np.flatnonzero(occ == r)
            L = local[sel]
            sub = rows if r == 0 else {k: v[L] for k, v in rows.items()}
            p = self._make(sub, streams[L])
            if actions is None:
                p.act(dummy)
            else:
                a = actions if shared else actions[sel]
                m = None if mask is None else (mask if mask.ndim == 1 else mask[sel])
                result[sel] = p.act(a) if m is None else p.act(a, mask=m)
            out = self._rows_of(p)
            if r == 0:
                # The policy usually runs in place on the gathered rows; take its arrays either way.
                rows = {k: v if v.flags.writeable else v.copy() for k, v in out.items()}
            else:
                for k, v in out.items():
                    rows[k][L] = v
        return base, result, rows

    def _update_rows(self, slots: np.ndarray, new_streams: np.ndarray, x: np.ndarray,
                     r: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        occ = _occurrence(slots)
        first = np.flatnonzero(occ == 0)
        base = slots[first]
        order = np.argsort(base)
        local = order[np.searchsorted(base[order], slots)]
        rows = self._gather(base, new_streams)
        p = self._make(rows, self._streams_of(base, new_streams))
        depth = int(occ.max()) + 1 if slots.size else 0
        if depth == 1:
            X = np.empty((base.shape[0], self._dim), np.float64)
            R = np.empty(base.shape[0], np.float64)
            X[local], R[local] = x, r
            p.update(X, R)
        elif depth > 1:
            # Several observations of one user apply in order: a (users, depth) batch whose
            # mask leaves out the positions a user does not have.
            X = np.zeros((base.shape[0], depth, self._dim), np.float64)
            R = np.zeros((base.shape[0], depth), np.float64)
            M = np.zeros((base.shape[0], depth), bool)
            X[local, occ], R[local, occ], M[local, occ] = x, r, True
            p.update(X, R, mask=M)
        return base, self._rows_of(p)

    def _check_seq(self, seq: int) -> bool:
        """True when ``seq`` is new; False for a retry of the last call (already applied)."""
        if seq > self._seq:
            return True
        if seq == self._last_reply[0]:
            return False
        raise ValueError(f"seq: call {seq} is older than the last applied call {self._seq}")

    def act(self, seq: int, users: UserIds, actions: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Choose an action for every request position (users may repeat: they act in turn).

        Parameters
        ----------
        seq : int
            The client's sequence number of this call (strictly increasing; a retry repeats it).
        users : UserIds
            Who acts, in request order.
        actions : numpy.ndarray
            Shared (K, d) or per position (n, K, d), of the policy's dtype.
        mask : numpy.ndarray of bool, optional
            (K,) or (n, K).

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
        """
        if not self._check_seq(seq):
            return self._last_reply[1]
        slots, new_pos = self._resolve(users)
        new_users = users.take(new_pos)
        base, result, rows = self._act_rows(slots, new_users.streams, actions, mask)
        if self._log is not None:
            self._log.append(ACT, seq, {"slots": slots, "result": result, **_encode_users(
                new_users.kinds, new_users.ints, new_users.strs, new_users.streams, "new_")})
        self._commit(base, rows, new_users)
        self._seq = seq
        self._last_reply = (seq, result)
        return result

    def update(self, seq: int, users: UserIds, x: np.ndarray, r: np.ndarray) -> None:
        """Learn from one observation per request position, in request order.

        Parameters
        ----------
        seq : int
            The client's sequence number of this call.
        users : UserIds
            Who observed, in request order.
        x : numpy.ndarray of float64, shape (n, d)
        r : numpy.ndarray of float64, shape (n,)
        """
        if not self._check_seq(seq):
            return
        slots, new_pos = self._resolve(users)
        new_users = users.take(new_pos)
        base, rows = self._update_rows(slots, new_users.streams, x, r)
        if self._log is not None:
            self._log.append(UPDATE, seq, {"slots": slots, "x": x, "r": r, **_encode_users(
                new_users.kinds, new_users.ints, new_users.strs, new_users.streams, "new_")})
        self._commit(base, rows, new_users)
        self._seq = seq
        self._last_reply = (seq, None)

    # ---- reading state -------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        """Number of users this shard holds."""
        return self._n

    @property
    def seq(self) -> int:
        """Sequence number of the last applied call."""
        return self._seq

    def export(self, users: UserIds) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """State rows and stream ids of known users (copies), in the order given."""
        slots = np.empty(len(users), np.int64)
        for i, s in enumerate(users.streams.tolist()):
            j = self._slot.get(s)
            if j is None or self._key(j) != users.key(i):
                raise ValueError(f"user_ids: unknown user {users.key(i)!r}")
            slots[i] = j
        return {k: a[slots] for k, a in self._arrays.items()}, self._streams[slots]

    def policy(self) -> Any:
        """All users as one batched policy (rows in slot order), or None without users."""
        if not self._n:
            return None
        return self._make({k: a[:self._n] for k, a in self._arrays.items()}, self._streams[:self._n])

    # ---- checkpoints and recovery ------------------------------------------------------------
    def checkpoint(self, folder: str | os.PathLike | None = None) -> int:
        """Write this shard's users and agents atomically; return the sequence number covered.

        With ``folder=None`` (the shard's own folder) the log then restarts empty after the
        checkpoint, and older checkpoints and logs are removed.
        """
        own = folder is None or (self._folder is not None and Path(folder).resolve() == self._folder.resolve())
        target = self._folder if folder is None else Path(folder)
        if target is None:
            raise ValueError("folder: this shard has no folder; give one")
        target.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{self._seq:020d}"
        final = target / name
        if not final.exists():
            tmp = target / f"{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            users = _encode_users(self._kinds[:self._n], self._ints[:self._n],
                                  self._strs, self._streams[:self._n])
            meta = {"format": CHECKPOINT_FORMAT, "seq": self._seq, "n_users": self._n,
                    "policy": self._cls.__name__}
            with open(tmp / "users.npz", "wb") as f:
                np.savez(f, __meta__=np.array(json.dumps(meta)), **users)
                f.flush()
                os.fsync(f.fileno())
            p = self.policy()
            if p is not None:
                p.save(tmp / "policy.npz")
            os.replace(tmp, final)
        current = {"format": CHECKPOINT_FORMAT, "checkpoint": name, "seq": self._seq}
        _write_json(target / "CURRENT", current)
        if own:
            old = self._log
            self._log = LogWriter(target / f"log-{self._seq:020d}.bin", self._seq, fsync=bool(old and old._fsync))
            if old is not None:
                old.close()
            for path in target.iterdir():
                if path.name.startswith(("ckpt-", "log-")) and path.name not in (name, self._log.path.name):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
        return self._seq

    def _recover(self, fsync: bool) -> None:
        folder = self._folder
        assert folder is not None
        start = time.perf_counter()
        base = 0
        current = folder / "CURRENT"
        if current.exists():
            meta = _read_json(current)
            if meta.get("format") != CHECKPOINT_FORMAT or not isinstance(meta.get("seq"), int) \
                    or not isinstance(meta.get("checkpoint"), str) or meta["checkpoint"] != f"ckpt-{meta['seq']:020d}":
                raise DamagedLogError(f"{current}: not a shard checkpoint pointer")
            base = meta["seq"]
            self._load_checkpoint(folder / meta["checkpoint"], base)
        self.recovered["checkpoint_seq"] = base
        self.recovered["load_seconds"] = time.perf_counter() - start
        path = folder / f"log-{base:020d}.bin"
        valid = None
        if path.exists():
            log_base, records, valid = read_log(path)
            if log_base != base:
                raise DamagedLogError(f"{path}: follows checkpoint {log_base}, expected {base}")
            self.recovered["dropped_bytes"] = path.stat().st_size - valid
            for i, rec in enumerate(records):
                self._replay(rec, f"{path}: record {i}")
            self.recovered["replayed"] = len(records)
        self.recovered["replay_seconds"] = time.perf_counter() - start - self.recovered["load_seconds"]
        self._seq = max(self._seq, base)
        self._log = LogWriter(path, base, valid_bytes=valid, fsync=fsync)

    def _load_checkpoint(self, where: Path, seq: int) -> None:
        from ensemblepp import load

        upath = where / "users.npz"
        try:
            # Our own handle: np.load leaves the file it opened unclosed when the archive is damaged.
            with open(upath, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise DamagedLogError(f"{upath}: cannot be read: {exc}") from exc
        try:
            meta = json.loads(str(arrays.pop("__meta__")))
        except (KeyError, ValueError) as exc:
            raise DamagedLogError(f"{upath}: no valid metadata") from exc
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("seq") != seq:
            raise DamagedLogError(f"{upath}: format or sequence number does not match its pointer")
        if meta.get("policy") != self._cls.__name__:
            raise ValueError(f"{upath}: holds {meta.get('policy')!r} agents, not {self._cls.__name__}")
        rec = LogRecord(ACT, seq, arrays)
        check_fields(rec, _USER_FIELDS, str(upath))
        users = _decode_users(arrays, str(upath))
        if len(users) != meta.get("n_users") or len(set(users.streams.tolist())) != len(users):
            raise DamagedLogError(f"{upath}: user count or distinct stream ids do not match")
        rows = None
        if len(users):
            try:
                agent = load(where / "policy.npz")
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                raise DamagedLogError(f"{where / 'policy.npz'}: cannot be read: {exc}") from exc
            if type(agent) is not self._cls:
                raise ValueError(f"{where}: holds {type(agent).__name__} agents, not {self._cls.__name__}")
            expect = self._make_fresh(np.zeros(1, np.uint64))
            if agent._hyperparameters() | {"n_agents": 1} != expect._hyperparameters():
                raise ValueError(f"{where}: agents were saved with other options than this policy's")
            rows = self._rows_of(agent)
            if any(a.shape[0] != len(users) for a in rows.values()):
                raise DamagedLogError(f"{where}: policy rows do not match the {len(users)} users")
            stored = getattr(agent, "stream_ids", None)
            if stored is not None and not np.array_equal(np.asarray(stored, np.uint64), users.streams):
                raise DamagedLogError(f"{where}: the policy's stream ids are not its users'")
        self._n = 0
        self._commit(np.arange(len(users)), rows or {k: a[:0] for k, a in self._arrays.items()}, users)
        self._seq = seq
        self._last_reply = (seq, None)

    def _replay(self, rec: LogRecord, where: str) -> None:
        new_fields = [(f"new_{n}", d, k) for n, d, k in _USER_FIELDS]
        if rec.op == ACT:
            check_fields(rec, [("slots", "<i8", 1), ("result", "<i8", 1), *new_fields], where)
        else:
            check_fields(rec, [("slots", "<i8", 1), ("x", "<f8", 2), ("r", "<f8", 1), *new_fields], where)
        new_users = _decode_users(rec.arrays, where, "new_")
        slots = rec.arrays["slots"]
        n = slots.shape[0]
        if n and (slots.min() < 0 or slots.max() >= self._n + len(new_users)):
            raise DamagedLogError(f"{where}: slot out of range")
        if any(s in self._slot for s in new_users.streams.tolist()) or len(set(new_users.streams.tolist())) != len(new_users):
            raise DamagedLogError(f"{where}: a new user is already known")
        if rec.op == ACT:
            if rec.arrays["result"].shape != (n,):
                raise DamagedLogError(f"{where}: result has the wrong length")
            base, _, rows = self._act_rows(slots, new_users.streams, None, None)
            reply: Any = rec.arrays["result"]
        else:
            x, r = rec.arrays["x"], rec.arrays["r"]
            if x.shape != (n, self._dim) or r.shape != (n,) or not (np.isfinite(x).all() and np.isfinite(r).all()):
                raise DamagedLogError(f"{where}: observations have the wrong shape or are not finite")
            base, rows = self._update_rows(slots, new_users.streams, x, r)
            reply = None
        self._commit(base, rows, new_users)
        self._seq = rec.seq
        self._last_reply = (rec.seq, reply)

    def close(self) -> None:
        """Close the log file and release the folder."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _lock_folder(folder: Path, wait: float = 10.0) -> Any:
    """Hold an exclusive lock on ``folder`` for this process (released when it dies).

    Two live writers of one shard folder would interleave their logs. A restarted actor may
    start while the process it replaces is still exiting, so a held lock is retried for ``wait``
    seconds before giving up.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return None
    f = open(folder / "LOCK", "a+b")  # noqa: SIM115 - held for the shard's lifetime
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise RuntimeError(f"folder: {folder} is in use by another live shard (its LOCK is held)") from None
            time.sleep(0.05)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DamagedLogError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(obj, dict):
        raise DamagedLogError(f"{path}: not a JSON object")
    return obj
