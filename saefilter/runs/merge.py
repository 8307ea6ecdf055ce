"""`saefilter merge`: join the shard files of `score --shard I/N` into the score file a single
process would have written, byte for byte. Ranks and percentiles are computed here, over all rows.

Refuses, with the reason, a missing or duplicated shard, shards of another input or configuration,
and a shard whose rows do not cover exactly the lines it owns.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

import numpy as np

from saefilter.errors import InputError
from saefilter.files import iter_jsonl, json_line
from saefilter.inputs.records import file_sha256, iter_raw_lines
from saefilter.outputs.score_files import ScoreOutputs, Shard
from saefilter.runs.pipeline import ScoreSummary, finalize, shard_meta_path


def find_shards(input_path: Path, output: Path | None = None) -> list[Path]:
    scores = ScoreOutputs.for_input(input_path, output).scores
    pattern = scores.name.removesuffix(".jsonl") + ".shard-*-of-*.jsonl"
    return sorted(scores.parent.glob(pattern))


def merge_shards(input_path: Path, shard_files: list[Path], output: Path | None = None) -> ScoreSummary:
    if not shard_files:
        raise InputError(f"no shard files found for {input_path}; run `saefilter score --shard I/N` first")
    metas = {}
    for path in shard_files:
        meta_path = shard_meta_path(path)
        if not meta_path.exists():
            raise InputError(f"{path}: no {meta_path.name} beside it; was the shard run completed?")
        metas[path] = json.loads(meta_path.read_text())
    counts = {meta["shard"][1] for meta in metas.values()}
    if len(counts) != 1:
        raise InputError(f"shards come from different splits: N = {sorted(counts)}")
    count = counts.pop()
    indices = sorted(meta["shard"][0] for meta in metas.values())
    missing = sorted(set(range(count)) - set(indices))
    if missing:
        raise InputError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)}")
    if len(indices) != len(set(indices)):
        raise InputError("a shard was given twice")
    blocks = {Shard(*meta["shard"]).block for meta in metas.values()}
    if len(blocks) != 1:
        raise InputError(f"shards were cut in different blocks (--checkpoint-every {', '.join(map(str, sorted(blocks)))}); "
                         "score every shard with the same setting")
    input_sha = file_sha256(input_path)
    line_numbers = np.fromiter((line_no for line_no, _raw in iter_raw_lines(input_path)), dtype=np.int64)
    first = next(iter(metas.values()))
    for path, meta in metas.items():
        if meta["input_sha256"] != input_sha:
            raise InputError(f"{path} was scored from a different version of {input_path}")
        if meta["run"]["config_fingerprint"] != first["run"]["config_fingerprint"]:
            raise InputError(f"{path} was scored with a different configuration than the other shards")
        shard = Shard(*meta["shard"])
        lines = np.fromiter((row["line"] for row in iter_jsonl(path)), dtype=np.int64)
        ordinals = np.arange(len(line_numbers))
        expected = line_numbers[(ordinals // shard.block) % shard.count == shard.index]
        if not np.array_equal(lines, expected):
            raise InputError(f"{path}: incomplete shard ({len(lines)} of {len(expected)} rows); re-run it with --resume")
    outputs = ScoreOutputs.for_input(input_path, output)
    streams = [iter_jsonl(path) for path in shard_files]
    with outputs.partial.open("w", encoding="utf-8") as partial:
        for row in heapq.merge(*streams, key=lambda r: r["line"]):
            partial.write(json_line(row))
    return finalize(input_path, outputs, first["run"], first["lines_total"], 0.0)
