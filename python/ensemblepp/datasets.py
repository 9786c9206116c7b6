"""Real data sets: UCI Mushroom, UCI Statlog Shuttle and the Davidson et al. tweets.

The package ships none of the data. Every loader looks for the raw files, in
this order,

1. in ``data_dir`` when it is given,
2. in the folder named by the environment variable ``ENSEMBLEPP_DATA``,
3. in the cache (``ENSEMBLEPP_CACHE``, default ``~/.cache/ensemblepp``),

and, when none of them has the file and ``download`` is true, fetches it from
the data set's official source into the cache. Every file is checked against
the sha256 recorded in :data:`FILES` wherever it comes from, so a corrupt copy
never reaches an experiment. Files are looked up under the same relative paths
in every folder (``mushroom/agaricus-lepiota.data``, ``shuttle/shuttle.trn``,
``shuttle/shuttle.tst``, ``hate_speech/labeled_data.csv``), which is the layout
of the project's ``shared/data`` folder.

UCI ships the Shuttle training set compressed with Unix ``compress``
(``shuttle.trn.Z``); :func:`lzw_decompress` reads that format, so no external
tool is needed. A folder that already holds the uncompressed ``shuttle.trn``
is used as it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "FILES",
    "DATASETS",
    "RemoteFile",
    "TabularData",
    "TextData",
    "ChecksumError",
    "DownloadError",
    "cache_dir",
    "fetch",
    "fetch_file",
    "sha256sum",
    "lzw_decompress",
    "load_mushroom",
    "load_shuttle",
    "load_hate_speech",
    "load_tabular",
    "encode_tabular",
]


class ChecksumError(ValueError):
    """A data file does not have the sha256 recorded for it."""


class DownloadError(RuntimeError):
    """A data file could not be downloaded or extracted."""


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
    """

    path: str
    sha256: str
    url: str
    member: str | None = None
    compression: str | None = None


_UCI_MUSHROOM = "https://archive.ics.uci.edu/static/public/73/mushroom.zip"
_UCI_SHUTTLE = "https://archive.ics.uci.edu/static/public/148/statlog+shuttle.zip"
_DAVIDSON = (
    "https://raw.githubusercontent.com/t-davidson/hate-speech-and-offensive-language/"
    "master/data/labeled_data.csv"
)

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

