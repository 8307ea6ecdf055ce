"""`saefilter eval`: how well does the geometric score find the samples it should, against baselines
computed in the same run from the same activations?

Methods (each a score per sample; higher = remove first):
- geometric: saefilter's score (see `scoring.sample`), for each aggregation, k and feature count asked for
- direct: share of the sample's SAE activation mass on the harmful features themselves (no geometry)
- repmatch: representation matching (He, Xia & Henderson 2024, "What's in your safe data?"):
  mean cosine of the sample's mean hidden state (same layer, scored tokens) to its top-n nearest
  harmful anchor examples
- random: a seeded uniform draw, beside the analytic expectation

`evaluate_config` runs the whole evaluation (read labelled files, encode once, every method) and
is what `saefilter eval` calls; the CLI only adds progress bars and printing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.errors import InputError
from saefilter.features.feature_set import FeatureSet, load_feature_set
from saefilter.features.selection import encode_each, encode_reference, reference_activations
from saefilter.inputs.reference import read_labelled, read_pair_sides, read_reference
from saefilter.inputs.render import EncodedSample
from saefilter.progress import ProgressFactory, no_progress
from saefilter.runs.overlap import overlap_report
from saefilter.sae.encoder import FeatureEncoder
from saefilter.sae.geometry import KERNELS
from saefilter.scoring.config import DEFAULT_KERNEL, ScoreConfig
from saefilter.scoring.methods import direct_scores, excess_over_dataset, geometric_scores, representation_matching
from saefilter.scoring.metrics import (
    all_metrics,
    bootstrap_intervals,
    pairwise_accuracy,
    pairwise_interval,
    random_expectation,
)
from saefilter.scoring.scorer import load_backbone


@dataclass
class EvalActivations:
    aggregated: dict[str, np.ndarray]  # "max" / "mean" -> [n, d_sae]
    mean_residual: np.ndarray  # [n, d_model]


def collect(
    encoder: FeatureEncoder, samples: Sequence[EncodedSample], batch_size: int, batch_tokens: int,
    on_progress: Callable[[int], None] | None = None,
) -> EvalActivations:
    """Max and mean activations and mean residuals per sample, from the one collecting pass."""
    found = reference_activations(encoder, list(samples), batch_size=batch_size, batch_tokens=batch_tokens,
                                  on_progress=on_progress, with_means=True, with_tokens=False)
    assert found.mean_acts is not None and found.mean_residual is not None
    return EvalActivations({"max": found.acts, "mean": found.mean_acts}, found.mean_residual)


@dataclass(frozen=True)
class MethodResult:
    method: str
    variant: str
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]


def evaluate_scores(
    method: str, variant: str, scores: np.ndarray, labels: np.ndarray, n_boot: int, seed: int,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> MethodResult:
    """Every metric with its bootstrap interval; with `pairs` (row indices of the harmful and the
    benign side of each matched pair), also the share of pairs ranked the right way round."""
    metrics, intervals = all_metrics(scores, labels), bootstrap_intervals(scores, labels, n_boot, seed)
    if pairs is not None:
        harmful, benign = scores[pairs[0]], scores[pairs[1]]
        metrics["pairwise_accuracy"] = pairwise_accuracy(harmful, benign)
        intervals["pairwise_accuracy"] = pairwise_interval(harmful, benign, n_boot, seed)
    return MethodResult(method, variant, metrics, intervals)


def run_methods(
    acts: EvalActivations,
    labels: np.ndarray,
    feature_set: FeatureSet,
    decoder: np.ndarray,
    anchors: np.ndarray | None,
    neighbours: Sequence[int] = (1, 5),
    feature_counts: Sequence[int] | None = None,
    repmatch_top_n: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    kernels: Sequence[str] = (DEFAULT_KERNEL,),
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[MethodResult]:
    results = []

    def evaluate(method: str, variant: str, scores: np.ndarray) -> MethodResult:
        return evaluate_scores(method, variant, scores, labels, n_boot, seed, pairs)

    counts = sorted({min(c, len(feature_set.features)) for c in (feature_counts or [len(feature_set.features)])})
    for count in counts:
        harmful, weights = feature_set.indices[:count], feature_set.weights[:count]
        for k, kernel in ((k, kernel) for k in neighbours for kernel in kernels):
            proximity = feature_set.proximity(decoder, k, kernel, count).proximity
            for aggregation, matrix in acts.aggregated.items():
                variant = f"{aggregation}, k={k}, {kernel}, {count} features"
                results.append(evaluate("geometric", variant, geometric_scores(matrix, proximity)))
                excess = geometric_scores(excess_over_dataset(matrix), proximity)
                results.append(evaluate("geometric", f"{variant}, excess", excess))
        for aggregation, matrix in acts.aggregated.items():
            variant = f"{aggregation}, {count} features"
            results.append(evaluate("direct", variant, direct_scores(matrix, harmful, weights)))
    if anchors is not None:
        scores = representation_matching(acts.mean_residual, anchors, repmatch_top_n)
        results.append(evaluate("repmatch", f"top-{repmatch_top_n} of {len(anchors)} anchors", scores))
    draw = np.random.default_rng(seed).random(len(labels))
    results.append(evaluate("random", f"seeded draw (seed {seed})", draw))
    expectation = random_expectation(labels) | ({"pairwise_accuracy": 0.5} if pairs is not None else {})
    results.append(MethodResult("random", "expectation", expectation, {k: (v, v) for k, v in expectation.items()}))
    return results


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate: labelled samples (positive/negative files, one file with a label key, or a
    file of matched pairs),
    the anchors of the representation-matching baseline, and the variants to compare."""

    positive: Sequence[Path] = ()
    negative: Sequence[Path] = ()
    data: Path | None = None
    pairs: Path | None = None  # matched pairs: {"prompt", "harmful", "benign"} or {"chosen", "rejected"}
    labels: str | None = None
    anchors: Sequence[Path] = ()
    limit: int | None = None  # at most this many per class, a seeded subsample
    neighbours: Sequence[int] = (1, 5)
    feature_counts: Sequence[int] | None = None
    kernels: Sequence[str] = (DEFAULT_KERNEL,)
    bootstrap: int = 1000
    seed: int = 0
    judges: Sequence[str] = ()  # chat models asked whether each sample is harmful (scoring.judge)
    strict: bool = False  # refuse rows the feature set was built or chosen on (else a warning)




