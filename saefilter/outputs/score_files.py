"""The score files: their names beside the input, how a score row names its features, ranks and
percentiles. Every file lands through `saefilter.files.atomic_writer`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.errors import InputError


def component_id(feature: dict[str, Any]) -> str:
    """How a score row's top feature is named: its SAE index, or "direction J" for a harmful
    direction of the set (`features add-direction`)."""
    return str(feature["index"]) if "index" in feature else f"direction {feature['direction']}"


def top_latent(row: dict[str, Any]) -> dict[str, Any] | None:
    """The score row's latent (not a direction: a probe explains nothing) that counts most above its
    benign baseline, or by plain contribution when the set is not calibrated."""
    latents = [f for f in row["top_features"] if "index" in f]
    return max(latents, key=lambda f: f.get("above_benign", f["contribution"]), default=None)


def why_flagged(row: dict[str, Any]) -> tuple[str, str, str]:
    """Why a row scores high: the top latent's index and label (its kinds of harm, then the words it
    peaks on); the row's own words that carry the most harmful mass; and the phrase around the
    heaviest of them ("" when the row has none). Rows written before words existed name tokens."""
    latent = top_latent(row)
    first = f"#{latent['index']} {latent['label']}" if latent else "no latent above its benign level"
    if "top_words" in row:
        words = " ".join(repr(w["word"]) for w in row["top_words"][:5])
        spans = row.get("top_spans") or []
        phrase = f'"{" ".join(spans[0]["text"].split())}"' if spans else ""
        return first, f"words: {words or '-'}", phrase
    tokens = " ".join(repr(t["token"].strip() or t["token"]) for t in row["top_tokens"][:4])
    return first, f"tokens: {tokens or '-'}", ""


def meta_path_for(scores: Path) -> Path:
    """The metadata file written beside a score file: data.scores.jsonl and data.jsonl (a custom
    --output) both get data.scores.meta.json. `score` writes it, `report` reads it."""
    base = scores.name.removesuffix(".jsonl").removesuffix(".scores")
    return scores.with_name(f"{base}.scores.meta.json")




def dataset_stem(path: Path) -> str:
    """'data.jsonl.gz' -> 'data': the name all outputs of a dataset share."""
    name = path.name
    for suffix in (".gz", ".jsonl", ".json", ".parquet", ".csv"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def output_path(input_path: Path, suffix: str, out_dir: Path | None = None) -> Path:
    return (out_dir or input_path.parent) / f"{dataset_stem(input_path)}{suffix}"


def ranks_and_percentiles(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = highest score (ties broken by input order); percentile = % of rows scoring <= it."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.lexsort((np.arange(n), -scores))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(1, n + 1)
    sorted_scores = np.sort(scores)
    at_or_below = np.searchsorted(sorted_scores, scores, side="right")
    return ranks, np.round(100.0 * at_or_below / n, 2)



def with_ranks(rows: Iterable[dict[str, Any]], scores: np.ndarray) -> Iterator[dict[str, Any]]:
    """Each score row with its rank and percentile among `scores` (those rows' scores, in order);
    skipped rows pass as they are. What the score file and the API's `score` both write."""
    ranks, percentiles = ranks_and_percentiles(scores)
    position = 0
    for row in rows:
        if "score" in row:
            row = {**row, "rank": int(ranks[position]), "percentile": float(percentiles[position])}
            position += 1
        yield row

def score_stats(scores: np.ndarray) -> dict[str, float]:
    if len(scores) == 0:
        return {}
    quantiles = np.quantile(scores, [0.5, 0.9, 0.99])
    return {
        "mean": round(float(scores.mean()), 6),
        "std": round(float(scores.std()), 6),
        "min": round(float(scores.min()), 6),
        "median": round(float(quantiles[0]), 6),
        "p90": round(float(quantiles[1]), 6),
        "p99": round(float(quantiles[2]), 6),
        "max": round(float(scores.max()), 6),
    }


@dataclass(frozen=True)
class Shard:
    """Shard I of N owns the records (counted from 0 in input order) of every block of `block`
    consecutive records whose block number is I modulo N: deterministic and balanced. With the block
    equal to the checkpoint window, each shard length-sorts and batches exactly the records a single
    process batches together, so merged shards equal a single run byte for byte even where the
    numerics depend on batch composition (bfloat16)."""

    index: int
    count: int
    block: int = 1

    @classmethod
    def parse(cls, text: str, block: int = 1) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise InputError(f"--shard must look like I/N (e.g. 0/8), got '{text}'") from None
        if count < 1 or not 0 <= index < count:
            raise InputError(f"--shard {text}: need 0 <= I < N")
        return cls(index, count, block)

    def owns(self, ordinal: int) -> bool:
        return (ordinal // self.block) % self.count == self.index


@dataclass
class ScoreOutputs:
    scores: Path
    skipped: Path
    meta: Path
    partial: Path
    partial_state: Path

    @classmethod
    def for_input(cls, input_path: Path, output: Path | None = None, shard: Shard | None = None) -> ScoreOutputs:
        scores = output or output_path(input_path, ".scores.jsonl")
        if shard is not None:
            scores = scores.with_name(scores.name.removesuffix(".jsonl") + f".shard-{shard.index}-of-{shard.count}.jsonl")
        base = scores.name.removesuffix(".jsonl").removesuffix(".scores")
        return cls(
            scores=scores,
            skipped=scores.with_name(f"{base}.skipped.jsonl"),
            meta=meta_path_for(scores),
            partial=scores.with_name(f".{scores.name}.partial"),
            partial_state=scores.with_name(f".{scores.name}.partial.json"),
        )
