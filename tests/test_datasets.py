"""Loaders, checksums, search order and the download path (pooch, deadline, mirrors) of ensemblepp.datasets."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from ensemblepp import datasets as D

ncompress = pytest.importorskip("ncompress")
pytest.importorskip("pooch")

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not found")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may find files in, or write to, the user's real cache, nor pick
    # up an ENSEMBLEPP_DATA from the environment.
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENSEMBLEPP_DATA", raising=False)


@functools.lru_cache(maxsize=None)
def shuttle_train_z() -> bytes:
    return ncompress.compress((DATA / "shuttle" / "shuttle.trn").read_bytes())


# ---------------------------------------------------------------------------
# Parsing the shared files
# ---------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("key", sorted(D.FILES))
def test_shared_files_have_the_recorded_checksums(key: str) -> None:
    spec = D.FILES[key]
    assert D.sha256sum(DATA / spec.path) == spec.sha256
    assert D.fetch_file(key, DATA, download=False) == DATA / spec.path


@needs_data
def test_mushroom_rows_classes_and_missing_values() -> None:
    data = D.load_mushroom(DATA, download=False)
    assert data.features.shape == (8124, 22)
    assert data.classes == ["edible", "poisonous"]
    np.testing.assert_array_equal(np.bincount(data.target), [4208, 3916])
    missing = data.features == "?"
    assert missing.sum() == 2480
    assert missing[:, D.MUSHROOM_ATTRIBUTES.index("stalk-root")].sum() == 2480
    assert set(data.features[:, D.MUSHROOM_ATTRIBUTES.index("veil-type")]) == {"p"}
    assert data.categorical.all()


@needs_data
@pytest.mark.parametrize(
    "split, counts",
    [
        ("train", [34108, 37, 132, 6748, 2458, 6, 11]),
        ("test", [11478, 13, 39, 2155, 809, 4, 2]),
        ("all", [45586, 50, 171, 8903, 3267, 10, 13]),
    ],
)
def test_shuttle_rows_and_classes(split: str, counts: list[int]) -> None:
    data = D.load_shuttle(DATA, split=split, download=False)
    assert data.features.shape == (sum(counts), 9)
    assert data.features.dtype == np.float64
    np.testing.assert_array_equal(np.bincount(data.target, minlength=7), counts)
    if split != "test":
        # The byte restored in shared/ (README): the first row starts with 50.
        np.testing.assert_array_equal(data.features[0], [50, 21, 77, 0, 28, 0, 27, 48, 22])
        assert data.target[0] == 1  # UCI class 2, Fpv Close


@needs_data
def test_hate_speech_rows_classes_and_votes() -> None:
    data = D.load_hate_speech(DATA, download=False)
    assert len(data.texts) == 24783
    np.testing.assert_array_equal(np.bincount(data.target), [1430, 19190, 4163])
    assert data.votes.shape == (24783, 3)
    # README: the class is the argmax of the votes in every row.
    np.testing.assert_array_equal(data.votes.argmax(axis=1), data.target)
    # Embedded newlines survive the CSV parser (917 tweets have them).
    assert sum("\n" in t for t in data.texts) == 917
    assert data.sha256 == D.FILES["hate-speech"].sha256


@needs_data
@pytest.mark.parametrize("key", ["mushroom", "shuttle-test", "hate-speech"])
def test_a_corrupted_copy_is_rejected(key: str, tmp_path: Path) -> None:
    spec = D.FILES[key]
    bad = tmp_path / "bad"
    (bad / spec.path).parent.mkdir(parents=True)
    content = bytearray((DATA / spec.path).read_bytes())
    content[100] ^= 0x01
    (bad / spec.path).write_bytes(bytes(content))
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as err, pytest.warns(UserWarning, match="skipping"):
        D.fetch_file(key, bad, download=False)
    assert str(bad / spec.path) in str(err.value)
    assert spec.sha256 in str(err.value)


@needs_data
def test_search_order_data_dir_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLEPP_DATA", str(DATA))
    assert D.fetch_file("mushroom", download=False) == DATA / "mushroom/agaricus-lepiota.data"
    # A damaged copy in data_dir is skipped, with a warning, for the valid one in ENSEMBLEPP_DATA.
    (tmp_path / "mushroom").mkdir()
    (tmp_path / "mushroom/agaricus-lepiota.data").write_text("e,x\n")
    with pytest.warns(UserWarning, match="agaricus-lepiota.data"):
        assert D.fetch_file("mushroom", tmp_path, download=False) == DATA / "mushroom/agaricus-lepiota.data"
    # A valid copy in data_dir wins over ENSEMBLEPP_DATA.
    good = tmp_path / "good"
    (good / "mushroom").mkdir(parents=True)
    shutil.copy(DATA / "mushroom/agaricus-lepiota.data", good / "mushroom")
    assert D.fetch_file("mushroom", good, download=False) == good / "mushroom/agaricus-lepiota.data"
    # With no valid copy anywhere, the damaged one is an error naming it.
    monkeypatch.delenv("ENSEMBLEPP_DATA")
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as err, pytest.warns(UserWarning):
        D.fetch_file("mushroom", tmp_path, download=False)
    assert str(tmp_path / "mushroom/agaricus-lepiota.data") in str(err.value)


@needs_data
def test_a_valid_cached_copy_is_used_after_a_damaged_data_dir(tmp_path: Path) -> None:
    cached = tmp_path / "cache" / "data" / "mushroom"
    cached.mkdir(parents=True)
    shutil.copy(DATA / "mushroom/agaricus-lepiota.data", cached)
    bad = tmp_path / "bad" / "mushroom"
    bad.mkdir(parents=True)
    (bad / "agaricus-lepiota.data").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipping"):
        assert D.fetch_file("mushroom", tmp_path / "bad", download=False) == cached / "agaricus-lepiota.data"


def test_cache_dir_from_platformdirs_unless_overridden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    assert D.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("ENSEMBLEPP_CACHE")
    assert D.cache_dir() == Path(platformdirs.user_cache_dir("ensemblepp", appauthor=False))


def test_missing_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="agaricus-lepiota.data"):
        D.fetch_file("mushroom", tmp_path, download=False)


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="key='iris'"):
        D.fetch_file("iris")
    with pytest.raises(ValueError, match="name='iris'"):
        D.fetch("iris")
    with pytest.raises(ValueError, match="split='valid'"):
        D.load_shuttle(split="valid")
    with pytest.raises(ValueError, match="name='iris'"):
        D.load_tabular("iris")


def test_official_sources() -> None:
    assert D.FILES["obd-random-all-log"].url == (
        f"https://raw.githubusercontent.com/st-tech/zr-obp/{D.OBD_COMMIT}/obp/dataset/obd/random/all/all.csv")
    assert len(D.DATASETS["obd"]) == 12
    assert D.FILES["mushroom"].url == "https://archive.ics.uci.edu/static/public/73/mushroom.zip"
    assert D.FILES["shuttle-train"].url == "https://archive.ics.uci.edu/static/public/148/statlog+shuttle.zip"
    assert D.FILES["shuttle-train"].member == "shuttle.trn.Z"
    assert D.FILES["hate-speech"].url.startswith(
        "https://raw.githubusercontent.com/t-davidson/hate-speech-and-offensive-language/")


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def test_encode_tabular_by_hand() -> None:
    table = np.array([["a", "1.0", "x"], ["b", "3.0", "x"], ["a", "5.0", "x"]])
    encoded, names = D.encode_tabular(table, [True, False, True])
    std = np.std([1.0, 3.0, 5.0])
    expected = np.array([[1, 0, -2 / std], [0, 1, 0], [1, 0, 2 / std]])
    np.testing.assert_allclose(encoded, expected, rtol=0, atol=1e-12)
    assert names == ["0=a", "0=b", "1"]
    kept, names = D.encode_tabular(table, [True, False, True], drop_constant=False)
    assert kept.shape == (3, 4) and names[-1] == "2=x"
    np.testing.assert_array_equal(kept[:, 3], 1.0)


def test_encode_tabular_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="categorical"):
        D.encode_tabular(np.zeros((3, 2)), [True])
    with pytest.raises(ValueError, match="NaN"):
        D.encode_tabular(np.array([[1.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2-d"):
        D.encode_tabular(np.zeros(3))
    with pytest.raises(TypeError, match="column 0"):
        D.encode_tabular(np.array([["a"], ["b"]]), [False])


@needs_data
def test_encoded_shapes_of_the_uci_sets() -> None:
    mush = D.load_mushroom(DATA, download=False)
    X, names = D.encode_tabular(mush.features, mush.categorical)
    # 117 indicator columns over the 22 attributes ("?" is a category of
    # stalk-root); veil-type has one value and is dropped.
    assert X.shape == (8124, 116) and len(names) == 116
    np.testing.assert_array_equal(X.sum(axis=1), 21.0)
    shut = D.load_shuttle(DATA, download=False)
    X, _ = D.encode_tabular(shut.features, shut.categorical)
    assert X.shape == (58000, 9)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(X.std(axis=0), 1.0, rtol=1e-10)


# ---------------------------------------------------------------------------
# Download from a loopback HTTP server
# ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _uci_archives(root: Path) -> None:
    """Zip archives laid out like UCI's, from the shared files."""
    with zipfile.ZipFile(root / "mushroom.zip", "w") as zf:
        zf.write(DATA / "mushroom/agaricus-lepiota.data", "agaricus-lepiota.data")
        zf.writestr("agaricus-lepiota.names", "attribute information\n")
    with zipfile.ZipFile(root / "statlog+shuttle.zip", "w") as zf:
        zf.writestr("shuttle.trn.Z", shuttle_train_z())
        zf.write(DATA / "shuttle/shuttle.tst", "shuttle.tst")
        zf.writestr("shuttle.doc", "documentation\n")
    shutil.copy(DATA / "hate_speech/labeled_data.csv", root / "labeled_data.csv")