def labelled_conversations(request: EvalRequest, field: str | None) -> tuple[list[Any], np.ndarray, np.ndarray | None]:
    """Conversations, their 0/1 labels and, for a pairs file, each row's pair number (else None)."""
    sources = sum([request.data is not None, request.pairs is not None, bool(request.positive or request.negative)])
    if sources > 1:
        raise InputError("give one of: --positive with --negative, --data with --labels, or --pairs")
    pair_of = None
    if request.pairs is not None:
        conversations, y, pair_list = [], [], []
        for n, (harmful, benign) in enumerate(read_pair_sides(request.pairs, field)):
            conversations += [harmful, benign]
            y += [1, 0]
            pair_list += [n, n]
        pair_of = np.array(pair_list, dtype=np.int64)
    elif request.data is not None:
        if not request.labels:
            raise InputError("--data needs --labels COLUMN")
        conversations, y = read_labelled(request.data, request.labels, field)
    else:
        if not request.positive or not request.negative:
            raise InputError("give --positive and --negative files, --data with --labels, or --pairs")
        pos = [c for p in request.positive for c in read_reference(p)]
        neg = [c for p in request.negative for c in read_reference(p)]
        conversations, y = pos + neg, [1] * len(pos) + [0] * len(neg)
    labels = np.array(y, dtype=np.int64)
    if request.limit is not None:
        rng = np.random.default_rng(request.seed)
        if pair_of is not None:  # whole pairs, so every kept row keeps its partner
            chosen = rng.permutation(pair_of.max() + 1 if len(pair_of) else 0)[: request.limit]
            keep = np.flatnonzero(np.isin(pair_of, chosen))
        else:
            keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: request.limit] for c in (1, 0)]))
        conversations, labels = [conversations[i] for i in keep], labels[keep]
        pair_of = pair_of[keep] if pair_of is not None else None
    return conversations, labels, pair_of


