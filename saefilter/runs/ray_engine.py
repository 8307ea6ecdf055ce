"""`saefilter score --engine ray`: the local engine's score file, scored by a Ray Data actor pool.

Data flow: one read task streams the file (JSONL, .jsonl.gz or Parquet; a local path or any URI
pyarrow can open, e.g. s3://) as blocks of (line, raw) rows. `map_batches` sends the blocks to a
pool of actors; each loads the model, SAE and features once (one GPU per actor when the cluster has
GPUs) and turns a block into score rows with the same `score_chunk` as the local engine. The
driver never loads the model: it receives the rows in input order, checks that every line arrives
once, and hands them to the local engine's `finalize`, so ranks, percentiles, the skipped file and
the metadata are the local engine's, byte for byte up to floating-point noise in the scores.

Ray is an optional extra (`pip install 'saefilter[ray]'`); nothing here is imported without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.errors import InputError
from saefilter.files import json_line
from saefilter.inputs.records import (
    is_csv,
    is_parquet,
    is_uri,
    iter_parquet_lines,
    parse_line,
    strip_terminator,
)
from saefilter.model.layers import check_hook_depth
from saefilter.model.named import resolve_model_spec
from saefilter.outputs.score_files import ScoreOutputs
from saefilter.runs.pipeline import (
    ScoreSummary,
    bad_line,
    chunked,
    count_lines,
    finalize,
    refuse_empty,
    refuse_overwriting_input,
    score_chunk,
)
from saefilter.sae.loading import LoadedSAE
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.scorer import Method, check_width

BLOCK_LINES = 1024  # rows per block leaving the read task
READ_BYTES = 1 << 20


def require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--engine ray needs Ray Data: pip install 'saefilter[ray]'") from None
    return ray


def split_lines(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """Physical lines of a byte stream, terminators stripped: what `iter_raw_lines` gives for a file."""
    tail = b""
    while block := read(READ_BYTES):
        parts = (tail + block).split(b"\n")
        tail = parts.pop()
        for part in parts:
            yield strip_terminator(part)
    if tail:
        yield strip_terminator(tail)


def numbered_lines(stream: Any, path: str) -> Iterator[tuple[int, bytes]]:
    if is_parquet(path):
        import pyarrow as pa

        return iter_parquet_lines(pa.BufferReader(stream.readall()))  # Parquet needs random access
    return enumerate(split_lines(stream.read), start=1)


def line_datasource(path: str) -> Any:
    """A Ray datasource of (line, raw) rows with exact 1-based line numbers, blank lines kept."""
    import pyarrow as pa
    from ray.data.datasource import FileBasedDatasource

    class NumberedLines(FileBasedDatasource):
        def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
            for block in chunked(numbered_lines(f, path), BLOCK_LINES):
                lines, raws = zip(*block)
                yield pa.table({"line": pa.array(lines, pa.int64()), "raw": pa.array(raws, pa.binary())})

    return NumberedLines(path)


class ScoreActor:
    """One per Ray actor: model, SAE and features load once, then every block is scored here."""

    def __init__(self, config: ScoreConfig, source: str, threads: int) -> None:
        import torch

        from saefilter.scoring.scorer import Scorer

        if threads > 0:
            torch.set_num_threads(threads)
        self.scorer = Scorer.load(config)
        self.source = source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [parse_line(self.source, int(n), bytes(raw)) for n, raw in zip(batch["line"], batch["raw"], strict=True)]
        rows = score_chunk(self.scorer, items)
        return {
            "line": batch["line"],
            "row": np.array([json_line(row) for row in rows], dtype=object),
            "problem": np.array([row.get("skipped", "") for row in rows], dtype=object),  # for --on-error fail
        }


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a local Ray on this machine
    actors: int | None = None  # None: one per GPU, or one per node on a CPU-only cluster


def start_ray(address: str | None) -> Any:
    """Connect to (or start) Ray, keeping its logs out of saefilter's output."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in line order
    context.enable_progress_bars = False  # saefilter draws its own
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


READ_CPUS = 0.25  # the read task only splits lines; a full CPU slot for it could starve the actors


@dataclass(frozen=True)
class ActorPlan:
    actors: int
    gpus: float  # per actor
    cpus: float  # per actor: a scheduling reservation that always leaves room for the read task
    threads: int  # torch threads per actor


