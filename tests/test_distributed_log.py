"""ensemblepp.distributed without Ray: stable user hashes, the update log, one shard's state,
its recovery from checkpoint + log, and the cell plan of distributed experiments."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import ensemblepp as epp
from ensemblepp.distributed import DamagedLogError, shard_of, stream_ids
from ensemblepp.distributed._ids import user_ids
from ensemblepp.distributed._log import ACT, UPDATE, LogWriter, read_log
from ensemblepp.distributed._shard import ShardState

D, M, K = 4, 3, 5
OPTS = {"dim": D, "ensemble_size": M}
USERS = ["alice", 3, 17, "bob", 2**64 - 1, 0, "carol", "dave", "\u00e9mile"]


# ---- user ids ---------------------------------------------------------------------------------
def _splitmix(x: int) -> int:
    """SplitMix64's output for state ``x`` in plain Python integers (an independent yardstick)."""
    m = 2**64 - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_stream_ids_are_splitmix_for_ints_and_blake2b_for_strings():
    ids = stream_ids(USERS)
    for u, s in zip(USERS, ids.tolist()):
        if isinstance(u, str):
            want = int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8, person=b"ensemblepp-user").digest(), "little")
        else:
            want = _splitmix(u)
        assert s == want
    # Known answer: SplitMix64 seeded with 0 starts 0xE220A8397B1DCDAF (Vigna's reference).
    assert stream_ids([0])[0] == 0xE220A8397B1DCDAF
    arr = np.arange(1000, dtype=np.int64)
    np.testing.assert_array_equal(stream_ids(arr), stream_ids(arr.tolist()))
    assert len(set(stream_ids(arr).tolist())) == 1000


def test_shards_are_stable_and_balanced():
    s = stream_ids(np.arange(40_000))
    counts = np.bincount(shard_of(s, 4), minlength=4)
    assert counts.min() > 9_600 and counts.max() < 10_400  # 4 sd of a binomial(40000, 1/4) is 350
    assert shard_of(stream_ids([12345]), 7)[0] == shard_of(stream_ids(np.array([12345])), 7)[0]


@pytest.mark.parametrize("bad, err, word", [
    ([1.5], TypeError, "user_ids[0]"), ([True], TypeError, "user_ids[0]"), ([-1], ValueError, "user_ids[0]"),
    ([2**64], ValueError, "user_ids[0]"), (np.array([-3]), ValueError, "user_ids"),
    (np.zeros((2, 2), int), ValueError, "1-D"), ("alice", TypeError, "user_ids"),
    (np.array([1.0]), TypeError, "dtype")])
def test_bad_user_ids(bad, err, word):
    with pytest.raises(err, match=word.replace("[", r"\[").replace("]", r"\]")):
        user_ids(bad)


# ---- the log ------------------------------------------------------------------------------------
def _write(path: Path, n: int = 3) -> None:
    w = LogWriter(path, base=5)
    for i in range(n):
        w.append(UPDATE if i % 2 else ACT, 6 + i, {"slots": np.arange(i + 1, dtype=np.int64),
                                                   "x": np.full((i + 1, 2), i, np.float64)})
    w.close()


def test_log_round_trip(tmp_path: Path):
    _write(tmp_path / "log")
    base, recs, valid = read_log(tmp_path / "log")
    assert base == 5 and valid == (tmp_path / "log").stat().st_size
    assert [r.seq for r in recs] == [6, 7, 8] and [r.op for r in recs] == [ACT, UPDATE, ACT]
    np.testing.assert_array_equal(recs[2].arrays["x"], np.full((3, 2), 2.0))
    assert recs[2].arrays["slots"].dtype == np.int64


def test_torn_last_record_is_dropped_and_truncated(tmp_path: Path):
    path = tmp_path / "log"
    _write(path)
    full = path.read_bytes()
    for cut in (1, 9, 30, 70):
        path.write_bytes(full[:-cut])
        base, recs, valid = read_log(path)
        assert [r.seq for r in recs] == [6, 7]
        LogWriter(path, base, valid_bytes=valid).close()
        assert path.stat().st_size == valid
    # a last record whose bytes did not all reach the disk (bad checksum at the end) is torn too
    path.write_bytes(full[:-1] + bytes([full[-1] ^ 1]))
    assert [r.seq for r in read_log(path)[1]] == [6, 7]


