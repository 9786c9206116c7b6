"""Real data sets: UCI Mushroom, UCI Statlog Shuttle, the Davidson et al. tweets and the Open Bandit Dataset.

The package ships none of the data. Every loader looks for the raw files under
the same relative paths (``mushroom/agaricus-lepiota.data``,
``shuttle/shuttle.trn``, ``obd/random/all/all.csv``, ..., the layout of the
project's ``shared/data`` folder) in these folders, in this order:

1. ``data_dir`` when it is given,
2. the folder named by the environment variable ``ENSEMBLEPP_DATA``,
3. ``<cache_dir()>/data``, where downloads go.

Every copy found is checked against the sha256 recorded in :data:`FILES`. The
first copy that matches is used; a copy that does not match (corrupt,
truncated, another version) or cannot be read is skipped with a warning, so a
damaged file in ``data_dir`` does not hide a valid one in ``ENSEMBLEPP_DATA``
or the cache. When no folder has a valid copy and ``download`` is true, the
file is downloaded into the cache (replacing a damaged cached copy); when
``download`` is false, :class:`ChecksumError` names the damaged copies, or
:class:`FileNotFoundError` the folders searched.

Downloads go through `pooch <https://www.fatiando.org/pooch>`_ (temporary file
in the cache folder, hash check, atomic move, retries) with a downloader that
also enforces an overall wall-clock ``deadline`` (``requests``' ``timeout``
bounds each socket read only, so a server trickling one byte at a time would
otherwise keep a download alive indefinitely). Files served as they are carry
their sha256 into pooch; members of zip archives (UCI) are checked after
extraction, since the archives themselves have no recorded hash. UCI ships the
Shuttle training set compressed with Unix ``compress`` (``shuttle.trn.Z``),
decoded with `ncompress <https://pypi.org/project/ncompress/>`_. The cache
folder is ``platformdirs.user_cache_dir("ensemblepp")`` (``~/.cache/ensemblepp``
on Linux) unless ``ENSEMBLEPP_CACHE`` names another. Every download failure
(network, HTTP status, deadline, unreadable archive, read-only cache) raises
:class:`DownloadError` naming the URL tried and the destination path.

The download helpers need the ``data`` extra (``pip install "ensemblepp[data]"``:
pooch, requests, ncompress); reading local copies does not.
"""

from __future__ import annotations

import csv
import hashlib
import os
import socket
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FILES",
    "DATASETS",
    "RemoteFile",
    "TabularData",
    "TextData",
    "BanditLog",
    "ChecksumError",
    "DownloadError",
    "DownloadChecksumError",
    "DeadlineDownloader",
    "cache_dir",
    "fetch",
    "fetch_file",
    "sha256sum",
    "load_mushroom",
    "load_shuttle",
    "load_hate_speech",
    "load_tabular",
    "encode_tabular",
    "OBD_BEHAVIOURS",
    "OBD_CAMPAIGNS",
    "load_obd",
    "obd_features",
    "OBDFeatures",
    "OBD_COMMIT",
]


class ChecksumError(ValueError):
    """A data file does not have the sha256 recorded for it."""


class DownloadError(RuntimeError):
    """A data file could not be downloaded, extracted or stored in the cache."""


class DownloadChecksumError(DownloadError, ChecksumError):
    """A downloaded file does not have the recorded sha256 (both a download and a checksum error)."""


@dataclass(frozen=True)
class RemoteFile:
    """One raw data file and where its official copy lives.

    Parameters
    ----------
    path : str
        Path relative to a data folder (``"mushroom/agaricus-lepiota.data"``).
    sha256 : str
        Hex digest of the file's uncompressed bytes.
    url : str
        Official download address (a zip archive or the raw file).
    member : str or None
        Name of the file inside the zip archive, or None when ``url`` is the
        file itself.
    compression : str or None
        ``"Z"`` when the member is Unix-``compress``ed, else None.
    mirrors : tuple of str
        Further addresses serving the same content, tried in order after ``url``.
    """

    path: str
    sha256: str
    url: str
    member: str | None = None
    compression: str | None = None
    mirrors: tuple[str, ...] = ()


_UCI_MUSHROOM = "https://archive.ics.uci.edu/static/public/73/mushroom.zip"
_UCI_SHUTTLE = "https://archive.ics.uci.edu/static/public/148/statlog+shuttle.zip"
_DAVIDSON = (
    "https://raw.githubusercontent.com/t-davidson/hate-speech-and-offensive-language/"
    "master/data/labeled_data.csv"
)
# The Open Bandit Dataset sample as shipped in the authors' obp repository, pinned to
# the commit of its release tag 0.5.5 (every file there has the git blob of the copy
# in shared/data, which came from the obp 0.5.7 sdist).
OBD_COMMIT = "456a1ea652aafbabd73422413db0bbde4d8940aa"
_OBD = f"https://raw.githubusercontent.com/st-tech/zr-obp/{OBD_COMMIT}/obp/dataset/obd/"