def actor_plan(ray: Any, config: ScoreConfig, options: RayOptions) -> ActorPlan:
    """One actor per GPU, or per node on a CPU-only cluster, unless --ray-actors says otherwise."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if config.device != "cpu" else 0
    nodes = max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
    actors = options.actors or gpus or nodes
    if actors < 1:
        raise InputError("--ray-actors must be at least 1")
    cpus = float(resources.get("CPU", 1))
    return ActorPlan(actors, 1.0 if gpus else 0.0, min(1.0, (cpus - READ_CPUS) / actors), max(1, int(cpus) // actors))


def local_name(source: str) -> Path:
    """Where outputs go by default: beside a local input; in the working folder for a URI."""
    return Path(source.rstrip("/").rsplit("/", 1)[-1]) if is_uri(source) else Path(source)


def score_with_ray(
    source: str,
    config: ScoreConfig,
    output: Path | None = None,
    options: RayOptions = RayOptions(),
    on_start: Callable[[int | None], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ScoreSummary:
    started = time.perf_counter()
    if is_csv(source) or (not is_uri(source) and Path(source).is_dir()):
        raise InputError(f"{source}: the Ray engine reads JSONL and Parquet; score CSV files and dataset folders "
                         "with --engine local, or write them as Parquet (dataset.to_parquet)")
    if not is_uri(source) and not Path(source).is_file():
        raise InputError(f"{source}: no such file")
    method = Method.load(config)  # SAE and features are checked before any actor starts...
    check_model_config(config, method.sae)  # ...and the model's config, without its weights
    outputs = ScoreOutputs.for_input(local_name(source), output)
    if not is_uri(source):
        refuse_overwriting_input(Path(source), outputs.scores, output)
    ray = start_ray(options.address)
    plan = actor_plan(ray, config, options)
    dataset = ray.data.read_datasource(line_datasource(source), num_cpus=READ_CPUS).map_batches(
        ScoreActor,
        fn_constructor_kwargs={"config": config, "source": source, "threads": plan.threads},
        batch_size=config.chunk_records,
        batch_format="numpy",
        concurrency=plan.actors,
        num_gpus=plan.gpus,
        num_cpus=plan.cpus,
        # without GPUs to pin them, actors would pack onto one node: spread them over the nodes
        scheduling_strategy="DEFAULT" if plan.gpus else "SPREAD",
    )
    if on_start:
        on_start(None if is_uri(source) else count_lines(Path(source)))
    try:
        n_lines = collect_rows(dataset, outputs.partial, source, config.on_error == "fail", on_progress)
    except BaseException:
        outputs.partial.unlink(missing_ok=True)  # no --resume on Ray: a partial file would only be litter
        raise
    refuse_empty(source, n_lines)
    input_name: Any = source if is_uri(source) else Path(source)
    return finalize(input_name, outputs, method.description(), n_lines, time.perf_counter() - started)


def collect_rows(dataset: Any, partial_path: Path, source: str, fail_on_bad_line: bool,
                 on_progress: Callable[[int], None] | None) -> int:
    """Write the actors' rows to the partial file in line order, checking that each line arrives once."""
    n_lines = 0
    with partial_path.open("w", encoding="utf-8") as partial:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for line, row, problem in zip(batch["line"], batch["row"], batch["problem"], strict=True):
                n_lines += 1
                if int(line) != n_lines:
                    raise RuntimeError(f"internal error: line {int(line)} arrived where {n_lines} was due")
                if fail_on_bad_line and problem and problem != "blank line":
                    raise bad_line(f"{source}:{n_lines}", problem)
                partial.write(row)
            if on_progress:
                on_progress(len(batch["line"]))
    return n_lines


def check_model_config(config: ScoreConfig, sae: LoadedSAE) -> None:
    """Fail in the driver, with a clear message, on a model the actors could not load or use.

    Reads the model's config only (for the embedded default this also converts it once, so
    actors on this machine do not race to do it)."""
    from transformers import AutoConfig

    path = resolve_model_spec(config.model)
    try:
        model_config = AutoConfig.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"--model {config.model}: could not load its config: {str(err).splitlines()[0]}") from None
    if isinstance(getattr(model_config, "hidden_size", None), int):
        check_width(model_config.hidden_size, sae)
    if isinstance(getattr(model_config, "num_hidden_layers", None), int):
        check_hook_depth(model_config.num_hidden_layers, sae.hook)
