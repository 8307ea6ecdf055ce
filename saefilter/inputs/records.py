"""Read datasets record by record, keeping every line accounted for: JSONL (optionally gzipped),
Parquet, CSV, and folders written by Hugging Face `datasets.Dataset.save_to_disk`.

Each physical line becomes either a `Record` (parsed JSON object) or a `BadLine` with a reason,
so that callers can fail loudly or route the line to a skipped file: never drop it silently.
A row of a table (Parquet, an Arrow dataset folder) is line N+1 for row index N, read as its JSON
text (`table_line`), so ids, prune outputs and every later step treat all formats alike. A CSV row
is numbered by the physical line it starts on (the header is line 1), so an editor jumps to it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefilter.errors import InputError


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


SUPPORTED = ".jsonl, .jsonl.gz, .parquet or .csv file, or a folder written by datasets' save_to_disk"


def check_input_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
            raise InputError(f"{path}: a DatasetDict with splits {', '.join(splits)}; pass one split's folder, "
                             f"e.g. {path / (splits[0] if splits else 'train')}")
        if not (path / "state.json").exists():
            raise InputError(f"{path}: is a directory without state.json; pass a {SUPPORTED}")


def is_parquet(path: Path | str) -> bool:
    return str(path).endswith(".parquet")


def is_csv(path: Path | str) -> bool:
    return str(path).endswith((".csv", ".csv.gz"))


def is_arrow_dataset(path: Path) -> bool:
    return path.is_dir() and (path / "state.json").exists()


def table_line(row: dict[str, Any]) -> bytes:
    """A table row as one JSON line, in column order; non-JSON values (dates, decimals) as text."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


parquet_line = table_line  # the name the Ray engine and older callers use


def strip_terminator(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


def iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line_no, raw) for every physical line (or table row), stripping only the terminator."""
    for line_no, raw, _problem in iter_lines_checked(path):
        yield line_no, raw


def iter_lines_checked(path: Path) -> Iterator[tuple[int, bytes, str | None]]:
    """(line_no, raw, problem): `problem` says why a row cannot even become a record (a CSV row with
    the wrong number of fields), else None and `raw` is the JSON or JSONL text of the record."""
    check_input_path(path)
    if is_arrow_dataset(path):
        yield from ((n, raw, None) for n, raw in iter_arrow_dataset_lines(path))
    elif is_parquet(path):
        yield from ((n, raw, None) for n, raw in iter_parquet_lines(path))
    elif is_csv(path):
        yield from iter_csv_lines(path)
    else:
        refuse_binary(path)
        with open_binary(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                yield line_no, strip_terminator(raw), None


def refuse_binary(path: Path) -> None:
    """One clear error for a file that is not text at all (an image, an archive staged by mistake),
    rather than a bad-JSON error for each of its 'lines'."""
    with open_binary(path) as handle:
        head = handle.read(8192)
    nul = head.find(b"\0")
    if nul >= 0:
        raise InputError(f"{path}: not a text file (a NUL byte at offset {nul}); "
                         "saefilter reads JSONL, JSON, CSV and Parquet")


def iter_csv_lines(path: Path) -> Iterator[tuple[int, bytes, str | None]]:
    """Rows of a CSV file with a header line, as JSON objects {column: text}. A row whose field count
    differs from the header's is kept as its CSV text with the reason, never dropped or padded."""
    with open_binary(path) as binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{path}:1: not a readable CSV header ({err})") from None
        if len(set(header)) != len(header) or not all(header):
            raise InputError(f"{path}:1: the CSV header needs distinct, non-empty column names, got: {', '.join(header)}")
        previous_end = reader.line_num
        while True:
            start = previous_end + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as err:
                raise InputError(f"{path}:{start}: not readable as CSV ({err})") from None
            previous_end = reader.line_num
            if not fields:
                yield start, b"", None
            elif len(fields) != len(header):
                raw = ",".join(fields).encode("utf-8")
                yield start, raw, f"expected {len(header)} CSV fields (the header's), got {len(fields)}"
            else:
                yield start, table_line(dict(zip(header, fields, strict=True))), None


def arrow_dataset_files(path: Path) -> list[Path]:
    """The Arrow files of a `save_to_disk` folder, in row order (state.json lists them)."""
    state = json.loads((path / "state.json").read_text())
    if state.get("_indices_data_files"):
        raise InputError(f"{path}: saved with an indices mapping; save it again after dataset.flatten_indices()")
    files = [path / entry["filename"] for entry in state.get("_data_files", [])]
    missing = [str(f) for f in files if not f.exists()]
    if not files or missing:
        raise InputError(f"{path}: state.json names data files that are not there: {', '.join(missing) or 'none'}")
    return files


def iter_arrow_dataset_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(row_index + 1, JSON line) for every row of a `datasets` save_to_disk folder, read with pyarrow
    (the folder's Arrow stream files), so reading it needs no `datasets` import."""
    import pyarrow as pa

    line_no = 0
    for file in arrow_dataset_files(path):
        try:
            with pa.memory_map(str(file)) as source:
                reader = pa.ipc.open_stream(source)
                for batch in reader:
                    for row in batch.to_pylist():
                        line_no += 1
                        yield line_no, table_line(row)
        except pa.ArrowInvalid as err:
            raise InputError(f"{file}: not a readable Arrow file ({err})") from None


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
        return BadLine(path, line_no, raw, f"not valid UTF-8 (byte {err.start}): save the file as UTF-8")
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
    for line_no, raw, problem in iter_lines_checked(path):
        yield BadLine(name, line_no, raw, problem) if problem else parse_line(name, line_no, raw)


def is_uri(path: Path | str) -> bool:
    """'s3://bucket/x.jsonl' and the like: read through pyarrow's filesystems (the Ray engine)."""
    return "://" in str(path)


def file_sha256(path: Path | str) -> str:
    """Content hash of a file, or of a `save_to_disk` folder's state and data files in order."""
    digest = hashlib.sha256()
    if not is_uri(path) and Path(path).is_dir():
        for part in [Path(path) / "state.json", *arrow_dataset_files(Path(path))]:
            digest.update(part.name.encode() + b"\0" + bytes.fromhex(file_sha256(part).removeprefix("sha256:")))
        return "sha256:" + digest.hexdigest()
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