#: Behaviour policies of the Open Bandit Dataset: uniform random and Bernoulli Thompson sampling.
OBD_BEHAVIOURS = ("random", "bts")
#: Campaigns of the Open Bandit Dataset and their number of items.
OBD_CAMPAIGNS = {"all": 80, "men": 34, "women": 46}

_OBD_SHA256 = {
    "bts/all/all.csv": "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    "bts/all/item_context.csv": "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153",
    "bts/men/item_context.csv": "3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d",
    "bts/men/men.csv": "db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527",
    "bts/women/item_context.csv": "a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4",
    "bts/women/women.csv": "e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8",
    "random/all/all.csv": "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    "random/all/item_context.csv": "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358",
    "random/men/item_context.csv": "6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09",
    "random/men/men.csv": "ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb",
    "random/women/item_context.csv": "b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147",
    "random/women/women.csv": "e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34",
}

#: Every raw file the loaders use, by key, with its checksum and official source.
FILES: dict[str, RemoteFile] = {
    "mushroom": RemoteFile(
        "mushroom/agaricus-lepiota.data",
        "e65d082030501a3ebcbcd7c9f7c71aa9d28fdfff463bf4cf4716a3fe13ac360e",
        _UCI_MUSHROOM,
        member="agaricus-lepiota.data",
    ),
    "shuttle-train": RemoteFile(
        "shuttle/shuttle.trn",
        "87b24ee9fb5137e1d417659cf905d84d0e15342bbaa60770f1ae83da1a38200a",
        _UCI_SHUTTLE,
        member="shuttle.trn.Z",
        compression="Z",
    ),
    "shuttle-test": RemoteFile(
        "shuttle/shuttle.tst",
        "f776934a628d9b94c482cb058a76ddaa63823e0f74aec065813c9dff3b89d661",
        _UCI_SHUTTLE,
        member="shuttle.tst",
    ),
    "hate-speech": RemoteFile(
        "hate_speech/labeled_data.csv",
        "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281",
        _DAVIDSON,
    ),
}
for _rel, _digest in _OBD_SHA256.items():
    _b, _c, _f = _rel.split("/")
    FILES[f"obd-{_b}-{_c}-" + ("items" if _f == "item_context.csv" else "log")] = RemoteFile(
        f"obd/{_rel}", _digest, _OBD + _rel)

#: Data set name -> keys of :data:`FILES` it needs.
DATASETS: dict[str, tuple[str, ...]] = {
    "mushroom": ("mushroom",),
    "shuttle": ("shuttle-train", "shuttle-test"),
    "hate_speech": ("hate-speech",),
    "obd": tuple(k for k in FILES if k.startswith("obd-")),
}

_CHUNK = 1 << 16


def cache_dir() -> Path:
    """Folder where downloads and derived files (embeddings) are cached.

    Returns
    -------
    pathlib.Path
        ``$ENSEMBLEPP_CACHE`` when set, else the user cache folder of
        ``platformdirs`` (``~/.cache/ensemblepp`` on Linux, ``~/Library/Caches/ensemblepp``
        on macOS). It is not created here.
    """
    env = os.environ.get("ENSEMBLEPP_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ensemblepp", appauthor=False))


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Hex sha256 digest of a file, read in chunks.

    Parameters
    ----------
    path : path-like
        File to hash.

    Returns
    -------
    str
        64 lower-case hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, actual: str, spec: RemoteFile) -> str:
    return (f"checksum mismatch for {path}: sha256 is {actual}, expected {spec.sha256} "
            f"(the file is corrupt, truncated or a different version; delete it or point "
            f"data_dir / ENSEMBLEPP_DATA at a verified copy)")


def _search_dirs(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env = os.environ.get("ENSEMBLEPP_DATA")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir() / "data")
    return dirs


# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"downloading data needs {module}: pip install \"ensemblepp[data]\" "
                          f"(or put the files in data_dir / ENSEMBLEPP_DATA)") from err


class _DeadlineExceeded(Exception):
    pass


