"""Model files: one validated format for the linear policies and the neural agents.

A model file is a ZIP archive of uncompressed (stored) entries:

* ``meta.json``: format name and version, family (``"linear"`` or ``"neural"``), class,
  device, the constructor's hyperparameters, JSON-only parts of the state, the shape and
  dtype of every array, and a SHA-256 digest of all of it;
* one ``.npy`` entry per array (NumPy's format, read with ``allow_pickle=False``).

Nothing is trusted before it is checked. :func:`load` reads the archive's central directory
first (number of entries, compression method, declared sizes against the file's size and
against the sizes the hyperparameters imply) so that a small file cannot make it allocate or
decompress much; then every array's header (shape, dtype, byte order, layout) before its data;
then the CRC of every entry, the digest, finiteness and the invariants of the representation;
only then is an agent built. Every failure is a :class:`ModelFileError` naming the file and
the field. No pickle is ever loaded: the neural state is stored as arrays plus JSON and given
to the agents' own strict ``load_state_dict``.

Writes are atomic: the archive is written to a temporary file in the target's folder,
flushed and fsynced, then moved over the target with :func:`os.replace`, so a process killed
during :meth:`save` leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["ModelFileError", "save", "load", "FORMAT", "VERSION"]

FORMAT = "ensemblepp-model"
VERSION = 2  # 2: linear state holds the covariance square root L (was the precision factor U)
# Versions read: 1 (linear state as the precision factor ``prec`` and the accumulator F, converted
# on load; neural files are the same in both) and 2.
_READS = (1, 2)
_META = "meta.json"
_MAX_META_BYTES = 64 * 2**20  # JSON of a neural agent with a text buffer stays far below
_MAX_ENTRIES = 100_000
_SEAL_BYTES = 64  # hex SHA-256 of the whole file before it, kept in the archive comment
_NPY_HEADER_MAX = 4096  # the .npy preamble and header NumPy writes for these arrays
_META_KEYS = {"format", "version", "family", "class", "device", "hyperparameters", "state", "arrays", "digest"}


class ModelFileError(ValueError):
    """A model file that cannot be loaded: missing, damaged, crafted, or from another format.

    Attributes
    ----------
    path : str
        The file.
    field : str
        The part of the file that is wrong (``"archive"``, ``"meta.json"``, a hyperparameter
        or an array name).
    """

    def __init__(self, path: Any, field: str, reason: str) -> None:
        self.path = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
        self.field = field
        super().__init__(f"{self.path}: {field}: {reason}")


# ---- writing -----------------------------------------------------------------------------------
def _digest(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "digest"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        h.update(name.encode() + b"\0")
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def _file_hash(f: Any, length: int) -> str:
    """SHA-256 of the first ``length`` bytes of the open binary file ``f``, read in chunks."""
    h = hashlib.sha256()
    f.seek(0)
    left = length
    while left > 0:
        chunk = f.read(min(left, 2**20))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _seal(f: Any) -> None:
    """Write the SHA-256 of everything before it into the archive comment (the file's last bytes).

    The comment's length is part of the hashed end-of-directory record, so a flipped bit
    anywhere in the file -- data, local headers, timestamps, the directory -- is detected.
    """
    f.flush()
    size = f.seek(0, os.SEEK_END)
    digest = _file_hash(f, size - _SEAL_BYTES)
    f.seek(size - _SEAL_BYTES)
    f.write(digest.encode("ascii"))


def _write_archive(path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``meta`` and ``arrays`` (the meta gets the array table and digest)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf" or a.dtype.byteorder == ">":
            raise TypeError(f"{k}: cannot store dtype {a.dtype} in a model file")
    meta = dict(meta, format=FORMAT, version=VERSION,
                arrays={k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()})
    meta["digest"] = _digest(meta, arrays)
    target = Path(os.fspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                zf.comment = bytes(_SEAL_BYTES)  # replaced by the file's checksum below
                zf.writestr(_META, json.dumps(meta, allow_nan=False))
                for name, a in arrays.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, a, allow_pickle=False)
            _seal(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save(agent: Any, path: str | os.PathLike) -> None:
    """Write ``agent`` (a linear policy or a neural agent) to ``path`` atomically.

    Parameters
    ----------
    agent : LinearPolicy or NeuralAgent
        The agent; it is not changed.
    path : str or path-like
        The file; an existing file is replaced only once the new one is complete on disk.

    Raises
    ------
    TypeError
        For an agent that cannot be stored (a neural agent built with a custom module).
    """
    from ensemblepp.linear import LinearPolicy  # noqa: PLC0415

    if isinstance(agent, LinearPolicy):
        meta, arrays = _linear_record(agent)
    elif type(agent).__module__.startswith("ensemblepp.neural"):
        meta, arrays = _neural_record(agent)
    else:
        raise TypeError(f"agent: expected an ensemblepp linear or neural agent, got {type(agent).__name__}")
    _write_archive(path, meta, arrays)


# ---- reading -----------------------------------------------------------------------------------
class _Archive:
    """An opened model file whose directory has been checked; arrays are read on request."""

    def __init__(self, path: Any, zf: zipfile.ZipFile, size: int) -> None:
        self.path, self.zf, self.size = path, zf, size
        self.meta: dict[str, Any] = {}

    def fail(self, field: str, reason: str) -> ModelFileError:
        return ModelFileError(self.path, field, reason)

    def check_directory(self) -> None:
        infos = self.zf.infolist()
        if len(infos) > _MAX_ENTRIES:
            raise self.fail("archive", f"{len(infos)} entries, more than a model file holds")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise self.fail("archive", "repeated entry names")
        total = 0
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise self.fail(info.filename, "compressed entry (model files store entries uncompressed)")
            if info.file_size != info.compress_size or info.header_offset + info.compress_size > self.size:
                raise self.fail(info.filename, f"declares {info.file_size} bytes, beyond the file's {self.size}")
            if info.flag_bits & 0x1:
                raise self.fail(info.filename, "encrypted entry")
            total += info.file_size
        if total > self.size:
            raise self.fail("archive", f"entries declare {total} bytes in a file of {self.size}")
        if _META not in names:
            raise self.fail(_META, "missing")

    def check_seal(self, fh: Any) -> None:
        seal = self.zf.comment
        if len(seal) != _SEAL_BYTES or self.size < _SEAL_BYTES:
            raise self.fail("checksum", "missing (not written by ensemblepp.save, or damaged)")
        if _file_hash(fh, self.size - _SEAL_BYTES).encode("ascii") != seal:
            raise self.fail("checksum", "the file's SHA-256 does not match the one written with it (damaged or edited)")

    def read_meta(self) -> dict[str, Any]:
        info = self.zf.getinfo(_META)
        if info.file_size > _MAX_META_BYTES:
            raise self.fail(_META, f"{info.file_size} bytes, more than {_MAX_META_BYTES}")
        with self.zf.open(info) as f:
            raw = f.read()
        try:
            meta = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.fail(_META, f"not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise self.fail(_META, "not a JSON object")
        if meta.get("format") != FORMAT:
            raise self.fail("format", f"not an ensemblepp model file (format {meta.get('format')!r:.60})")
        if meta.get("version") not in _READS or isinstance(meta.get("version"), bool):
            raise self.fail("version", f"unsupported version {meta.get('version')!r:.40}, this library reads "
                                       f"{' and '.join(map(str, _READS))}")
        if set(meta) != _META_KEYS:
            raise self.fail(_META, f"keys {sorted(set(meta) ^ _META_KEYS)} missing or unknown")
        for key, kind in (("family", str), ("class", str), ("device", str), ("hyperparameters", dict),
                          ("state", dict), ("arrays", dict), ("digest", str)):
            if not isinstance(meta[key], kind):
                raise self.fail(key, f"expected a JSON {kind.__name__}, got {type(meta[key]).__name__}")
        self.meta = meta
        return meta

    def expect_arrays(self, expected: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        """Compare the array table and the directory with ``expected`` before reading any data."""
        table = self.meta["arrays"]
        if set(table) != set(expected):
            extra, missing = sorted(set(table) - set(expected)), sorted(set(expected) - set(table))
            raise self.fail(", ".join(missing or extra)[:200], "missing" if missing else "unexpected array")
        entries = {i.filename for i in self.zf.infolist()}
        want = {_META} | {k + ".npy" for k in expected}
        if entries != want:
            extra, missing = sorted(entries - want), sorted(want - entries)
            raise self.fail(", ".join(missing or extra)[:200], "missing from the archive" if missing else "unexpected entry")
        for name, (shape, dtype) in expected.items():
            spec = table[name]
            if spec != {"shape": list(shape), "dtype": np.dtype(dtype).str}:
                raise self.fail(name, f"expected shape {shape} and dtype {np.dtype(dtype).str}, the file says {spec!r:.100}")
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            size = self.zf.getinfo(name + ".npy").file_size
            if not nbytes < size <= nbytes + _NPY_HEADER_MAX:
                raise self.fail(name, f"entry of {size} bytes cannot hold shape {shape} of {np.dtype(dtype).str}")

    def read_array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        with self.zf.open(name + ".npy") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"npy version {version}")
            except (ValueError, EOFError, SyntaxError, TypeError) as exc:
                raise self.fail(name, f"damaged array header ({exc})") from None
            if got_shape != shape or got_dtype.str != dtype.str or fortran:
                raise self.fail(name, f"expected shape {shape} of {dtype.str} in C order, got {got_shape} "
                                      f"of {got_dtype.str}{' in Fortran order' if fortran else ''}")
            nbytes = math.prod(shape) * dtype.itemsize
            data = f.read(nbytes)
            if len(data) != nbytes or f.read(1):
                raise self.fail(name, "array data does not match its header")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def load(path: str | os.PathLike, device: str | None = None) -> Any:
    """Load an agent saved with ``save`` (linear or neural), fully validated.

    Parameters
    ----------
    path : str or path-like
        The model file.
    device : str, optional
        Where the agent goes (``"cpu"``, ``"cuda"``, ``"cuda:N"``). By default the device it was
        saved from, or the CPU with a :class:`RuntimeWarning` when that device does not exist here.

    Returns
    -------
    LinearPolicy or NeuralAgent
        An agent of the saved class whose next steps continue the saved trajectory.

    Raises
    ------
    ModelFileError
        For a file that is missing, unreadable, truncated, damaged, crafted or of another
        format, naming the file and the field; nothing is built then.
    ValueError, TypeError
        For a bad ``device`` argument.
    """
    try:
        size = os.stat(path).st_size
        fh = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ModelFileError(path, "file", f"cannot be read ({exc.strerror or exc})") from exc
    except TypeError:
        raise TypeError(f"path: expected a str or path-like, got {type(path).__name__}") from None
    with fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise ModelFileError(path, "archive", f"not a readable model file ({exc})") from None
        with zf:
            archive = _Archive(path, zf, size)
            try:
                archive.check_directory()
                archive.check_seal(fh)
                meta = archive.read_meta()
                if meta["family"] == "linear":
                    return _load_linear(archive, device)
                if meta["family"] == "neural":
                    return _load_neural(archive, device)
                raise archive.fail("family", f"unknown family {meta['family']!r:.40}")
            except ModelFileError:
                raise
            except (ValueError, TypeError) as exc:
                if getattr(exc, "_device_argument", False):
                    raise  # the caller's own bad ``device``, not the file's fault
                raise archive.fail("archive", f"damaged ({type(exc).__name__}: {exc})") from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError,
                    RuntimeError, KeyError, IndexError, OverflowError, struct.error) as exc:
                # CRC mismatch, truncated entry, damaged local header: the archive itself is broken.
                raise archive.fail("archive", f"damaged ({type(exc).__name__}: {exc})") from None


def _check_digest(archive: _Archive, arrays: dict[str, np.ndarray]) -> None:
    if _digest(archive.meta, arrays) != archive.meta["digest"]:
        raise archive.fail("digest", "the content does not match the digest written with it (edited or damaged)")


def _field_of(exc: Exception, default: str, names: Any = ()) -> str:
    """The argument a constructor error names (``name: ...`` or ``name must ...``)."""
    words = str(exc).replace(":", " ").replace("=", " ").split()
    head = words[0] if words else ""
    if head in names or (str(exc).startswith(head + ":") and head.isidentifier()):
        return head
    return default


def _resolve_device(archive: _Archive, saved: str, device: str | None, available: Callable[[str], bool]) -> str:
    if device is not None:
        return device
    if available(saved):
        return saved
    warnings.warn(f"{archive.path}: saved on {saved!r}, which does not exist here; loading on the CPU",
                  RuntimeWarning, stacklevel=3)
    return "cpu"


# ---- linear ------------------------------------------------------------------------------------
def _linear_record(agent: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arrays = dict(agent._state_arrays())
    arrays["prior_mean"] = np.asarray(agent._prior_mean, np.float64)
    arrays["prior_cov"] = np.asarray(agent._prior_cov, np.float64)
    meta = {"family": "linear", "class": type(agent).__name__, "device": agent.device,
            "hyperparameters": agent._hyperparameters(), "state": {}}
    return meta, arrays


def _linear_hyperparameter_names(cls: type) -> set[str]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self", "prior_var", "prior_mean", "device", "stream_ids"}
    return {n for n in names if not n.startswith("_")}


def _int_field(archive: _Archive, hp: dict[str, Any], name: str, low: int, high: int) -> int:
    v = hp[name]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise archive.fail(name, f"expected an int in [{low}, {high}], got {v!r:.40}")
    return v


def _load_linear(archive: _Archive, device: str | None) -> Any:
    from ensemblepp import _core, linear  # noqa: PLC0415
    from ensemblepp._backend import has_cuda  # noqa: PLC0415

    meta = archive.meta
    cls = linear._CLASSES.get(meta["class"])
    if cls is None:
        raise archive.fail("class", f"unknown linear policy class {meta['class']!r:.60}")
    hp = dict(meta["hyperparameters"])
    # Files written before forgetting existed hold no "forgetting": they forget nothing.
    hp.setdefault("forgetting", 1.0)
    names = _linear_hyperparameter_names(cls)
    if set(hp) != names:
        extra, missing = sorted(set(hp) - names), sorted(names - set(hp))
        raise archive.fail(", ".join(missing or extra), f"{'missing' if missing else 'unknown'} hyperparameter of {cls.__name__}")
    if meta["state"]:
        raise archive.fail("state", "a linear policy file keeps its state in arrays only")
    # The sizes first: they fix every array's shape, checked against the directory below.
    d = _int_field(archive, hp, "dim", 1, _core.MAX_VECTOR_LENGTH)
    single = hp["n_agents"] is None
    B = 1 if single else _int_field(archive, hp, "n_agents", 1, 2**32 - 1)
    if hp["dtype"] not in ("float64", "float32"):
        raise archive.fail("dtype", f"expected 'float64' or 'float32', got {hp['dtype']!r:.40}")
    # The per-agent arrays as the class itself declares them (names, shapes, dtypes), from a
    # shell object that holds only the sizes: nothing of size B is allocated yet.
    shell = cls.__new__(cls)
    shell._dim, shell._dtype = d, np.dtype(hp["dtype"])
    if cls._has_factor:
        shell._ensemble_size = _int_field(archive, hp, "ensemble_size", 1, _core.MAX_VECTOR_LENGTH)
    try:  # forgetting < 1 adds the per-agent "updates" counters to the state
        shell._forgetting = linear._check_forgetting(hp["forgetting"])
    except (TypeError, ValueError) as exc:
        raise archive.fail("forgetting", str(exc)) from None
    expected = {name: ((B, *shape), np.dtype(dt).newbyteorder("<"))
                for name, (shape, dt) in cls._state_shapes(shell).items()}
    version1 = meta["version"] == 1
    if version1:  # the precision factor U where version 2 holds L (same shape and dtype)
        expected = {("prec" if k == "cov_root" else k): v for k, v in expected.items()}
    expected["prior_mean"] = ((d,), np.dtype("<f8"))
    expected["prior_cov"] = ((d, d), np.dtype("<f8"))
    archive.expect_arrays(expected)
    arrays = {name: archive.read_array(name, *spec) for name, spec in expected.items()}
    _check_digest(archive, arrays)
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise archive.fail(name, "holds NaN or infinite values")
    if version1:
        _convert_version1(archive, arrays, cls._has_factor)
        expected = {("cov_root" if k == "prec" else k): v for k, v in expected.items()}
    root = arrays["cov_root"]
    if np.triu(root, 1).any():
        raise archive.fail("cov_root", "the covariance factor is not lower triangular")
    diag = np.diagonal(root, axis1=1, axis2=2)
    if not (diag > 0).all():
        raise archive.fail("cov_root", "the covariance factor has a diagonal entry <= 0 (a singular posterior)")
    steps = arrays["steps"]
    if (steps > _core.MAX_STEPS).any():
        raise archive.fail("steps", f"counter {int(steps.max())} beyond the stream's {_core.MAX_STEPS} draws "
                                    "(a negative count written as unsigned?)")
    if cls._policy in ("greedy", "ucb") and steps.any():
        raise archive.fail("steps", f"{cls.__name__} draws nothing, yet its counters are not zero (another class's state?)")
    ids = arrays["stream_ids"]
    if np.unique(ids).size != B:
        raise archive.fail("stream_ids", "repeated stream ids")
    target = _resolve_device(archive, meta["device"], device, lambda dev: dev == "cpu" or has_cuda())
    state = {k: arrays[k] for k in expected if k not in ("prior_mean", "prior_cov", "stream_ids")}
    stream_ids = int(ids[0]) if single else ids
    try:
        return cls._from_state(state, prior_var=arrays["prior_cov"], prior_mean=arrays["prior_mean"],
                               device=target, stream_ids=stream_ids, **hp)
    except (ValueError, TypeError) as exc:
        if device is not None and _field_of(exc, "") == "device":
            exc._device_argument = True  # type: ignore[attr-defined]
            raise
        raise archive.fail(_field_of(exc, "hyperparameters"), str(exc)) from None


def _convert_version1(archive: _Archive, arrays: dict[str, np.ndarray], has_factor: bool) -> None:
    """Version 1's linear state in version 2's form, in place, after its own checks.

    Version 1 kept the upper Cholesky factor U of the precision (P = U^T U) and, for the factor
    policies, the accumulator F with A = P^-1 F (Ensemble++) or offsets P^-1 F (ensemble sampling).
    With W = U^-1: Sigma = W W^T = L^T L for L = W^T (lower triangular, positive diagonal), and
    P^-1 F = W (W^T F); computed in float64, the factor rounded once to its dtype.
    """
    U = arrays.pop("prec")
    if np.tril(U, -1).any():
        raise archive.fail("prec", "the precision factor is not upper triangular")
    if not (np.diagonal(U, axis1=1, axis2=2) > 0).all():
        raise archive.fail("prec", "the precision factor has a diagonal entry <= 0 (not a Cholesky factor)")
    eye = np.eye(U.shape[-1])
    W = np.stack([np.triu(np.linalg.solve(Ub, eye)) for Ub in U]) if U.shape[0] else U.copy()
    arrays["cov_root"] = np.ascontiguousarray(np.tril(np.swapaxes(W, 1, 2)))
    if has_factor:
        F = arrays["factor"]
        A = W @ (np.swapaxes(W, 1, 2) @ F.astype(np.float64))
        if not np.isfinite(A).all():
            raise archive.fail("factor", "holds values that overflow when converted from version 1")
        arrays["factor"] = A.astype(F.dtype)


# ---- neural ------------------------------------------------------------------------------------
def _to_json_value(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{name}: cannot store a non-finite number ({value})")
        return value
    if isinstance(value, (tuple, list)):
        return [_to_json_value(v, name) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _to_json_value(float(value), name)
    raise TypeError(f"{name}: a {type(value).__name__} cannot be stored in a model file "
                    "(save the agent's state_dict yourself and rebuild the module when loading)")


def _tensor_array(t: Any, name: str) -> np.ndarray:
    import torch  # noqa: PLC0415

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    return t.detach().cpu().contiguous().numpy()


def _neural_record(agent: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    init = getattr(agent, "_init_arguments", None)
    if init is None:
        raise TypeError(f"agent: {type(agent).__name__} was not built through its constructor; cannot store it")
    hp = {k: _to_json_value(v, k) for k, v in init.items() if k != "device"}
    hp["seed"] = agent.seed  # the drawn one when seed=None was given
    sd = agent.state_dict()
    arrays: dict[str, np.ndarray] = {}
    for k, v in sd["model"].items():
        arrays[f"model/{k}"] = _tensor_array(v, f"model[{k!r}]")
    opt = sd["optimizer"]
    opt_state: dict[str, Any] = {}
    for pid, entry in opt["state"].items():
        keys = sorted(entry)
        opt_state[str(pid)] = keys
        for key in keys:
            arrays[f"optimizer/{pid}/{key}"] = _tensor_array(entry[key], f"optimizer state[{pid}][{key!r}]")
    groups = [{k: _to_json_value(v.item() if hasattr(v, "item") else v, f"param_groups[{i}][{k!r}]")
               for k, v in g.items()} for i, g in enumerate(opt["param_groups"])]
    buf = sd["buffer"]
    for key in ("r", "xi"):
        arrays[f"buffer/{key}"] = _tensor_array(buf[key], f"buffer[{key!r}]")
    if buf["dim"] is None:
        items = list(buf["x"])
        if not all(isinstance(x, str) for x in items):
            raise TypeError("buffer: only text (str) inputs of an agent with dim=None can be stored")
        x_json: Any = items
    else:
        arrays["buffer/x"] = _tensor_array(buf["x"], "buffer['x']")
        x_json = None
    arrays["generator"] = _tensor_array(sd["generator"], "generator")
    state = {"config": _to_json_value(list(sd["config"].items()), "config"),
             "optimizer": {"state": opt_state, "param_groups": groups},
             "buffer": {k: buf[k] for k in ("capacity", "dim", "xi_dim", "pos", "size")} | {"x": x_json},
             "n_seen": sd["n_seen"], "n_sgd_steps": sd["n_sgd_steps"]}
    meta = {"family": "neural", "class": type(agent).__name__, "device": str(agent.device),
            "hyperparameters": hp, "state": state}
    return meta, arrays


# Hyperparameters that size the arrays: bounded by the file's size before anything is built,
# so a tiny crafted file cannot make the constructor allocate a huge network or buffer.
_NEURAL_SIZES = ("dim", "ensemble_size", "buffer_capacity", "n_outputs", "feature_dim", "prior_feature_dim",
                 "n_index_samples", "batch_size")
_NEURAL_WIDTHS = ("hidden", "epinet_hidden", "prior_hidden")


def _check_neural_sizes(archive: _Archive, hp: dict[str, Any]) -> None:
    budget = max(archive.size // 4, 1)
    for name in _NEURAL_SIZES:
        v = hp.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v > budget:
            raise archive.fail(name, f"{v} is larger than a file of {archive.size} bytes can hold")
    dim = hp.get("dim") if isinstance(hp.get("dim"), int) else 1
    # A lower bound on the float32 elements the file must then hold: the buffer's inputs, rewards
    # and perturbations, and the feature network's weight matrices.
    cap = hp.get("buffer_capacity") if isinstance(hp.get("buffer_capacity"), int) else 1
    index = hp.get("ensemble_size") if isinstance(hp.get("ensemble_size"), int) else 0
    elements = cap * (dim + 1 + index)
    if elements > budget:
        raise archive.fail("buffer_capacity", f"a buffer of {cap} x ({dim} + 1 + {index}) floats is larger "
                                              f"than a file of {archive.size} bytes can hold")
    for name in _NEURAL_WIDTHS:
        widths = hp.get(name)
        if widths is None:
            continue
        if not isinstance(widths, list) or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths):
            raise archive.fail(name, f"expected a list of ints, got {widths!r:.60}")
        prev = dim
        for w in widths:
            if w < 1 or prev * w > budget:
                raise archive.fail(name, f"width {w} is larger than a file of {archive.size} bytes can hold")
            prev = w


def _step_spec(archive: _Archive, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Adam's step counter: one number, whose shape and dtype depend on torch's Adam variant."""
    spec = archive.meta["arrays"].get(name)
    if not isinstance(spec, dict) or spec.get("shape") not in ([], [1]) or spec.get("dtype") not in ("<f4", "<f8", "<i8"):
        raise archive.fail(name, f"expected one float32, float64 or int64 step counter, the file says {spec!r:.100}")
    return tuple(spec["shape"]), np.dtype(spec["dtype"])


def _neural_device_exists(device: str) -> bool:
    import torch  # noqa: PLC0415

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return False
    if dev.type == "cpu":
        return True
    return dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()


def _load_neural(archive: _Archive, device: str | None) -> Any:
    try:
        import torch  # noqa: PLC0415

        from ensemblepp import neural  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(f'{archive.path}: a neural agent file needs PyTorch: pip install "ensemblepp[torch]"') from exc
    meta = archive.meta
    classes = {c.__name__: c for c in (neural.NeuralEnsemble, neural.EnsemblePlus, neural.EpiNet, neural.NeuralGreedy)}
    cls = classes.get(meta["class"])
    if cls is None:
        raise archive.fail("class", f"unknown neural agent class {meta['class']!r:.60}")
    hp = meta["hyperparameters"]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "device", "feature_net", "prior_net"}
    unknown = sorted(set(hp) - allowed)
    if unknown:
        raise archive.fail(", ".join(unknown), f"unknown hyperparameter of {cls.__name__}")
    if "seed" not in hp:
        raise archive.fail("seed", "missing")
    _check_neural_sizes(archive, hp)
    target = _resolve_device(archive, meta["device"], device, _neural_device_exists)
    kwargs = {k: tuple(v) if k in _NEURAL_WIDTHS and isinstance(v, list) else v for k, v in hp.items()}
    try:
        agent = cls(**kwargs, device=target)
    except (ValueError, TypeError) as exc:
        if device is not None and "device" in str(exc).split(" ", 1)[0]:
            exc._device_argument = True  # type: ignore[attr-defined]
            raise
        raise archive.fail(_field_of(exc, "hyperparameters", hp), str(exc)) from None
    own = agent.state_dict()
    st = meta["state"]
    if set(st) != {"config", "optimizer", "buffer", "n_seen", "n_sgd_steps"}:
        raise archive.fail("state", "expected config, optimizer, buffer, n_seen and n_sgd_steps")
    # The arrays this agent has: their names, shapes and dtypes come from the agent just built.
    expected: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def spec(t: Any) -> tuple[tuple[int, ...], np.dtype]:
        a = _tensor_array(t, "state")
        return tuple(a.shape), a.dtype.newbyteorder("<")

    for k, v in own["model"].items():
        expected[f"model/{k}"] = spec(v)
    opt = st["optimizer"]
    if not isinstance(opt, dict) or set(opt) != {"state", "param_groups"} or not isinstance(opt["state"], dict):
        raise archive.fail("optimizer", "expected 'state' and 'param_groups'")
    params = [p for p in agent.model.parameters() if p.requires_grad]
    for pid, keys in opt["state"].items():
        if not pid.isdigit() or int(pid) >= len(params) or not isinstance(keys, list) \
                or not set(keys) <= {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}:
            raise archive.fail(f"optimizer/{pid:.20}", "not a parameter of this network or unknown Adam entries")
        p = params[int(pid)]
        for key in keys:
            expected[f"optimizer/{pid}/{key}"] = _step_spec(archive, f"optimizer/{pid}/{key}") if key == "step" else spec(p)
    buf = st["buffer"]
    if not isinstance(buf, dict) or set(buf) != {"capacity", "dim", "xi_dim", "pos", "size", "x"}:
        raise archive.fail("buffer", "expected capacity, dim, xi_dim, pos, size and x")
    for key in ("r", "xi"):
        expected[f"buffer/{key}"] = spec(own["buffer"][key])
    if agent.dim is not None:
        expected["buffer/x"] = spec(own["buffer"]["x"])
    expected["generator"] = spec(own["generator"])
    archive.expect_arrays(expected)
    arrays = {name: archive.read_array(name, *s) for name, s in expected.items()}
    _check_digest(archive, arrays)
    tensor = torch.from_numpy
    opt_state = {int(pid): {key: tensor(arrays[f"optimizer/{pid}/{key}"]) for key in keys}
                 for pid, keys in opt["state"].items()}
    groups = opt["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise archive.fail("optimizer", "param_groups must be a list of objects")
    groups = [{k: tuple(v) if k == "betas" and isinstance(v, list) else v for k, v in g.items()} for g in groups]
    x: Any = buf["x"]
    if agent.dim is not None:
        if x is not None:
            raise archive.fail("buffer", "x is stored as an array for vector inputs")
        x = tensor(arrays["buffer/x"])
    elif not isinstance(x, list) or not all(isinstance(v, str) for v in x):
        raise archive.fail("buffer", "x must be a list of strings for an agent with dim=None")
    config = st["config"]
    if not isinstance(config, list) or not all(isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str)
                                               for kv in config):
        raise archive.fail("config", "expected a list of [name, value] pairs")
    state = {"format": own["format"], "class": meta["class"],
             "config": {k: tuple(v) if isinstance(v, list) else v for k, v in config},
             "model": {k[len("model/"):]: tensor(a) for k, a in arrays.items() if k.startswith("model/")},
             "optimizer": {"state": opt_state, "param_groups": groups},
             "buffer": {**{k: buf[k] for k in ("capacity", "dim", "xi_dim", "pos", "size")}, "x": x,
                        "r": tensor(arrays["buffer/r"]), "xi": tensor(arrays["buffer/xi"])},
             "n_seen": st["n_seen"], "n_sgd_steps": st["n_sgd_steps"], "generator": tensor(arrays["generator"])}
    try:
        agent.load_state_dict(state)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        msg = str(exc)
        field = msg.split(" ")[1] if msg.startswith("state ") and len(msg.split(" ")) > 1 else "state"
        raise archive.fail(field, msg) from None
    return agent