def complete_pairs(pair_of: Sequence[Any], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the harmful and the benign side of every pair that kept both sides."""
    harmful = {p: i for i, (p, y) in enumerate(zip(pair_of, labels, strict=True)) if y == 1}
    benign = {p: i for i, (p, y) in enumerate(zip(pair_of, labels, strict=True)) if y == 0}
    both = [p for p in harmful if p in benign]
    return np.array([harmful[p] for p in both], dtype=np.int64), np.array([benign[p] for p in both], dtype=np.int64)


def evaluate_config(config: ScoreConfig, request: EvalRequest, progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Every method on the same activations of the same samples, as one JSON-ready report."""
    unknown = [kernel for kernel in request.kernels if kernel not in KERNELS]
    if unknown:
        raise InputError(f"--kernels: unknown {', '.join(unknown)}; use {', '.join(KERNELS)}")
    conversations, y, pair_of = labelled_conversations(request, config.field)
    feature_set = load_feature_set(config.features_path)
    overlap = overlap_report(feature_set.provenance, conversations, "evaluation rows", request.strict)
    lm, loaded = load_backbone(config, check_sae=feature_set.check_against)
    encoder = FeatureEncoder(lm, loaded)
    encoded = encode_each(conversations, lm.tokenizer, config.tokens, config.max_tokens)
    samples = [s for s in encoded if s is not None]
    usable = np.array([s is not None for s in encoded], dtype=bool)
    y = y[usable]
    pairs = complete_pairs(pair_of[usable].tolist(), y) if pair_of is not None else None
    if y.sum() == 0 or y.sum() == len(y):
        raise InputError("need usable samples of both classes")
    start = time.perf_counter()
    with progress("encoding", len(samples)) as advance:
        acts = collect(encoder, samples, config.batch_size, config.batch_tokens, advance)
    n_layers = int(lm.model.config.num_hidden_layers)
    costs = {"geometric": cost_per_1000(len(samples), time.perf_counter() - start,
                                        sum(len(s.input_ids) for s in samples),
                                        min(loaded.hook.layer + 1, n_layers), n_layers, config.model)}
    anchor_matrix = None
    if request.anchors:
        anchor_conversations = [c for p in request.anchors for c in read_reference(p)]
        anchor_samples, _ = encode_reference(anchor_conversations, lm.tokenizer, config.tokens, config.max_tokens)
        with progress("anchors", len(anchor_samples)) as advance:
            anchor_matrix = collect(encoder, anchor_samples, config.batch_size, config.batch_tokens, advance).mean_residual
    decoder = loaded.sae.W_dec.detach().float().cpu().numpy()
    results = run_methods(acts, y, feature_set, decoder, anchor_matrix, request.neighbours, request.feature_counts,
                          n_boot=request.bootstrap, seed=request.seed, kernels=request.kernels, pairs=pairs)
    kept = [c for c, s in zip(conversations, encoded, strict=True) if s is not None]
    truncated = {"geometric": sum(s.truncated for s in samples)}
    for spec in request.judges:
        judged, judge_layers = run_judge(spec, config, kept, progress)
        results.append(evaluate_scores("judge", f"{spec}: log P(yes) - log P(no)", judged.scores, y,
                                       request.bootstrap, request.seed, pairs))
        costs[f"judge {spec}"] = cost_per_1000(len(kept), judged.seconds, judged.tokens, judge_layers, judge_layers, spec)
        truncated[f"judge {spec}"] = judged.truncated
    return {
        "n_positive": int(y.sum()), "n_negative": int(len(y) - y.sum()), "unusable": len(conversations) - len(y),
        "n_pairs": len(pairs[0]) if pairs is not None else None,
        "model": config.model, "sae": config.sae, "hook": loaded.hook.name, "features": config.features,
        "tokens": config.tokens, "seed": request.seed, "bootstrap": request.bootstrap,
        "results": [asdict(r) for r in results],
        "costs": costs,
        "truncated_to_max_tokens": {"max_tokens": config.max_tokens, **truncated},
        "overlap": overlap,
    }


def cost_per_1000(n: int, seconds: float, tokens: int, layers_run: int, layers: int, model: str) -> dict[str, Any]:
    """What a method spent, scaled to 1,000 rows: wall seconds, tokens through the model, layers run."""
    scale = 1000 / max(n, 1)
    return {"model": model, "rows": n, "seconds_per_1000": round(seconds * scale, 2),
            "tokens_per_1000": round(tokens * scale), "layers_run": f"{layers_run} of {layers}"}


def run_judge(spec: str, config: ScoreConfig, conversations: Sequence[Any], progress: ProgressFactory):
    """(JudgeScores, the judge's layer count): the judge model loaded like --model, with the run's
    device, dtype and batch size, its samples cut at the same --max-tokens."""
    from saefilter.model.loading import load_model
    from saefilter.scoring.judge import judge_scores

    judge = load_model(spec, device=config.device, dtype=config.resolved_dtype, trust_remote_code=config.trust_remote_code)
    with progress(f"judge {spec}", len(conversations)) as advance:
        try:
            judged = judge_scores(judge.model, judge.tokenizer, conversations, config.batch_size, config.max_tokens,
                                  advance)
        except ValueError as err:
            raise InputError(f"--judge {spec}: {err}") from None
    return judged, int(judge.model.config.num_hidden_layers)