#: Data set name -> keys of :data:`FILES` it needs.
DATASETS: dict[str, tuple[str, ...]] = {
    "mushroom": ("mushroom",),
    "shuttle": ("shuttle-train", "shuttle-test"),
    "hate_speech": ("hate-speech",),
}

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Folder where downloads and derived files (embeddings) are cached.

    Returns
    -------
    pathlib.Path
        ``$ENSEMBLEPP_CACHE`` when set, else ``~/.cache/ensemblepp``. It is not
        created here.
    """
    env = os.environ.get("ENSEMBLEPP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ensemblepp"


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
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, spec: RemoteFile) -> Path:
    actual = sha256sum(path)
    if actual != spec.sha256:
        raise ChecksumError(
            f"checksum mismatch for {path}: sha256 is {actual}, expected {spec.sha256} "
            f"(the file is corrupt, truncated or a different version; delete it or point "
            f"data_dir / ENSEMBLEPP_DATA at a verified copy)"
        )
    return path


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
# Unix compress (.Z) decoding
# ---------------------------------------------------------------------------


def lzw_decompress(data: bytes) -> bytes:
    """Decode a Unix ``compress`` (``.Z``, LZW) stream.

    The format (magic ``1f 9d``, a flag byte with the maximum code width and
    the block-mode bit, then variable-width codes packed least significant bit
    first) is that of the ``compress`` utility, which ``gzip -d`` also reads.
    The encoder writes codes in groups of eight, and when the code width grows
    or the table is cleared it pads the current group to its full size; the
    decoder skips that padding.

    Parameters
    ----------
    data : bytes
        The whole compressed file.

    Returns
    -------
    bytes
        The decompressed content.

    Raises
    ------
    ValueError
        If ``data`` is not a valid ``.Z`` stream.
    """
    if len(data) < 3 or data[0] != 0x1F or data[1] != 0x9D:
        raise ValueError("data is not a Unix compress (.Z) stream: bad magic bytes")
    flags = data[2]
    max_bits = flags & 0x1F
    block_mode = bool(flags & 0x80)
    if not 9 <= max_bits <= 16:
        raise ValueError(f"data is not a valid .Z stream: maximum code width {max_bits}")
    clear_code = 256
    first_free = 257 if block_mode else 256
    payload = memoryview(data)[3:]
    total_bits = len(payload) * 8
    # The whole payload as one little-endian integer would be quadratic to
    # slice; reading byte windows keeps every code extraction O(1).
    out = bytearray()
    prefixes: list[bytes] = [bytes([i]) for i in range(256)]
    if block_mode:
        prefixes.append(b"")
    n_bits = 9
    max_code = (1 << n_bits) - 1
    pos = 0  # bit position in payload
    group_start = 0  # bit position where codes of the current width began
    previous: bytes | None = None
    while pos + n_bits <= total_bits:
        if len(prefixes) > max_code:
            pos = _skip_to_group(pos, group_start, n_bits)
            n_bits += 1
            # At the maximum width the limit is the table size, so the width
            # stops growing. With max_bits = 9 this grows the codes to 10 bits
            # once the table is full, as gzip -d reads such files (ncompress
            # 4.2.4 disagrees; no real data set uses 9-bit archives).
            max_code = (1 << max_bits) if n_bits == max_bits else (1 << n_bits) - 1
            group_start = pos
            continue
        byte = pos >> 3
        window = int.from_bytes(payload[byte : byte + 3], "little")
        code = (window >> (pos & 7)) & ((1 << n_bits) - 1)
        pos += n_bits
        if block_mode and code == clear_code:
            del prefixes[first_free:]
            pos = _skip_to_group(pos, group_start, n_bits)
            n_bits = 9
            max_code = (1 << n_bits) - 1
            group_start = pos
            previous = None
            continue
        if code < len(prefixes) and not (block_mode and code == clear_code):
            entry = prefixes[code]
        elif code == len(prefixes) and previous is not None:
            entry = previous + previous[:1]  # the KwKwK case
        else:
            raise ValueError(f"corrupt .Z stream: code {code} at bit {pos - n_bits} is undefined")
        out += entry
        if previous is not None and len(prefixes) < (1 << max_bits):
            prefixes.append(previous + entry[:1])
        previous = entry
    return bytes(out)


def _skip_to_group(pos: int, group_start: int, n_bits: int) -> int:
    # Codes of one width come in groups of 8, i.e. n_bits bytes; a partial
    # group is padded to its full length by the encoder.
    group = n_bits * 8
    used = (pos - group_start) % group
    return pos if used == 0 else pos + group - used


# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------


def _download(url: str, destination: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "ensemblepp"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DownloadError(
            f"could not download {url}: {err}. Without network access, download the file by "
            f"hand and pass its folder as data_dir= or in ENSEMBLEPP_DATA"
        ) from err


def _extract(archive: Path, spec: RemoteFile) -> bytes:
    if spec.member is None:
        return archive.read_bytes()
    try:
        with zipfile.ZipFile(archive) as zf:
            names = {Path(n).name: n for n in zf.namelist()}
            if spec.member not in names:
                raise DownloadError(
                    f"{spec.url} has no member {spec.member!r} (members: {sorted(names)})"
                )
            raw = zf.read(names[spec.member])
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{spec.url} is not a valid zip archive: {err}") from err
    if spec.compression == "Z":
        try:
            raw = lzw_decompress(raw)
        except ValueError as err:
            raise DownloadError(f"could not decompress {spec.member} from {spec.url}: {err}") from err
    return raw


def fetch_file(
    key: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Path of one verified raw file, downloading it into the cache if needed.

    Parameters
    ----------
    key : str
        A key of :data:`FILES` (``"mushroom"``, ``"shuttle-train"``,
        ``"shuttle-test"``, ``"hate-speech"``).
    data_dir : path-like, optional
        Folder to look in first (layout as in :data:`FILES`).
    download : bool, default True
        Fetch from the official source when no folder has the file.
    url : str, optional
        Address to download from instead of the official one (a mirror, or a
        local server in tests). It must serve the same content: a zip archive
        when the official source is one.
    timeout : float, default 60
        Seconds before a stalled download is abandoned.

    Returns
    -------
    pathlib.Path
        A file whose sha256 matches the record.

    Raises
    ------
    ValueError
        If ``key`` is unknown.
    ChecksumError
        If a file found or downloaded has the wrong checksum.
    FileNotFoundError
        If no folder has the file and ``download`` is false.
    DownloadError
        If the download or extraction fails.
    """
    if key not in FILES:
        raise ValueError(f"unknown data file key={key!r}; known: {sorted(FILES)}")
    spec = FILES[key]
    dirs = _search_dirs(data_dir)
    for folder in dirs:
        candidate = folder / spec.path
        if candidate.is_file():
            return _verify(candidate, spec)
    if not download:
        raise FileNotFoundError(
            f"{spec.path} not found in {', '.join(str(d) for d in dirs)} and download=False"
        )
    target = cache_dir() / "data" / spec.path
    target.parent.mkdir(parents=True, exist_ok=True)
    source = url or spec.url
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fetched = Path(tmp) / "download"
        _download(source, fetched, timeout)
        content = _extract(fetched, spec) if spec.member or spec.compression else fetched.read_bytes()
        staged = Path(tmp) / Path(spec.path).name
        staged.write_bytes(content)
        try:
            _verify(staged, spec)
        except ChecksumError as err:
            raise ChecksumError(f"downloaded from {source}: {err}") from None
        # Atomic so that an interrupted run never leaves a half-written file
        # that a later run would find.
        os.replace(staged, target)
    return target


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    urls: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Verified paths of every raw file of a data set.

    Parameters
    ----------
    name : {"mushroom", "shuttle", "hate_speech"}
        Data set.
    data_dir : path-like, optional
        Folder to look in first.
    download : bool, default True
        Fetch missing files from the official sources.
    urls : dict, optional
        Replacement download address per file key (see :func:`fetch_file`).
    timeout : float, default 60
        Seconds before a stalled download is abandoned.

    Returns
    -------
    dict
        File key -> path.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set name={name!r}; known: {sorted(DATASETS)}")
    urls = urls or {}
    return {
        key: fetch_file(key, data_dir, download=download, url=urls.get(key), timeout=timeout)
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