@pytest.mark.parametrize("damage", ["magic", "middle-crc", "tag", "order", "dtype", "length", "short"])
def test_damaged_log_raises(tmp_path: Path, damage: str):
    path = tmp_path / "log"
    _write(path)
    data = bytearray(path.read_bytes())
    first = 24  # header (16 + 8)
    if damage == "magic":
        data[0] ^= 1
    elif damage == "middle-crc":
        data[first + 16 + 20] ^= 1
    elif damage == "tag":
        data[first] = ord("X")
    elif damage == "length":
        data[first + 4:first + 8] = struct.pack("<I", 2**20)  # past the end, yet not a torn record
    elif damage == "short":
        data = data[:10]
    elif damage in ("order", "dtype"):
        # rewrite the first record's payload (and its checksum) with a bad sequence number or dtype
        length = struct.unpack_from("<I", data, first + 4)[0]
        payload = bytearray(data[first + 16:first + 16 + length])
        if damage == "order":
            payload[1:9] = struct.pack("<Q", 2)
        else:
            i = payload.index(b"<i8")
            payload[i:i + 3] = b"|O8"
        data[first + 8:first + 12] = struct.pack("<I", zlib.crc32(bytes(payload)))
        data[first + 12:first + 16] = struct.pack("<I", zlib.crc32(bytes(data[first:first + 12])))
        data[first + 16:first + 16 + length] = payload
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedLogError):
        read_log(path)


# ---- one shard ----------------------------------------------------------------------------------
def _script(state: ShardState, calls: int = 10, restart=None, seed: int = 0):
    """Acts and updates on random requests (repeated users included); returns the choices."""
    rng = np.random.default_rng(seed)
    seq, out = 0, []
    for call in range(calls):
        if restart is not None:
            state = restart(call, state)
        n = int(rng.integers(1, 9))
        req = [USERS[i] for i in rng.integers(0, len(USERS), n)]
        A = rng.standard_normal((n, K, D))
        seq += 1
        a = state.act(seq, user_ids(req), A, None)
        out.append(a)
        seq += 1
        state.update(seq, user_ids(req), A[np.arange(n), a], rng.standard_normal(n))
    return state, out


def test_shard_equals_single_agents_with_repeated_users():
    """Every position acts and learns as that user's own single agent would, in request order."""
    rng = np.random.default_rng(1)
    ref = {u: epp.LinearEnsemble(D, M, seed=7, stream_ids=int(s)) for u, s in zip(USERS, stream_ids(USERS))}
    st = ShardState("LinearEnsemble", OPTS, 7)
    seq = 0
    for _ in range(8):
        n = int(rng.integers(1, 12))
        req = [USERS[i] for i in rng.integers(0, 4, n)]  # few users: many repeats
        A = rng.standard_normal((K, D))
        mask = rng.random((n, K)) < 0.7
        mask[:, 0] = True
        seq += 1
        got = st.act(seq, user_ids(req), A, mask)
        want = [ref[u].act(A[mask[i]]) for i, u in enumerate(req)]
        np.testing.assert_array_equal(got, [np.flatnonzero(mask[i])[w] for i, w in enumerate(want)])
        x, r = A[got], rng.standard_normal(n)
        seq += 1
        st.update(seq, user_ids(req), x, r)
        for i, u in enumerate(req):
            ref[u].update(x[i], float(r[i]))
    seen = sorted({u for u in USERS[:4]}, key=str)
    rows, _ = st.export(user_ids(seen))
    for i, u in enumerate(seen):
        want = ref[u]._state_arrays()  # the state a model file holds, whatever its representation
        assert want.keys() == rows.keys()
        for k, v in want.items():
            np.testing.assert_array_equal(rows[k][i], v[0], err_msg=k)


