"""Loaders, checksums, .Z decoding and the download path of ensemblepp.datasets."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ensemblepp import datasets as D

DATA = Path(__file__).parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not found")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may find files in, or write to, the user's real cache, nor pick
    # up an ENSEMBLEPP_DATA from the environment.
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENSEMBLEPP_DATA", raising=False)


# ---------------------------------------------------------------------------
# A reference .Z encoder, written from the format description, to produce
# test archives. gzip -d (which reads .Z) checks it independently.
# ---------------------------------------------------------------------------


def lzw_compress(data: bytes, max_bits: int = 16) -> bytes:
    out = bytearray([0x1F, 0x9D, 0x80 | max_bits])
    acc = 0
    nacc = 0
    n_bits = 9
    in_group = 0
    table = {bytes([i]): i for i in range(256)}
    next_code = 257  # 256 is CLEAR in block mode
    max_code = (1 << n_bits) - 1

    def emit(code: int) -> None:
        nonlocal acc, nacc, in_group
        acc |= code << nacc
        nacc += n_bits
        in_group += 1
        while nacc >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nacc -= 8

    def widen() -> None:
        nonlocal n_bits, in_group, acc, nacc
        # compress pads the current group of 8 codes to its full n_bits bytes.
        pad = (8 - in_group % 8) % 8
        for _ in range(pad):
            emit(0)
        assert nacc == 0
        in_group = 0
        n_bits += 1

    w = b""
    for byte in data:
        wc = w + bytes([byte])
        if wc in table:
            w = wc
            continue
        emit(table[w])
        if next_code > max_code:
            widen()
            max_code = (1 << max_bits) if n_bits == max_bits else (1 << n_bits) - 1
        if next_code < (1 << max_bits):
            table[wc] = next_code
            next_code += 1
        w = bytes([byte])
    if w:
        emit(table[w])
    if nacc:
        out.append(acc & 0xFF)
    return bytes(out)


@functools.lru_cache(maxsize=None)
def shuttle_train_z() -> bytes:
    return lzw_compress((DATA / "shuttle" / "shuttle.trn").read_bytes())


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
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as err:
        D.fetch_file(key, bad, download=False)
    assert str(bad / spec.path) in str(err.value)
    assert spec.sha256 in str(err.value)


@needs_data
def test_search_order_data_dir_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLEPP_DATA", str(DATA))
    assert D.fetch_file("mushroom", download=False) == DATA / "mushroom/agaricus-lepiota.data"
    # An explicit folder wins, and a bad copy there is an error, not skipped.
    (tmp_path / "mushroom").mkdir()
    (tmp_path / "mushroom/agaricus-lepiota.data").write_text("e,x\n")
    with pytest.raises(D.ChecksumError):
        D.fetch_file("mushroom", tmp_path, download=False)


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
# Unix compress
# ---------------------------------------------------------------------------


def _sample_bytes(n: int) -> bytes:
    rng = np.random.default_rng(7)
    words = [b"alpha", b"beta", b"gamma", b"delta", b" ", b"\n", b"0", b"123"]
    parts = [words[i] for i in rng.integers(0, len(words), n // 4)]
    return b"".join(parts) + rng.integers(0, 256, n // 8, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("max_bits", [9, 12, 16])
def test_lzw_round_trip_against_the_reference_encoder(max_bits: int) -> None:
    data = _sample_bytes(300_000)
    packed = lzw_compress(data, max_bits)
    assert D.lzw_decompress(packed) == data
    if shutil.which("gzip"):
        # gzip reads .Z: an independent check that the encoder (and so the
        # test) speaks the real format.
        result = subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True)
        assert result.stdout == data


@pytest.mark.skipif(shutil.which("compress") is None, reason="the compress utility (ncompress) is not installed")
@pytest.mark.parametrize("bits", ["16", "12", "10"])
def test_lzw_decodes_the_compress_utility(bits: str) -> None:
    # With -b 12 and -b 10 the table fills and compress emits CLEAR codes.
    # (-b 9 is left out: ncompress 4.2.4 and gzip disagree on that format.)
    data = _sample_bytes(400_000)
    packed = subprocess.run(["compress", "-c", "-b", bits], input=data, capture_output=True, check=True).stdout
    assert D.lzw_decompress(packed) == data


def test_lzw_rejects_bad_streams() -> None:
    with pytest.raises(ValueError, match="magic"):
        D.lzw_decompress(b"PK\x03\x04")
    with pytest.raises(ValueError, match="code width"):
        D.lzw_decompress(bytes([0x1F, 0x9D, 0x80 | 20, 0, 0]))
    # A first code of 300 refers to an entry that does not exist yet.
    with pytest.raises(ValueError, match="undefined"):
        D.lzw_decompress(bytes([0x1F, 0x9D, 0x90, 300 & 0xFF, 300 >> 8]))


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
    for name in D.DATASETS:
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
        D.fetch_file("mushroom", url=f"{url}/missing.zip", timeout=10)
    (root / "notzip.zip").write_bytes(b"plain text")
    with pytest.raises(D.DownloadError, match="not a valid zip"):
        D.fetch_file("mushroom", url=f"{url}/notzip.zip", timeout=10)
    with zipfile.ZipFile(root / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(D.DownloadError, match="no member 'agaricus-lepiota.data'"):
        D.fetch_file("mushroom", url=f"{url}/other.zip", timeout=10)
    with zipfile.ZipFile(root / "badz.zip", "w") as zf:
        zf.writestr("shuttle.trn.Z", b"not compressed")
    with pytest.raises(D.DownloadError, match="could not decompress shuttle.trn.Z"):
        D.fetch_file("shuttle-train", url=f"{url}/badz.zip", timeout=10)
