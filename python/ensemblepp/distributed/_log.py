"""The per-shard update log: an append-only binary file of validated records (no pickle).

Layout (all integers little-endian)::

    header   b"ENSEMBLEPP-LOG01"  (16 bytes)   base sequence number (u64): the checkpoint it follows
    record   b"EREC"  payload length (u32)  CRC-32 of the payload (u32)
             CRC-32 of the 12 bytes before (u32)  payload
    payload  op (u8)  sequence number (u64)  array count (u16)  arrays
    array    name length (u8) name (ASCII)  dtype length (u8) dtype (e.g. "<f8")  ndim (u8)
             shape (ndim x u64)  data (C order)

Every size is checked against what is left of the file before anything is read. A record
cut short at the very end of the file is what a process killed in the middle of a write leaves
behind; :func:`read_log` drops it (the operation was never applied, since a shard applies an
operation only after its record is written) and reports it. Anything else that does not parse
raises :class:`DamagedLogError`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DamagedLogError", "LogRecord", "LogWriter", "read_log", "ACT", "UPDATE"]

MAGIC = b"ENSEMBLEPP-LOG01"
_REC = b"EREC"
_HEADER = struct.Struct("<16sQ")
_REC_HEAD = struct.Struct("<4sIII")
_PAYLOAD_HEAD = struct.Struct("<BQH")
ACT, UPDATE = 1, 2
_OPS = {ACT, UPDATE}
_DTYPES = {"<u8", "<i8", "<f8", "<f4", "|u1"}
#: A single record larger than this is refused (a damaged length field, not a real record).
MAX_RECORD = 1 << 34


class DamagedLogError(ValueError):
    """An update log that cannot be read back: wrong magic, bad sizes, checksum or fields."""


@dataclass
class LogRecord:
    """One logged operation: its kind, sequence number and named arrays."""

    op: int
    seq: int
    arrays: dict[str, np.ndarray]


def encode(op: int, seq: int, arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of one record."""
    parts = [_PAYLOAD_HEAD.pack(op, seq, len(arrays))]
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        a = a.astype(dt, copy=False)
        dts = dt.str
        if dts not in _DTYPES:
            raise TypeError(f"log field {name}: dtype {dts} cannot be logged")
        nb, db = name.encode("ascii"), dts.encode("ascii")
        parts.append(struct.pack("<B", len(nb)) + nb + struct.pack("<B", len(db)) + db
                     + struct.pack(f"<B{a.ndim}Q", a.ndim, *a.shape))
        parts.append(a.tobytes())
    payload = b"".join(parts)
    head = struct.pack("<4sII", _REC, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _decode_payload(payload: bytes, where: str) -> LogRecord:
    view = memoryview(payload)
    if len(view) < _PAYLOAD_HEAD.size:
        raise DamagedLogError(f"{where}: payload shorter than its header")
    op, seq, count = _PAYLOAD_HEAD.unpack_from(view, 0)
    if op not in _OPS:
        raise DamagedLogError(f"{where}: unknown operation code {op}")
    pos = _PAYLOAD_HEAD.size
    arrays: dict[str, np.ndarray] = {}

    def take(n: int) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise DamagedLogError(f"{where}: field runs past the end of its record")
        out = view[pos:pos + n]
        pos += n
        return out

    for _ in range(count):
        name = bytes(take(take(1)[0])).decode("ascii", errors="replace")
        dts = bytes(take(take(1)[0])).decode("ascii", errors="replace")
        if dts not in _DTYPES:
            raise DamagedLogError(f"{where}: field {name!r} has a forbidden dtype {dts!r}")
        ndim = take(1)[0]
        if ndim > 4:
            raise DamagedLogError(f"{where}: field {name!r} has {ndim} dimensions")
        shape = struct.unpack(f"<{ndim}Q", take(8 * ndim))
        dt = np.dtype(dts)
        size = dt.itemsize
        for s in shape:
            size *= s
            if size > len(view):
                raise DamagedLogError(f"{where}: field {name!r} of shape {shape} is larger than its record")
        if name in arrays:
            raise DamagedLogError(f"{where}: field {name!r} appears twice")
        arrays[name] = np.frombuffer(take(size), dtype=dt).reshape(shape).copy()
    if pos != len(view):
        raise DamagedLogError(f"{where}: {len(view) - pos} unread bytes after the last field")
    return LogRecord(op, seq, arrays)


def read_log(path: str | os.PathLike) -> tuple[int, list[LogRecord], int]:
    """Read and validate a log file.

    Returns
    -------
    base : int
        The sequence number of the checkpoint the log follows.
    records : list of LogRecord
        In file order, with strictly increasing sequence numbers above ``base``.
    valid_bytes : int
        Length of the valid prefix; smaller than the file when a torn last record was dropped.

    Raises
    ------
    DamagedLogError
        For a wrong header, a bad checksum or field anywhere but in a torn last record, or
        sequence numbers out of order.
    """
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise DamagedLogError(f"{path}: shorter than a log header ({len(data)} bytes)")
    magic, base = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise DamagedLogError(f"{path}: not an ensemblepp update log (magic {magic[:16]!r})")
    pos = _HEADER.size
    records: list[LogRecord] = []
    last = base
    while pos < len(data):
        where = f"{path}: record {len(records)} at byte {pos}"
        if len(data) - pos < _REC_HEAD.size:
            break  # torn header of the last record
        tag, length, crc, head_crc = _REC_HEAD.unpack_from(data, pos)
        if tag != _REC:
            raise DamagedLogError(f"{where}: bad record tag {tag!r}")
        if zlib.crc32(data[pos:pos + 12]) != head_crc:
            # A head is written whole with its payload: a complete but wrong one is damage.
            raise DamagedLogError(f"{where}: record head checksum mismatch")
        if length > MAX_RECORD:
            raise DamagedLogError(f"{where}: record length {length} is implausible")
        end = pos + _REC_HEAD.size + length
        if end > len(data):
            break  # torn payload of the last record
        payload = data[pos + _REC_HEAD.size:end]
        if zlib.crc32(payload) != crc:
            if end == len(data):
                break  # the last record's bytes did not all reach the disk
            raise DamagedLogError(f"{where}: checksum mismatch")
        rec = _decode_payload(payload, where)
        if rec.seq <= last:
            raise DamagedLogError(f"{where}: sequence number {rec.seq} does not follow {last}")
        last = rec.seq
        records.append(rec)
        pos = end
    return int(base), records, pos


class LogWriter:
    """Appends records to a log file, creating it with its header when new.

    Parameters
    ----------
    path : path-like
        The log file.
    base : int
        Sequence number of the checkpoint this log follows (written in a new file's header).
    valid_bytes : int, optional
        Truncate an existing file to this length first (drops a torn last record).
    fsync : bool, default False
        ``os.fsync`` after every record: survives a machine crash, not only a process crash.
    """

    def __init__(self, path: str | os.PathLike, base: int, valid_bytes: int | None = None,
                 fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        if not self.path.exists():
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(_HEADER.pack(MAGIC, base))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        elif valid_bytes is not None and valid_bytes < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(valid_bytes)
        self._f = open(self.path, "ab")  # noqa: SIM115 - kept open for appends

    def append(self, op: int, seq: int, arrays: dict[str, np.ndarray]) -> None:
        """Write one record and push it to the operating system (and the disk with fsync)."""
        self._f.write(encode(op, seq, arrays))
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()


def check_fields(rec: LogRecord, spec: Iterable[tuple[str, str, int]], where: str) -> None:
    """Check that ``rec`` has exactly the fields ``(name, dtype, ndim)`` of ``spec``."""
    spec = list(spec)
    names = {n for n, _, _ in spec}
    extra = sorted(set(rec.arrays) - names)
    if extra:
        raise DamagedLogError(f"{where}: unexpected field(s) {', '.join(extra)}")
    for name, dts, ndim in spec:
        a = rec.arrays.get(name)
        if a is None:
            raise DamagedLogError(f"{where}: missing field {name!r}")
        if a.dtype.str != dts or a.ndim != ndim:
            raise DamagedLogError(f"{where}: field {name!r} is {a.dtype.str} with {a.ndim} dims, "
                                  f"expected {dts} with {ndim}")