def _rows(st: ShardState) -> dict[str, np.ndarray]:
    return st.export(user_ids(USERS))[0]


def test_recovery_from_checkpoint_and_log_is_bit_identical(tmp_path: Path):
    plain, want = _script(ShardState("LinearEnsemble", OPTS, 7))

    def restart(call: int, st: ShardState) -> ShardState:
        if call == 3:
            st.checkpoint()
        if call in (6, 8):  # the process dies: a new one recovers from the folder
            st.close()
            st = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
            assert st.recovered["checkpoint_seq"] == 6 and st.recovered["replayed"] == 2 * (call - 3)
        return st

    st, got = _script(ShardState("LinearEnsemble", OPTS, 7, tmp_path), restart=restart)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    st.close()
    again = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    plain.checkpoint(tmp_path / "copy")  # a snapshot elsewhere resumes the same state
    copy = ShardState("LinearEnsemble", OPTS, 7, tmp_path / "copy")
    for k, v in _rows(plain).items():
        np.testing.assert_array_equal(v, _rows(st)[k])
        np.testing.assert_array_equal(v, _rows(again)[k])
        np.testing.assert_array_equal(v, _rows(copy)[k])
    assert again.seq == plain.seq == copy.seq == 20
    again.close()
    copy.close()


def test_a_retried_call_is_not_applied_twice(tmp_path: Path):
    A = np.eye(D)[:K - 1]
    st = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    a = st.act(1, user_ids(["u"]), A, None)
    st.close()
    st = ShardState("LinearEnsemble", OPTS, 7, tmp_path)  # died after logging call 1; Ray retries it
    steps = _rows_of(st, ["u"])["steps"].copy()
    np.testing.assert_array_equal(st.act(1, user_ids(["u"]), A, None), a)  # answered from the log
    np.testing.assert_array_equal(_rows_of(st, ["u"])["steps"], steps)
    st.update(2, user_ids(["u"]), A[a], np.array([1.0]))
    before = _rows_of(st, ["u"])
    st.close()
    st = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    st.update(2, user_ids(["u"]), A[a], np.array([1.0]))
    for k, v in before.items():
        np.testing.assert_array_equal(v, _rows_of(st, ["u"])[k])
    with pytest.raises(ValueError, match="seq"):
        st.act(1, user_ids(["u"]), A, None)  # older than the last applied call and not it
    st.close()


def _rows_of(st: ShardState, users: list) -> dict[str, np.ndarray]:
    return st.export(user_ids(users))[0]


def test_bad_input_changes_nothing(tmp_path: Path):
    st = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    st.update(1, user_ids(["a", "b"]), np.ones((2, D)), np.ones(2))
    size = (tmp_path / f"log-{0:020d}.bin").stat().st_size
    before = _rows_of(st, ["a", "b"])
    x = np.ones((3, D))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="x"):
        st.update(2, user_ids(["a", "c", "b"]), x, np.ones(3))
    assert st.n_users == 2 and st.seq == 1
    assert (tmp_path / f"log-{0:020d}.bin").stat().st_size == size
    for k, v in before.items():
        np.testing.assert_array_equal(v, _rows_of(st, ["a", "b"])[k])
    with pytest.raises(ValueError, match="unknown user"):
        st.export(user_ids(["c"]))
    st.close()