@needs_data
def test_download_extract_verify_and_cache(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    _uci_archives(root)
    urls = {
        "mushroom": f"{url}/mushroom.zip",
        "shuttle-train": f"{url}/statlog+shuttle.zip",
        "shuttle-test": f"{url}/statlog+shuttle.zip",
        "hate-speech": f"{url}/labeled_data.csv",
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    paths = {}
    for name in ("mushroom", "shuttle", "hate_speech"):
        paths.update(D.fetch(name, empty, urls=urls, timeout=10))
    cache = tmp_path / "cache" / "data"
    for key, path in paths.items():
        assert path == cache / D.FILES[key].path
        assert D.sha256sum(path) == D.FILES[key].sha256
    # The loaders now read the cached copies, with no server and no download.
    for f in root.iterdir():
        f.unlink()
    assert D.load_shuttle(empty, download=False).features.shape == (58000, 9)
    assert D.load_mushroom(download=False).features.shape == (8124, 22)
    assert len(D.load_hate_speech(download=False).texts) == 24783
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == [
        "agaricus-lepiota.data", "labeled_data.csv", "shuttle.trn", "shuttle.tst"]


@needs_data
def test_download_with_a_wrong_checksum_fails_and_caches_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    content = bytearray((DATA / "mushroom/agaricus-lepiota.data").read_bytes())
    content[-2:-1] = b"x"
    with zipfile.ZipFile(root / "mushroom.zip", "w") as zf:
        zf.writestr("agaricus-lepiota.data", bytes(content))
    with pytest.raises(D.ChecksumError, match="mushroom.zip") as err:
        D.fetch_file("mushroom", url=f"{url}/mushroom.zip", timeout=10)
    assert D.FILES["mushroom"].sha256 in str(err.value)
    cache = tmp_path / "cache" / "data"
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_download_errors_name_the_source(server: tuple[str, Path]) -> None:
    url, root = server
    with pytest.raises(D.DownloadError, match=r"could not download .*missing\.zip"):
        D.fetch_file("mushroom", url=f"{url}/missing.zip", timeout=10, retries=0)
    (root / "notzip.zip").write_bytes(b"plain text")
    with pytest.raises(D.DownloadError, match="not a valid zip"):
        D.fetch_file("mushroom", url=f"{url}/notzip.zip", timeout=10)
    with zipfile.ZipFile(root / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(D.DownloadError, match="no member 'agaricus-lepiota.data'"):
        D.fetch_file("mushroom", url=f"{url}/other.zip", timeout=10)
    with zipfile.ZipFile(root / "badz.zip", "w") as zf:
        zf.writestr("shuttle.trn.Z", b"not compressed")
    with pytest.raises(D.DownloadError, match="could not decompress shuttle.trn.Z") as err:
        D.fetch_file("shuttle-train", url=f"{url}/badz.zip", timeout=10)
    # Every message names the address tried and the destination.
    assert f"{url}/badz.zip" in str(err.value) and str(D.cache_dir() / "data" / "shuttle" / "shuttle.trn") in str(err.value)


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Promises 40 bytes and sends one every 0.5 s (each read is within any timeout).

    Without a deadline the download ends after 20 s with the wrong content, so a
    broken deadline fails the test instead of hanging it.
    """

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "40")
        self.end_headers()
        try:
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass  # the client gave up

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_deadline_bounds_a_trickling_download(slow_server: str, tmp_path: Path) -> None:
    # Every read gets a byte within 0.5 s, so a per-read timeout of 5 s never fires;
    # only the overall deadline stops it (issue 10: 20 s with timeout=2 before).
    start = time.monotonic()
    with pytest.raises(D.DownloadError, match="deadline of 2 s") as err:
        D.fetch_file("hate-speech", url=f"{slow_server}/labeled_data.csv", timeout=5, deadline=2, retries=3)
    elapsed = time.monotonic() - start
    assert elapsed < 4.0, elapsed
    assert f"{slow_server}/labeled_data.csv" in str(err.value)
    assert str(tmp_path / "cache" / "data" / "hate_speech" / "labeled_data.csv") in str(err.value)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_a_read_only_cache_is_a_download_error(server: tuple[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    if os.geteuid() == 0:
        # root ignores permission bits: make creating anything under the cache fail as it would.
        real_mkdir = Path.mkdir

        def refuse(self: Path, *args: object, **kwargs: object) -> None:
            if str(self).startswith(str(cache)):
                raise PermissionError(13, "Permission denied", str(self))
            real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refuse)
    try:
        with pytest.raises(D.DownloadError, match="PermissionError") as err:
            D.fetch_file("hate-speech", url=f"{url}/labeled_data.csv", timeout=5, retries=0)
    finally:
        cache.chmod(0o700)
    assert f"{url}/labeled_data.csv" in str(err.value)
    assert str(cache / "data" / "hate_speech") in str(err.value)


def test_a_cache_path_that_is_a_file_is_a_download_error(server: tuple[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Works as root too: the cache "folder" is a regular file, so nothing can be created under it.
    url, _ = server
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(blocker))
    with pytest.raises(D.DownloadError, match="could not download") as err:
        D.fetch_file("hate-speech", url=f"{url}/labeled_data.csv", timeout=5, retries=0)
    assert f"{url}/labeled_data.csv" in str(err.value)
    assert str(blocker / "data" / "hate_speech" / "labeled_data.csv") in str(err.value)


@needs_data
def test_mirrors_are_tried_in_order_and_errors_name_each(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    shutil.copy(DATA / "hate_speech/labeled_data.csv", root / "good.csv")
    bad, good = f"{url}/gone.csv", f"{url}/good.csv"
    with pytest.raises(D.DownloadError) as err:
        D.fetch_file("hate-speech", url=[bad, f"{url}/also-gone.csv"], timeout=5, retries=0)
    assert bad in str(err.value) and f"{url}/also-gone.csv" in str(err.value)
    assert D.FILES["hate-speech"].url not in str(err.value)
    path = D.fetch_file("hate-speech", url=[bad, good], timeout=5, retries=0)
    assert D.sha256sum(path) == D.FILES["hate-speech"].sha256


@needs_data
def test_a_damaged_cached_copy_is_replaced_by_a_download(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    shutil.copy(DATA / "hate_speech/labeled_data.csv", root / "labeled_data.csv")
    cached = tmp_path / "cache" / "data" / "hate_speech" / "labeled_data.csv"
    cached.parent.mkdir(parents=True)
    cached.write_text("damaged")
    with pytest.warns(UserWarning, match="skipping"):
        path = D.fetch_file("hate-speech", url=f"{url}/labeled_data.csv", timeout=5, retries=0)
    assert path == cached and D.sha256sum(cached) == D.FILES["hate-speech"].sha256


@needs_data
def test_a_raw_download_with_a_wrong_checksum_is_both_error_kinds(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    (root / "labeled_data.csv").write_text("not the tweets")
    with pytest.raises(D.DownloadError, match="labeled_data.csv") as err:
        D.fetch_file("hate-speech", url=f"{url}/labeled_data.csv", timeout=5, retries=0)
    assert isinstance(err.value, D.ChecksumError)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_download_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="deadline"):
        D.fetch_file("mushroom", deadline=float("nan"))
    with pytest.raises(ValueError, match="timeout"):
        D.fetch_file("mushroom", timeout=0)
    with pytest.raises(ValueError, match="retries"):
        D.fetch_file("mushroom", retries=-1)


def test_zipped_z_member_is_decoded_with_ncompress(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # A synthetic archive with a .Z member, checked against a recorded hash of its content.
    url, root = server
    content = b"".join(f"{i} {i * i}\n".encode() for i in range(20000))
    import hashlib

    spec = D.RemoteFile("toy/toy.txt", hashlib.sha256(content).hexdigest(), f"{url}/toy.zip", member="toy.Z",
                        compression="Z")
    monkeypatch.setitem(D.FILES, "toy", spec)
    with zipfile.ZipFile(root / "toy.zip", "w") as zf:
        zf.writestr("toy.Z", ncompress.compress(content))
    assert D.fetch_file("toy", timeout=5).read_bytes() == content


# ---------------------------------------------------------------------------
# Open Bandit Dataset
# ---------------------------------------------------------------------------

# README of shared/data: rows and clicks per file.
OBD_CLICKS = {("random", "all"): 38, ("random", "men"): 46, ("random", "women"): 46,
              ("bts", "all"): 42, ("bts", "men"): 69, ("bts", "women"): 46}


@needs_data
@pytest.mark.parametrize("behaviour, campaign", sorted(OBD_CLICKS))
def test_obd_rows_clicks_and_propensities(behaviour: str, campaign: str) -> None:
    log = D.load_obd(behaviour, campaign, DATA, download=False)
    K = D.OBD_CAMPAIGNS[campaign]
    assert len(log) == 10000 and log.n_actions == K
    assert log.reward.sum() == OBD_CLICKS[(behaviour, campaign)]
    assert log.affinity.shape == (10000, K) and log.user_features.shape == (10000, 4)
    assert log.item_categorical.shape == (K, 3) and log.item_numeric.shape == (K,)
    assert set(np.unique(log.position)) == {0, 1, 2}
    assert log.action.min() >= 0 and log.action.max() < K
    if behaviour == "random":
        np.testing.assert_array_equal(log.propensity, 1.0 / K)
    else:
        assert 0 < log.propensity.min() < log.propensity.max() < 1
    assert np.all(np.diff(log.timestamp.astype(np.int64)) >= 0)
    assert str(log.timestamp[0]).startswith("2019-11-2")


@needs_data
def test_obd_feature_encoding() -> None:
    log = D.load_obd("random", "all", DATA, download=False)
    feats = D.obd_features(log)
    # One-hot blocks: every user row has exactly one 1 per categorical feature (4),
    # every item exactly one per item_feature_1..3 (3), plus bias and item_feature_0.
    np.testing.assert_array_equal(feats.user.sum(axis=1), 4.0)
    assert feats.user.shape[1] == sum(len(set(log.user_features[:, j])) for j in range(4))
    np.testing.assert_array_equal(feats.item[:, 2:].sum(axis=1), 3.0)
    np.testing.assert_array_equal(feats.item[:, 0], 1.0)
    np.testing.assert_allclose(feats.item[:, 1].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(feats.item[:, 1].std(), 1.0, rtol=1e-12)
    assert feats.item.shape == (80, 2 + 12 + 21 + 7) and len(feats.item_names) == feats.item.shape[1]
    X = feats.actions(123)
    assert X.shape == (80, feats.dim())
    np.testing.assert_array_equal(X[:, -1], log.affinity[123])
    np.testing.assert_array_equal(X[:, :-1], feats.item)
    Xu = feats.actions(5, with_user=True)
    assert Xu.shape == (80, feats.dim(with_user=True))
    np.testing.assert_array_equal(Xu[7, -feats.user.shape[1]:], feats.user[5])
    with pytest.raises(IndexError, match="row"):
        feats.actions(10000)
    with pytest.raises(TypeError, match="BanditLog"):
        D.obd_features("random")


@needs_data
def test_bandit_log_validation_names_the_field() -> None:
    import dataclasses

    log = D.load_obd("random", "men", DATA, download=False)
    assert log.validate() is log
    bad_cases = {
        "propensity": dataclasses.replace(log, propensity=np.where(np.arange(len(log)) == 3, 0.0, log.propensity)),
        "affinity": dataclasses.replace(log, affinity=log.affinity[:, :5]),
        "reward": dataclasses.replace(log, reward=np.where(np.arange(len(log)) == 0, np.nan, log.reward)),
        "action": dataclasses.replace(log, action=log.action + 34),
        "user_features": dataclasses.replace(log, user_features=log.user_features[:10]),
    }
    for name, bad in bad_cases.items():
        with pytest.raises(ValueError, match=name):
            D.obd_features(bad)


def test_obd_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="behaviour='ucb'"):
        D.load_obd("ucb")
    with pytest.raises(ValueError, match="campaign='kids'"):
        D.load_obd("random", "kids")


@needs_data
def test_obd_damaged_file_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "obd" / "random" / "men"
    folder.mkdir(parents=True)
    content = bytearray((DATA / "obd/random/men/men.csv").read_bytes())
    content[500] ^= 0x01
    (folder / "men.csv").write_bytes(bytes(content))
    with pytest.raises(D.ChecksumError, match="men.csv"), pytest.warns(UserWarning):
        D.load_obd("random", "men", tmp_path, download=False)


@needs_data
def test_obd_download_from_a_mirror(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    shutil.copytree(DATA / "obd", root / "obd")
    urls = {k: f"{url}/{D.FILES[k].path}" for k in D.DATASETS["obd"] if "-women-" in k and "random" in k}
    for key, address in urls.items():
        D.fetch_file(key, url=address, timeout=5)
    log = D.load_obd("random", "women", download=False)
    assert log.reward.sum() == 46
