"""Read JSONL (optionally gzipped) or Parquet datasets line by line, keeping every line accounted for.

Each physical line becomes either a `Record` (parsed JSON object) or a `BadLine` with a reason,
so that callers can fail loudly or route the line to a skipped file: never drop it silently.
A Parquet row is line N+1 for row index N, read as its JSON text (`parquet_line`), so ids, prune
outputs and every later step treat both formats alike.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class InputError(Exception):
    """A problem with the user's input that deserves a one-line message, not a traceback."""


@dataclass(frozen=True)
class Record:
    path: str
    line_no: int  # 1-based physical line number
    raw: bytes  # the line exactly as read, without its line terminator
    data: dict[str, Any]

    @property
    def record_id(self) -> str:
        return line_id(self.raw)


@dataclass(frozen=True)
class BadLine:
    path: str
    line_no: int
    raw: bytes
    reason: str
    blank: bool = False  # blank lines hold no data: counted, never treated as errors

    @property
    def record_id(self) -> str:
        return line_id(self.raw)

    def message(self) -> str:
        return f"{self.path}:{self.line_no}: {self.reason}"


def line_id(raw: bytes) -> str:
    """Content address of a line: stable across files, so caches and merges can key on it."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def open_binary(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def check_input_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass a .jsonl, .jsonl.gz or .parquet file")


def is_parquet(path: Path | str) -> bool:
    return str(path).endswith(".parquet")


def parquet_line(row: dict[str, Any]) -> bytes:
    """A Parquet row as one JSON line, in column order; non-JSON values (dates, decimals) as text."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def strip_terminator(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


def iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line_no, raw) for every physical line (or Parquet row), stripping only the terminator."""
    check_input_path(path)
    if is_parquet(path):
        yield from iter_parquet_lines(path)
        return
    with open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            yield line_no, strip_terminator(raw)


def iter_parquet_lines(source: Any, batch_rows: int = 1024) -> Iterator[tuple[int, bytes]]:
    """(row_index + 1, JSON line) for every row of a Parquet file (a path or an open file)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{source}: not a readable Parquet file ({err})") from None
    line_no = 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            line_no += 1
            yield line_no, parquet_line(row)


def parse_line(path: str, line_no: int, raw: bytes) -> Record | BadLine:
    if not raw.strip():
        return BadLine(path, line_no, raw, "blank line", blank=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadLine(path, line_no, raw, f"not valid UTF-8 (byte {err.start})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return BadLine(path, line_no, raw, f"invalid JSON: {err.msg} at column {err.colno}")
    if not isinstance(data, dict):
        return BadLine(path, line_no, raw, f"expected a JSON object, got {type(data).__name__}")
    return Record(path, line_no, raw, data)


def read_lines(path: Path) -> Iterator[Record | BadLine]:
    """Every line of `path`, parsed. Blank lines come back as BadLine so they stay accounted for."""
    name = str(path)
    for line_no, raw in iter_raw_lines(path):
        yield parse_line(name, line_no, raw)


def is_uri(path: Path | str) -> bool:
    """'s3://bucket/x.jsonl' and the like: read through pyarrow's filesystems (the Ray engine)."""
    return "://" in str(path)


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    if is_uri(path):
        import pyarrow.fs

        filesystem, inner = pyarrow.fs.FileSystem.from_uri(str(path))
        handle = filesystem.open_input_stream(inner, compression=None)
    else:
        handle = Path(path).open("rb")  # noqa: SIM115 - closed by the `with` below, as the remote stream is
    with handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
