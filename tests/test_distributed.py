"""ensemblepp.distributed on a local Ray instance: sharded per-user policies and experiments.

The single-shard logic (hashes, log, recovery) is tested without Ray in test_distributed_log.py;
here: the same decisions for 1 and 4 shards and an in-process batched agent, arrival order,
recovery of killed actors bit for bit, bad input, and ``ensemblepp run --workers``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import ensemblepp as epp  # noqa: E402
from ensemblepp.cli import main  # noqa: E402
from ensemblepp.distributed import ShardedPolicy, stream_ids  # noqa: E402

D, M, K = 4, 3, 6
OPTS = {"dim": D, "ensemble_size": M}
USERS = ["alice", 3, 17, "bob", 2**63 + 5, 0, "carol", "dave", 42, "\u00e9mile"]
NEW = ["zoe", 7, "yann"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _state(agent) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in agent._state_arrays().items()}


def _assert_same_state(a, b) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_one_shard_four_shards_and_in_process_agree():
    rng = np.random.default_rng(0)
    one = ShardedPolicy(epp.LinearEnsemble, n_shards=1, seed=5, **OPTS)
    four = ShardedPolicy("LinearEnsemble", n_shards=4, seed=5, **OPTS)
    assert len(set(four.shard_of(USERS).tolist())) > 1
    ref = epp.LinearEnsemble(D, M, n_agents=len(USERS), seed=5, stream_ids=stream_ids(USERS))
    users = list(USERS)
    try:
        for call in range(5):
            if call == 3:  # new users arrive: the reference appends agents at the prior
                users += NEW
                ref.add_agents(stream_ids(NEW))
            perm = rng.permutation(len(users))  # every user once, in a new order each call
            req = [users[i] for i in perm]
            A = rng.standard_normal((len(users), K, D))
            want = ref.act(A)
            x, r = A[np.arange(len(users)), want], rng.standard_normal(len(users))
            ref.update(x, r)
            for p in (one, four):
                np.testing.assert_array_equal(p.act(req, A[perm]), want[perm])
                p.update(req, x[perm], r[perm])
        _assert_same_state(one.agents(users), ref)
        # Requests with repeated users, shared actions and masks: 1 and 4 shards still agree.
        for _ in range(4):
            n = int(rng.integers(1, 20))
            req = [users[i] for i in rng.integers(0, len(users), n)]
            A = rng.standard_normal((K, D))
            mask = rng.random((n, K)) < 0.6
            mask[np.arange(n), rng.integers(0, K, n)] = True
            a1 = one.act(req, A, mask)
            np.testing.assert_array_equal(four.act(req, A, mask), a1)
            assert mask[np.arange(n), a1].all()
            x, r = A[a1], rng.standard_normal(n)
            one.update(req, x, r)
            four.update(req, x, r)
        _assert_same_state(one.agents(users), four.agents(users))
        assert one.n_users == four.n_users == len(users)
    finally:
        one.close()
        four.close()


def test_arrival_order_does_not_matter():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((len(USERS), K, D))
    # One shard each: the users' rows land in different slots, which must not matter.
    forward = ShardedPolicy(epp.LinearTS, n_shards=1, seed=9, dim=D)
    backward = ShardedPolicy(epp.LinearTS, n_shards=1, seed=9, dim=D)
    try:
        for i in range(len(USERS)):  # one new user per call, in opposite orders
            j = len(USERS) - 1 - i
            forward.act([USERS[i]], A[i:i + 1])
            backward.act([USERS[j]], A[j:j + 1])
        for _ in range(3):
            req = [USERS[i] for i in rng.permutation(len(USERS))]
            B = rng.standard_normal((len(USERS), K, D))
            a = forward.act(req, B)
            np.testing.assert_array_equal(backward.act(req, B), a)
            forward.update(req, B[np.arange(len(req)), a], np.ones(len(req)))
            backward.update(req, B[np.arange(len(req)), a], np.ones(len(req)))
        _assert_same_state(forward.agents(USERS), backward.agents(USERS))
    finally:
        forward.close()
        backward.close()


def _stream(p: ShardedPolicy, calls: int, events: dict[int, str] | None = None) -> list[np.ndarray]:
    """Acts and updates for random users (new ones keep arriving); ``events`` kill or checkpoint."""
    rng = np.random.default_rng(2)
    pool = [f"user-{i}" for i in range(30)] + list(range(1000, 1030))
    out = []
    for call in range(calls):
        event = (events or {}).get(call)
        if event == "checkpoint":
            p.checkpoint()
        if event == "kill-between":
            ray.kill(p.actors[0], no_restart=False)
        n = int(rng.integers(1, 25))
        req = [pool[i] for i in rng.integers(0, min(len(pool), 6 + 3 * call), n)]
        A = rng.standard_normal((n, K, D))
        a = p.act(req, A)
        out.append(a)
        refs = p._submit_update(req, A[np.arange(n), a], rng.standard_normal(n))
        if event == "kill-in-flight":
            for actor in p.actors:
                ray.kill(actor, no_restart=False)
        ray.get(refs)
    return out


def test_killed_actors_recover_bit_identical(tmp_path: Path):
    calls = 16
    plain = ShardedPolicy(epp.LinearEnsemble, n_shards=1, seed=3, **OPTS)
    want = _stream(plain, calls)
    durable = ShardedPolicy(epp.LinearEnsemble, n_shards=2, seed=3, folder=tmp_path, **OPTS)
    pids = [i["pid"] for i in durable.info()]
    try:
        got = _stream(durable, calls, {5: "checkpoint", 8: "kill-between", 12: "kill-in-flight"})
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)
        info = durable.info()
        assert all(i["pid"] != p for i, p in zip(info, pids))  # every actor was restarted
        assert info[0]["recovered"]["checkpoint_seq"] > 0 and info[0]["recovered"]["replayed"] > 0
        seen = _seen(calls)
        _assert_same_state(durable.agents(seen), plain.agents(seen))
        durable.checkpoint(tmp_path / "snapshot")
        durable.close()
        # A new policy on a snapshot folder resumes where the old one stopped.
        again = ShardedPolicy(epp.LinearEnsemble, n_shards=2, seed=3, folder=tmp_path / "snapshot", **OPTS)
        _assert_same_state(again.agents(seen), plain.agents(seen))
        again.close()
        with pytest.raises(ValueError, match="n_shards"):
            ShardedPolicy(epp.LinearEnsemble, n_shards=3, seed=3, folder=tmp_path, **OPTS)
    finally:
        plain.close()


def _seen(calls: int) -> list:
    """The users that :func:`_stream` touches in ``calls`` calls (same generator draws)."""
    rng = np.random.default_rng(2)
    pool = [f"user-{i}" for i in range(30)] + list(range(1000, 1030))
    seen: dict = {}
    for call in range(calls):
        n = int(rng.integers(1, 25))
        for i in rng.integers(0, min(len(pool), 6 + 3 * call), n):
            seen[pool[i]] = True
        rng.standard_normal((n, K, D))
        rng.standard_normal(n)
    return list(seen)


def test_bad_input_is_refused_before_any_shard_changes():
    p = ShardedPolicy(epp.LinearEnsemble, n_shards=2, seed=0, **OPTS)
    try:
        p.update(["a", "b"], np.ones((2, D)), [1.0, 2.0])
        before = p.info()
        x = np.ones((3, D))
        x[1, 0] = np.inf
        bad_calls = [
            (lambda: p.update(["a", "c", "b"], x, np.ones(3)), ValueError, "x"),
            (lambda: p.update(["a"], np.ones((1, D + 1)), [1.0]), ValueError, "x"),
            (lambda: p.update(["a", "b"], np.ones((2, D)), [1.0]), ValueError, "r"),
            (lambda: p.act(["a"], np.ones((K, D)), np.zeros(K, bool)), ValueError, "mask"),
            (lambda: p.act(["a", "b"], np.ones((3, K, D))), ValueError, "actions"),
            (lambda: p.act(["a"], np.full((K, D), np.nan)), ValueError, "actions"),
            (lambda: p.act([1.5], np.ones((K, D))), TypeError, "user_ids"),
        ]
        for call, err, word in bad_calls:
            with pytest.raises(err, match=word):
                call()
        assert [(i["n_users"], i["seq"]) for i in p.info()] == [(i["n_users"], i["seq"]) for i in before]
        with pytest.raises(ValueError, match="unknown user"):
            p.agents(["c"])
    finally:
        p.close()
    for kwargs, word in (({"policy": "NeuralEnsemble"}, "policy"), ({"n_shards": 0}, "n_shards"),
                         ({"ensemble_size": 0}, "ensemble_size"), ({"n_agents": 4}, "n_agents")):
        args = {"policy": epp.LinearEnsemble, **OPTS, **kwargs}
        with pytest.raises((ValueError, TypeError), match=word):
            ShardedPolicy(args.pop("policy"), **args)


def _results(path: Path) -> dict:
    doc = json.loads(path.read_text())
    for key in ("wall_seconds", "seconds_per_step"):
        doc.pop(key)
    return doc


def test_run_with_workers_writes_the_serial_results(tmp_path: Path):
    argv = ["run", "-q", "--no-plot", "--env", "finite-linear", "-E", "dim=4", "-E", "n_actions=8",
            "-T", "25", "--seeds", "3", "--seed", "4", "-a", "ensemble++:M=4", "-a", "random",
            "-a", "ts"]
    assert main([*argv, "-o", str(tmp_path / "serial.json")]) == 0
    assert main([*argv, "--workers", "2", "-o", str(tmp_path / "ray.json")]) == 0
    serial, distributed = _results(tmp_path / "serial.json"), _results(tmp_path / "ray.json")
    assert serial == distributed
    assert serial["agents"] == ["ensemble++ (M=4)", "random", "ts"]


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]):
    assert main(["run", "-q", "--no-plot", "--workers", "0"]) == 2
    assert "--workers must be positive" in capsys.readouterr().err