def test_damaged_checkpoint_and_mismatched_policy(tmp_path: Path):
    st, _ = _script(ShardState("LinearEnsemble", OPTS, 7, tmp_path), calls=3)
    st.checkpoint()
    st.close()
    with pytest.raises(ValueError, match="LinearEnsemble"):
        ShardState("LinearTS", {"dim": D}, 7, tmp_path)
    with pytest.raises(ValueError, match="options"):
        ShardState("LinearEnsemble", {**OPTS, "noise_std": 2.0}, 7, tmp_path)
    (ckpt,) = tmp_path.glob("ckpt-*")
    users = ckpt / "users.npz"
    good = users.read_bytes()
    users.write_bytes(good[: len(good) // 2])
    with pytest.raises(DamagedLogError, match="users.npz"):
        ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    users.write_bytes(good)
    policy = ckpt / "policy.npz"
    good = policy.read_bytes()
    policy.write_bytes(good[:100])
    with pytest.raises(DamagedLogError, match="policy.npz"):
        ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    policy.write_bytes(good)
    good_shard = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    assert good_shard.n_users > 0
    good_shard.close()
    (tmp_path / "CURRENT").write_text('{"format": "ensemblepp-shard/1", "seq": 3, "checkpoint": "../x"}')
    with pytest.raises(DamagedLogError, match="CURRENT"):
        ShardState("LinearEnsemble", OPTS, 7, tmp_path)


def test_a_folder_has_one_live_writer(tmp_path: Path):
    st = ShardState("LinearEnsemble", OPTS, 7, tmp_path)
    from ensemblepp.distributed import _shard

    with pytest.raises(RuntimeError, match="in use"):
        _shard._lock_folder(tmp_path, wait=0.1)
    st.close()
    ShardState("LinearEnsemble", OPTS, 7, tmp_path).close()


def test_options_the_shard_sets_are_refused():
    with pytest.raises(ValueError, match="n_agents"):
        ShardState("LinearEnsemble", {**OPTS, "n_agents": 3}, 7)
    with pytest.raises(ValueError, match="policy"):
        ShardState("NeuralEnsemble", OPTS, 7)


def test_two_ids_with_one_stream_id_are_refused():
    """A 64-bit hash collision between two string ids must not make them share an agent."""
    from ensemblepp.distributed._ids import UserIds

    a = user_ids(["a"])
    impostor = UserIds(np.array([1], np.uint8), np.zeros(1, np.uint64), ["b"], a.streams.copy())
    st = ShardState("LinearEnsemble", OPTS, 7)
    st.update(1, a, np.ones((1, D)), np.ones(1))
    with pytest.raises(ValueError, match="'b' and 'a' have the same 64-bit stream id"):
        st.update(2, impostor, np.ones((1, D)), np.ones(1))
    both = UserIds(np.array([1, 1], np.uint8), np.zeros(2, np.uint64), ["c", "d"], np.repeat(a.streams, 2))
    fresh = ShardState("LinearEnsemble", OPTS, 7)
    with pytest.raises(ValueError, match="same 64-bit stream id"):
        fresh.act(1, both, np.eye(D), None)
    assert fresh.n_users == 0 and st.n_users == 1


def test_cell_plan():
    """Agents stepped over all seeds at once (linear, neural via MultiSeed) get one chunk per
    worker, a batched agent without per-seed streams (random) one cell, so results stay those
    of a serial run, and agents stepped seed by seed (a compact environment) a cell per seed."""
    pytest.importorskip("torch")
    from ensemblepp.distributed.experiments import plan_cells
    from ensemblepp.experiments import ExperimentConfig

    cfg = ExperimentConfig.from_dict({
        "horizon": 5, "seeds": [4, 5, 6, 7, 8], "environment": {"name": "finite-linear", "dim": 3, "n_actions": 4},
        "agents": [{"name": "ensemble++"}, {"name": "random"}, {"name": "neural-greedy"}]})
    assert plan_cells(cfg, workers=2) == [(0, [0, 1, 2]), (0, [3, 4]), (1, [0, 1, 2, 3, 4]),
                                          (2, [0, 1, 2]), (2, [3, 4])]
    assert plan_cells(cfg, workers=2, seeds_per_task=2)[:3] == [(0, [0, 1]), (0, [2, 3]), (0, [4])]
    assert plan_cells(cfg, workers=1)[:2] == [(0, [0, 1, 2, 3, 4]), (1, [0, 1, 2, 3, 4])]  # 3 cells: enough
    compact = ExperimentConfig.from_dict({**cfg.to_dict(), "environment": {"name": "compact-linear", "dim": 3}})
    assert plan_cells(compact, workers=2)[-5:] == [(2, [0]), (2, [1]), (2, [2]), (2, [3]), (2, [4])]