class DeadlineDownloader:
    """A pooch downloader with a per-read timeout and an overall wall-clock deadline.

    ``requests`` applies its timeout to each socket read, so a server that
    sends one byte just before every timeout keeps a download going for ever.
    This downloader reads whatever has arrived (``read1``), checks the clock
    after every read, and a watchdog timer shuts the socket down at the deadline
    so that a read blocked at that moment returns at once.

    Parameters
    ----------
    timeout : float
        Seconds one connect or read may wait for data.
    deadline : float
        Absolute :func:`time.monotonic` time by which the whole download must end.
    """

    def __init__(self, timeout: float, deadline: float) -> None:
        self.timeout = float(timeout)
        self.deadline = float(deadline)

    def __call__(self, url: str, output_file: Any, pooch: Any, check_only: bool = False) -> Any:
        """Download ``url`` into ``output_file`` (a path or a binary file object)."""
        requests = _require("requests")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded
        wait = min(self.timeout, remaining)
        fired = threading.Event()
        with requests.get(url, stream=True, timeout=(wait, wait), headers={"User-Agent": "ensemblepp"}) as response:
            response.raise_for_status()
            if check_only:
                return True
            raw = response.raw
            sock = getattr(getattr(raw, "connection", None), "sock", None)

            def expire() -> None:
                fired.set()
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

            watchdog = threading.Timer(max(0.0, self.deadline - time.monotonic()), expire)
            watchdog.daemon = True
            watchdog.start()
            try:
                out = open(output_file, "wb") if isinstance(output_file, (str, os.PathLike)) else output_file
                try:
                    read = getattr(raw, "read1", None) or raw.read
                    while True:
                        chunk = read(_CHUNK, decode_content=True)
                        if fired.is_set() or time.monotonic() > self.deadline:
                            raise _DeadlineExceeded
                        if not chunk:
                            break
                        out.write(chunk)
                finally:
                    if out is not output_file:
                        out.close()
            except _DeadlineExceeded:
                raise
            except Exception:
                if fired.is_set():
                    raise _DeadlineExceeded from None
                raise
            finally:
                watchdog.cancel()
        return None


def _fetch_one(url: str, spec: RemoteFile, target: Path, timeout: float, deadline: float, retries: int,
               seconds: float) -> None:
    """Download ``url`` and leave the verified file at ``target``; raise DownloadError otherwise."""
    pooch = _require("pooch")
    requests = _require("requests")
    downloader = DeadlineDownloader(timeout, deadline)
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if spec.member is None and spec.compression is None:
                # pooch downloads to a temporary file beside the target, checks the
                # hash, then moves it into place; a damaged cached copy is replaced.
                store = pooch.create(path=target.parent, base_url="", registry={target.name: f"sha256:{spec.sha256}"},
                                     urls={target.name: url}, retry_if_failed=retries)
                store.fetch(target.name, downloader=downloader)
                return
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
                store = pooch.create(path=tmp, base_url="", registry={"archive": None}, urls={"archive": url},
                                     retry_if_failed=retries)
                archive = Path(store.fetch("archive", downloader=downloader))
                staged = Path(tmp) / target.name
                staged.write_bytes(_extract(archive, spec, url, target))
                actual = sha256sum(staged)
                if actual != spec.sha256:
                    raise DownloadChecksumError(f"downloaded from {url}: {_mismatch(target, actual, spec)}")
                # Atomic, so that an interrupted run never leaves a half-written file.
                os.replace(staged, target)
        except _DeadlineExceeded:
            raise DownloadError(f"could not download {url} to {target}: the deadline of {seconds:g} s passed "
                                f"before the download finished") from None
        except ValueError as err:
            if "hash" in str(err).lower() and not isinstance(err, DownloadError):
                raise DownloadChecksumError(f"downloaded from {url} to {target}: checksum mismatch, expected "
                                            f"sha256 {spec.sha256} ({err})") from err
            raise
    except DownloadError:
        raise
    except (OSError, requests.exceptions.RequestException, zipfile.BadZipFile) as err:
        raise DownloadError(f"could not download {url} to {target}: {type(err).__name__}: {err}") from err


def _extract(archive: Path, spec: RemoteFile, url: str, target: Path) -> bytes:
    where = f"(downloading {url} to {target})"
    if spec.member is None:
        raw = archive.read_bytes()
    else:
        try:
            with zipfile.ZipFile(archive) as zf:
                names = {Path(n).name: n for n in zf.namelist()}
                if spec.member not in names:
                    raise DownloadError(f"{url} has no member {spec.member!r} (members: {sorted(names)}) {where}")
                raw = zf.read(names[spec.member])
        except zipfile.BadZipFile as err:
            raise DownloadError(f"{url} is not a valid zip archive: {err} {where}") from err
    if spec.compression == "Z":
        ncompress = _require("ncompress")
        try:
            raw = ncompress.decompress(raw)
        except ValueError as err:
            raise DownloadError(f"could not decompress {spec.member} from {url}: {err} {where}") from err
    return raw


def fetch_file(
    key: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    url: str | Sequence[str] | None = None,
    timeout: float = 30.0,
    deadline: float = 600.0,
    retries: int = 2,
) -> Path:
    """Path of one verified raw file, downloading it into the cache if needed.

    Parameters
    ----------
    key : str
        A key of :data:`FILES` (``"mushroom"``, ``"shuttle-train"``,
        ``"shuttle-test"``, ``"hate-speech"``, ``"obd-random-all-log"``, ...).
    data_dir : path-like, optional
        Folder to look in first (layout as in :data:`FILES`).
    download : bool, default True
        Fetch from the official source when no folder has a valid copy.
    url : str or sequence of str, optional
        Address(es) to download from instead of the official one and its
        mirrors (a mirror, or a local server in tests), tried in order. They
        must serve the same content: a zip archive when the official source is one.
    timeout : float, default 30
        Seconds one connection attempt or socket read may wait.
    deadline : float, default 600
        Seconds the whole download (every address and retry) may take.
    retries : int, default 2
        Further attempts per address after a failed one (pooch waits 1 s, 2 s, ...).

    Returns
    -------
    pathlib.Path
        A file whose sha256 matches the record.

    Raises
    ------
    ValueError
        If ``key`` is unknown or a numeric argument is out of range.
    ChecksumError
        If ``download`` is false and every copy found is damaged.
    FileNotFoundError
        If no folder has the file and ``download`` is false.
    DownloadError
        If every address fails (its message names each URL tried, the reason,
        and the destination); :class:`DownloadChecksumError` when the content
        was downloaded but has the wrong checksum.
    """
    if key not in FILES:
        raise ValueError(f"unknown data file key={key!r}; known: {sorted(FILES)}")
    for name, value in (("timeout", timeout), ("deadline", deadline)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ValueError(f"retries must be an int in [0, 10], got {retries!r}")
    spec = FILES[key]
    dirs = _search_dirs(data_dir)
    damaged: list[str] = []
    for folder in dirs:
        candidate = folder / spec.path
        if not candidate.is_file():
            continue
        try:
            actual = sha256sum(candidate)
        except OSError as err:
            damaged.append(f"{candidate} cannot be read ({err})")
            warnings.warn(f"skipping {candidate}: cannot be read ({err})", stacklevel=2)
            continue
        if actual == spec.sha256:
            return candidate
        damaged.append(_mismatch(candidate, actual, spec))
        warnings.warn(f"skipping {candidate}: sha256 {actual} is not the recorded {spec.sha256}", stacklevel=2)
    if not download:
        if damaged:
            raise ChecksumError("; ".join(damaged) + " (and download=False)")
        raise FileNotFoundError(
            f"{spec.path} not found in {', '.join(str(d) for d in dirs)} and download=False"
        )
    target = cache_dir() / "data" / spec.path
    if url is None:
        sources = [spec.url, *spec.mirrors]
    elif isinstance(url, str):
        sources = [url]
    else:
        sources = [str(u) for u in url]
        if not sources:
            raise ValueError("url: expected at least one address")
    end = time.monotonic() + float(deadline)
    failures: list[DownloadError] = []
    for source in sources:
        try:
            _fetch_one(source, spec, target, float(timeout), end, retries, float(deadline))
            return target
        except DownloadError as err:
            failures.append(err)
    if len(failures) == 1:
        raise failures[0]
    kind = DownloadChecksumError if all(isinstance(f, ChecksumError) for f in failures) else DownloadError
    raise kind(f"every address for {spec.path} failed: " + "; ".join(str(f) for f in failures))


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    urls: dict[str, str | Sequence[str]] | None = None,
    timeout: float = 30.0,
    deadline: float = 600.0,
) -> dict[str, Path]:
    """Verified paths of every raw file of a data set.

    Parameters
    ----------
    name : {"mushroom", "shuttle", "hate_speech", "obd"}
        Data set.
    data_dir : path-like, optional
        Folder to look in first.
    download : bool, default True
        Fetch missing files from the official sources.
    urls : dict, optional
        Replacement download address(es) per file key (see :func:`fetch_file`).
    timeout : float, default 30
        Seconds one socket read may wait.
    deadline : float, default 600
        Seconds each file's download may take in all.

    Returns
    -------
    dict
        File key -> path.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set name={name!r}; known: {sorted(DATASETS)}")
    urls = urls or {}
    return {
        key: fetch_file(key, data_dir, download=download, url=urls.get(key), timeout=timeout, deadline=deadline)
        for key in DATASETS[name]
    }


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


@dataclass
class TabularData:
    """A labelled table before encoding.

    Attributes
    ----------
    features : numpy.ndarray
        (n, p) array: ``<U`` strings for categorical data sets, float64 for
        numeric ones.
    target : numpy.ndarray
        (n,) int64 class indices in ``0 .. len(classes) - 1``.
    classes : list of str
        Name of every class index.
    feature_names : list of str
        Name of every column of ``features``.
    categorical : numpy.ndarray
        (p,) bool, True where a column is categorical.
    name : str
        Data set name.
    """

    features: np.ndarray
    target: np.ndarray
    classes: list[str]
    feature_names: list[str]
    categorical: np.ndarray
    name: str = ""


@dataclass
class TextData:
    """Labelled texts.

    Attributes
    ----------
    texts : list of str
        Raw texts.
    target : numpy.ndarray
        (n,) int64 class per text.
    classes : list of str
        Name of every class index.
    votes : numpy.ndarray
        (n, n_classes) int64 annotator votes per class.
    sha256 : str
        Checksum of the source file, to key derived caches (embeddings).
    name : str
        Data set name.
    """

    texts: list[str]
    target: np.ndarray
    classes: list[str]
    votes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    sha256: str = ""
    name: str = ""


MUSHROOM_ATTRIBUTES = [
    "cap-shape", "cap-surface", "cap-color", "bruises", "odor", "gill-attachment",
    "gill-spacing", "gill-size", "gill-color", "stalk-shape", "stalk-root",
    "stalk-surface-above-ring", "stalk-surface-below-ring", "stalk-color-above-ring",
    "stalk-color-below-ring", "veil-type", "veil-color", "ring-number", "ring-type",
    "spore-print-color", "population", "habitat",
]  # fmt: skip

SHUTTLE_CLASSES = ["Rad Flow", "Fpv Close", "Fpv Open", "High", "Bypass", "Bpv Close", "Bpv Open"]


def load_mushroom(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> TabularData:
    """UCI Mushroom: 8124 mushrooms, 22 categorical attributes, edible or poisonous.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder holding ``mushroom/agaricus-lepiota.data``.
    download : bool, default True
        Download from UCI when no folder has the file.

    Returns
    -------
    TabularData
        Features as single-letter strings (``"?"`` marks the 2480 missing
        ``stalk-root`` values and is kept as a category of its own); classes
        ``["edible", "poisonous"]`` (4208 and 3916 rows).
    """
    path = fetch_file("mushroom", data_dir, download=download)
    rows = [line.split(",") for line in path.read_text(encoding="ascii").splitlines() if line]
    table = np.array(rows, dtype="<U1")
    if table.ndim != 2 or table.shape[1] != 23:
        raise ValueError(f"{path}: expected 23 comma-separated fields per line, got {table.shape}")
    labels = table[:, 0]
    bad = ~np.isin(labels, ["e", "p"])
    if bad.any():
        raise ValueError(f"{path}: unknown class {labels[bad][0]!r} (expected 'e' or 'p')")
    return TabularData(
        features=table[:, 1:],
        target=(labels == "p").astype(np.int64),
        classes=["edible", "poisonous"],
        feature_names=list(MUSHROOM_ATTRIBUTES),
        categorical=np.ones(22, dtype=bool),
        name="mushroom",
    )


def load_shuttle(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split: str = "all",
    download: bool = True,
) -> TabularData:
    """UCI Statlog Shuttle: 9 numeric attributes, 7 classes.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder holding ``shuttle/shuttle.trn`` and ``shuttle/shuttle.tst``.
    split : {"all", "train", "test"}, default "all"
        ``"train"`` has 43500 rows, ``"test"`` 14500, ``"all"`` both (58000,
        training rows first).
    download : bool, default True
        Download from UCI when no folder has the files.

    Returns
    -------
    TabularData
        float64 features (the first is time); class index = UCI class - 1, so
        0 is Rad Flow (45586 of 58000 rows).
    """
    keys = {"all": ("shuttle-train", "shuttle-test"), "train": ("shuttle-train",), "test": ("shuttle-test",)}
    if split not in keys:
        raise ValueError(f"split must be one of {sorted(keys)}, got split={split!r}")
    parts = []
    for key in keys[split]:
        path = fetch_file(key, data_dir, download=download)
        table = np.loadtxt(path, dtype=np.int64, ndmin=2)
        if table.shape[1] != 10:
            raise ValueError(f"{path}: expected 10 integers per line, got {table.shape[1]}")
        parts.append(table)
    table = np.concatenate(parts)
    target = table[:, 9] - 1
    if target.min() < 0 or target.max() > 6:
        raise ValueError("shuttle: class labels outside 1..7")
    return TabularData(
        features=table[:, :9].astype(np.float64),
        target=target,
        classes=list(SHUTTLE_CLASSES),
        feature_names=["time"] + [f"a{i}" for i in range(2, 10)],
        categorical=np.zeros(9, dtype=bool),
        name="shuttle",
    )


HATE_SPEECH_CLASSES = ["hate_speech", "offensive_language", "neither"]


def load_hate_speech(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> TextData:
    """Davidson et al. (2017) tweets labelled hate speech, offensive, or neither.

    **The texts contain racist, sexist, homophobic and otherwise offensive
    language.**

    Parameters
    ----------
    data_dir : path-like, optional
        Folder holding ``hate_speech/labeled_data.csv``.
    download : bool, default True
        Download from the authors' GitHub repository when no folder has it.

    Returns
    -------
    TextData
        24783 tweets; ``target`` is the majority class (0 hate speech, 1430
        rows; 1 offensive language, 19190; 2 neither, 4163) and ``votes`` the
        annotators' counts for the three classes.
    """
    path = fetch_file("hate-speech", data_dir, download=download)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        expected = ["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"]
        if header != expected:
            raise ValueError(f"{path}: unexpected header {header}, expected {expected}")
        texts: list[str] = []
        target: list[int] = []
        votes: list[tuple[int, int, int]] = []
        for row in reader:
            texts.append(row[6])
            target.append(int(row[5]))
            votes.append((int(row[2]), int(row[3]), int(row[4])))
    return TextData(
        texts=texts,
        target=np.asarray(target, dtype=np.int64),
        classes=list(HATE_SPEECH_CLASSES),
        votes=np.asarray(votes, dtype=np.int64),
        sha256=FILES["hate-speech"].sha256,
        name="hate_speech",
    )


def load_tabular(name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> TabularData:
    """Load ``"mushroom"`` or ``"shuttle"`` (all rows) by name.

    Parameters
    ----------
    name : {"mushroom", "shuttle"}
        Data set.
    data_dir : path-like, optional
        Folder to look in first.
    download : bool, default True
        Download when missing.

    Returns
    -------
    TabularData
    """
    if name == "mushroom":
        return load_mushroom(data_dir, download=download)
    if name == "shuttle":
        return load_shuttle(data_dir, download=download)
    raise ValueError(f"unknown tabular data set name={name!r}; known: ['mushroom', 'shuttle']")


def encode_tabular(
    features: np.ndarray,
    categorical: Sequence[bool] | np.ndarray | None = None,
    *,
    drop_constant: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Encode a table as float64 features: one-hot categories, standardised numbers.

    Categorical columns become one indicator per observed value, in sorted
    order of the values. Numeric columns are standardised to mean 0 and
    standard deviation 1 over all rows (the bandit sees every row once, so
    there is no held-out split to leak into). Columns with a single value
    carry no information and are dropped when ``drop_constant`` is true
    (Mushroom's ``veil-type``).

    Parameters
    ----------
    features : numpy.ndarray
        (n, p) table; string or object columns must be marked categorical.
    categorical : sequence of bool, optional
        (p,) flags; default: every column of a string table, none of a
        numeric one.
    drop_constant : bool, default True
        Drop columns that take a single value.

    Returns
    -------
    encoded : numpy.ndarray
        (n, d_x) float64.
    names : list of str
        ``"<column>=<value>"`` for indicators, ``"<column>"`` for numbers
        (columns named by index).
    """
    table = np.asarray(features)
    if table.ndim != 2:
        raise ValueError(f"features must be a 2-d (n, p) array, got shape {table.shape}")
    if table.shape[0] == 0:
        raise ValueError("features has no rows")
    if categorical is None:
        flags = np.full(table.shape[1], table.dtype.kind in "USO")
    else:
        flags = np.asarray(categorical, dtype=bool)
        if flags.shape != (table.shape[1],):
            raise ValueError(
                f"categorical must have one flag per column ({table.shape[1]}), got shape {flags.shape}"
            )
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for j in range(table.shape[1]):
        column = table[:, j]
        if flags[j]:
            values, codes = np.unique(column.astype(str), return_inverse=True)
            if drop_constant and len(values) == 1:
                continue
            blocks.append(np.eye(len(values))[codes])
            names.extend(f"{j}={v}" for v in values)
        else:
            try:
                numbers = column.astype(np.float64)
            except ValueError as err:
                raise TypeError(f"column {j} is not numeric; mark it categorical ({err})") from None
            if not np.isfinite(numbers).all():
                raise ValueError(f"features column {j} has NaN or inf values")
            std = numbers.std()
            if std == 0:
                if drop_constant:
                    continue
                std = 1.0
            blocks.append(((numbers - numbers.mean()) / std)[:, None])
            names.append(f"{j}")
    if not blocks:
        raise ValueError("every column of features is constant; nothing to encode")
    return np.concatenate(blocks, axis=1), names


# ---------------------------------------------------------------------------
# Open Bandit Dataset
# ---------------------------------------------------------------------------


@dataclass
class BanditLog:
    """One logged bandit data set: who was shown what, with which probability, and the reward.

    Attributes
    ----------
    behaviour : str
        The logging policy (``"random"`` or ``"bts"`` for the Open Bandit Dataset).
    campaign : str
        Campaign (``"all"``, ``"men"``, ``"women"``).
    n_actions : int
        Number of items ``K``.
    action : numpy.ndarray
        (n,) int64 item shown, in ``0 .. K - 1``.
    position : numpy.ndarray
        (n,) int64 slot of the page it was shown in, 0-based (the file's 1, 2, 3 minus one).
    reward : numpy.ndarray
        (n,) float64 click (0 or 1).
    propensity : numpy.ndarray
        (n,) float64 probability that the logging policy showed that item in that slot, in (0, 1].
    timestamp : numpy.ndarray
        (n,) ``datetime64[us]`` (UTC).
    user_features : numpy.ndarray
        (n, 4) strings: the four hashed categorical user features.
    affinity : numpy.ndarray
        (n, K) float64 user-item affinities.
    item_numeric : numpy.ndarray
        (K,) float64 ``item_feature_0``.
    item_categorical : numpy.ndarray
        (K, 3) strings: hashed ``item_feature_1..3``.
    """

    behaviour: str
    campaign: str
    n_actions: int
    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    timestamp: np.ndarray
    user_features: np.ndarray
    affinity: np.ndarray
    item_numeric: np.ndarray
    item_categorical: np.ndarray

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def validate(self) -> BanditLog:
        """Check shapes, ranges and finiteness; return ``self`` or raise ValueError naming the field."""
        n, K = len(self), self.n_actions
        want = {"action": (n,), "position": (n,), "reward": (n,), "propensity": (n,), "timestamp": (n,),
                "affinity": (n, K), "item_numeric": (K,)}
        for name, shape in want.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {np.shape(getattr(self, name))}")
        if np.ndim(self.user_features) != 2 or np.shape(self.user_features)[0] != n:
            raise ValueError(f"user_features: expected shape ({n}, p), got {np.shape(self.user_features)}")
        if np.ndim(self.item_categorical) != 2 or np.shape(self.item_categorical)[0] != K:
            raise ValueError(f"item_categorical: expected shape ({K}, q), got {np.shape(self.item_categorical)}")
        if not np.issubdtype(np.asarray(self.action).dtype, np.integer) or n and (
                self.action.min() < 0 or self.action.max() >= K):
            raise ValueError(f"action: expected integer item indices in [0, {K})")
        for name in ("reward", "affinity", "item_numeric"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name}: contains NaN or infinite values")
        p = np.asarray(self.propensity, dtype=np.float64)
        if not (np.all(np.isfinite(p)) and np.all(p > 0) and np.all(p <= 1)):
            raise ValueError("propensity: every value must lie in (0, 1]")
        return self


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="ascii") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file") from None
        rows = list(reader)
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise ValueError(f"{path}: row {bad + 1} has {len(rows[bad])} fields, the header {len(header)}")
    return header, rows


def load_obd(
    behaviour: str = "random",
    campaign: str = "all",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> BanditLog:
    """The small Open Bandit Dataset (Saito et al. 2021): 10,000 ZOZOTOWN impressions per file.

    Each campaign was logged once by a uniform random policy (propensity
    exactly ``1 / K``) and once by Bernoulli Thompson sampling (logged
    propensities). The files come from ``data_dir``, ``ENSEMBLEPP_DATA`` or
    the cache, else from the authors' ``obp`` repository on GitHub (pinned
    commit :data:`OBD_COMMIT`), checked against their sha256 (module docstring).

    Parameters
    ----------
    behaviour : {"random", "bts"}, default "random"
        Logging policy.
    campaign : {"all", "men", "women"}, default "all"
        Campaign (80, 34 and 46 items).
    data_dir : path-like, optional
        Folder holding ``obd/{behaviour}/{campaign}/{campaign}.csv`` and ``item_context.csv``.
    download : bool, default True
        Download when no folder has a valid copy.

    Returns
    -------
    BanditLog
        Rows in the file's (time) order.

    Raises
    ------
    ValueError
        For an unknown behaviour or campaign, or a file whose content breaks the
        format (unknown column layout, item or propensity out of range, non-finite values).
    """
    if behaviour not in OBD_BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {list(OBD_BEHAVIOURS)}, got behaviour={behaviour!r}")
    if campaign not in OBD_CAMPAIGNS:
        raise ValueError(f"campaign must be one of {list(OBD_CAMPAIGNS)}, got campaign={campaign!r}")
    K = OBD_CAMPAIGNS[campaign]
    log_path = fetch_file(f"obd-{behaviour}-{campaign}-log", data_dir, download=download)
    item_path = fetch_file(f"obd-{behaviour}-{campaign}-items", data_dir, download=download)
    with open(log_path, newline="", encoding="ascii") as handle:
        header = next(csv.reader(handle), [])
    expected = ["", "timestamp", "item_id", "position", "click", "propensity_score",
                *(f"user_feature_{i}" for i in range(4)), *(f"user-item_affinity_{k}" for k in range(K))]
    if header != expected:
        raise ValueError(f"{log_path}: unexpected columns {header[:12]}... (expected {expected[:12]}...)")
    try:
        # NumPy's C parser: ten times faster than converting csv-module strings.
        numbers = np.loadtxt(log_path, delimiter=",", skiprows=1, ndmin=2,
                             usecols=[2, 3, 4, 5, *range(10, 10 + K)], dtype=np.float64)
        text = np.loadtxt(log_path, delimiter=",", skiprows=1, ndmin=2, usecols=[1, 6, 7, 8, 9], dtype=str,
                          encoding="ascii")
    except ValueError as err:
        raise ValueError(f"{log_path}: malformed row ({err})") from None
    if numbers.shape[0] == 0:
        raise ValueError(f"{log_path}: no rows")
    if not np.all(numbers[:, :2] == np.round(numbers[:, :2])):
        raise ValueError(f"{log_path}: item_id and position must be integers")
    action = numbers[:, 0].astype(np.int64)
    position = numbers[:, 1].astype(np.int64) - 1
    reward = numbers[:, 2].copy()
    propensity = numbers[:, 3].copy()
    affinity = numbers[:, 4:].copy()
    table = text
    if action.min() < 0 or action.max() >= K:
        raise ValueError(f"{log_path}: item_id outside 0..{K - 1}")
    if not np.isin(reward, (0.0, 1.0)).all():
        raise ValueError(f"{log_path}: click must be 0 or 1")
    if not (np.isfinite(propensity).all() and (propensity > 0).all() and (propensity <= 1).all()):
        raise ValueError(f"{log_path}: propensity_score must lie in (0, 1]")
    if not np.isfinite(affinity).all():
        raise ValueError(f"{log_path}: user-item affinities must be finite")
    # "2019-11-24 00:00:17.004101+00:00": every stamp is UTC, so the offset is dropped.
    stamps = np.char.replace(np.char.replace(table[:, 0], "+00:00", ""), " ", "T")
    try:
        timestamp = stamps.astype("datetime64[us]")
    except ValueError as err:
        raise ValueError(f"{log_path}: malformed timestamp ({err})") from None
    iheader, irows = _read_csv(item_path)
    iexpected = ["", "item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3"]
    if iheader != iexpected:
        raise ValueError(f"{item_path}: unexpected columns {iheader} (expected {iexpected})")
    items = np.array(irows, dtype=str)
    if items.shape[0] != K or not np.array_equal(items[:, 1].astype(np.int64), np.arange(K)):
        raise ValueError(f"{item_path}: expected item_id 0..{K - 1} in order")
    item_numeric = items[:, 2].astype(np.float64)
    if not np.isfinite(item_numeric).all():
        raise ValueError(f"{item_path}: item_feature_0 must be finite")
    return BanditLog(
        behaviour=behaviour, campaign=campaign, n_actions=K, action=action, position=position,
        reward=reward, propensity=propensity, timestamp=timestamp, user_features=table[:, 1:5].copy(),
        affinity=affinity, item_numeric=item_numeric, item_categorical=items[:, 3:6].copy(),
    )


@dataclass
class OBDFeatures:
    """Encoded Open Bandit Dataset features.

    Categorical features (the hashed strings) become one indicator per value
    seen in the log, sorted; the numeric ``item_feature_0`` is standardised
    over the items; affinities stay as they are (small non-negative counts,
    mostly 0). User features are the same for every item of an impression, so
    in a linear score they shift every item equally and cannot change which one
    is chosen: :meth:`actions` leaves them out unless ``with_user=True`` (they
    matter for a reward model's level, not for the choice).

    Attributes
    ----------
    user : numpy.ndarray
        (n, p_u) one-hot user features.
    item : numpy.ndarray
        (K, p_v): a constant 1, standardised ``item_feature_0``, one-hot ``item_feature_1..3``.
    affinity : numpy.ndarray
        (n, K) user-item affinities.
    user_names, item_names : list of str
        Column names.
    """

    user: np.ndarray
    item: np.ndarray
    affinity: np.ndarray
    user_names: list[str]
    item_names: list[str]

    def dim(self, with_user: bool = False) -> int:
        """Width ``d`` of one action's feature vector from :meth:`actions`."""
        return self.item.shape[1] + 1 + (self.user.shape[1] if with_user else 0)

    def actions(self, row: int, with_user: bool = False) -> np.ndarray:
        """Feature vectors of every item for impression ``row``: ``(K, d)`` float64.

        Columns: the item block, the user-item affinity, then (``with_user``)
        the user's one-hot block repeated on every item.
        """
        n = self.affinity.shape[0]
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not -n <= row < n:
            raise IndexError(f"row must be an int in [0, {n}), got {row!r}")
        parts = [self.item, self.affinity[row][:, None]]
        if with_user:
            parts.append(np.broadcast_to(self.user[row], (self.item.shape[0], self.user.shape[1])))
        return np.concatenate(parts, axis=1)


def _one_hot(column: np.ndarray, prefix: str) -> tuple[np.ndarray, list[str]]:
    values, codes = np.unique(column, return_inverse=True)
    return np.eye(len(values))[codes.reshape(-1)], [f"{prefix}={v}" for v in values]


def obd_features(log: BanditLog) -> OBDFeatures:
    """Encode a :class:`BanditLog` of the Open Bandit Dataset (see :class:`OBDFeatures`).

    Parameters
    ----------
    log : BanditLog
        From :func:`load_obd`.

    Returns
    -------
    OBDFeatures
    """
    if not isinstance(log, BanditLog):
        raise TypeError(f"log must be a BanditLog, got {type(log).__name__}")
    log.validate()
    user_blocks, user_names = [], []
    for j in range(log.user_features.shape[1]):
        block, names = _one_hot(log.user_features[:, j], f"user_feature_{j}")
        user_blocks.append(block)
        user_names += names
    num = log.item_numeric
    std = num.std()
    item_blocks = [np.ones((log.n_actions, 1)), ((num - num.mean()) / (std if std > 0 else 1.0))[:, None]]
    item_names = ["bias", "item_feature_0"]
    for j in range(log.item_categorical.shape[1]):
        block, names = _one_hot(log.item_categorical[:, j], f"item_feature_{j + 1}")
        item_blocks.append(block)
        item_names += names
    return OBDFeatures(user=np.concatenate(user_blocks, axis=1), item=np.concatenate(item_blocks, axis=1),
                       affinity=log.affinity, user_names=user_names, item_names=item_names)
