"""The labelled sets every quality benchmark measures on, and how a score is measured on them:
shared by benchmark_quality.py, benchmark_dtype.py, benchmark_faithfulness.py,
benchmark_matched_ceiling.py and benchmark_scale_probes.py (the sets themselves are built by
scripts/build_reference_data.py; benchmark_quality.py's docstring says what each one is).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saefilter.features.selection import encode_each
from saefilter.inputs.formats import to_conversation
from saefilter.inputs.reference import read_reference
from saefilter.model.loading import load_model
from saefilter.runs.evaluate import collect, complete_pairs
from saefilter.sae.encoder import FeatureEncoder
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.metrics import auroc, bootstrap_intervals, pairwise_accuracy, pairwise_interval

DATA = Path("artifacts/data")
MIXED = Path("data/samples/mixed_chat.jsonl")
MIXED_HARMFUL_LINES = {3, 7, 10, 14, 16, 19}  # the plainly harmful rows of mixed_chat.jsonl
IDENTITY = Path("data/matched/identity_counterfactuals.jsonl")
HARD_NEGATIVES = Path("data/matched/hard_negatives.jsonl")
DOLLY = "Dolly safety-related (benign)"
BENIGN_ONLY = (DOLLY, "identity", "mixed_chat")  # no AUROC: one class, or reported their own way


@dataclass
class LabelledSet:
    conversations: list
    labels: np.ndarray
    pairs: list  # pair id per row, or None
    groups: list  # group (ToxiGen target, identity axis) per row, or None
    templates: list | None = None  # identity set: the template of each row
    terms: list | None = None  # identity set: the identity term or name of each row


def read_bench(path: Path) -> LabelledSet:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return LabelledSet([to_conversation({k: v for k, v in r.items() if k in ("messages", "text")}) for r in rows],
                       np.array([r["label"] for r in rows]), [r.get("pair") for r in rows], [r.get("group") for r in rows])


def seeded(items: list, n: int, seed: int) -> list:
    if len(items) <= n:
        return items
    return [items[i] for i in sorted(np.random.default_rng(seed).permutation(len(items))[:n])]


def two_sided(positive: list, negative: list) -> LabelledSet:
    n = len(positive) + len(negative)
    return LabelledSet(positive + negative, np.array([1] * len(positive) + [0] * len(negative)), [None] * n, [None] * n)


def benchmark_sets(split: str, limit: int) -> dict[str, LabelledSet]:
    bench = DATA / "bench"
    pairs = "pairs_tune" if split == "dev" else "pairs_report"
    sets = {
        "own pairs": read_bench(bench / f"{pairs}.jsonl"),
        "EM-model outputs": read_bench(bench / f"em_outputs_{split}.jsonl"),
        "HH-RLHF harmless": read_bench(bench / f"hh_{split}.jsonl"),
        "ToxiGen same-group": read_bench(bench / f"toxigen_{split}.jsonl"),
        "insecure vs secure": two_sided(seeded(list(read_reference(DATA / f"em_insecure_{split}.jsonl")), limit, 1),
                                        seeded(list(read_reference(DATA / f"em_secure_{split}.jsonl")), limit, 2)),
        "harmful vs benign (form-confounded)": two_sided(list(read_reference(DATA / "harmful_heldout.jsonl")),
                                                         list(read_reference(DATA / "benign_heldout.jsonl"))),
    }
    sets["hard negatives (dark topics)"] = hard_negative_set(sets["own pairs"], "tune" if split == "dev" else "report")
    if split == "test":
        sets[DOLLY] = read_bench(bench / "dolly_safety_test.jsonl")
    mixed = list(read_reference(MIXED))
    sets["mixed_chat"] = LabelledSet(mixed, np.array([int(i + 1 in MIXED_HARMFUL_LINES) for i in range(len(mixed))]),
                                     [None] * len(mixed), [None] * len(mixed))
    identity = [json.loads(line) for line in IDENTITY.read_text(encoding="utf-8").splitlines()]
    sets["identity"] = LabelledSet([to_conversation({"messages": r["messages"]}) for r in identity], np.zeros(len(identity)),
                                   [None] * len(identity), [r["axis"] for r in identity], [r["template"] for r in identity],
                                   [r["term"] for r in identity])
    return sets


def spot_rows(data: LabelledSet, n: int, seed: int = 0) -> LabelledSet:
    """At most n rows per class (n whole pairs where the rows are paired), seeded: a spot check."""
    rng = np.random.default_rng(seed)
    if any(p is not None for p in data.pairs):
        ids = sorted({p for p in data.pairs if p is not None})
        chosen = {ids[i] for i in rng.permutation(len(ids))[:n]}
        keep = [i for i, p in enumerate(data.pairs) if p in chosen]
    else:
        keep = sorted(int(i) for label in (1, 0) for i in rng.permutation(np.flatnonzero(data.labels == label))[:n])
    return rows_of(data, keep)


def rows_of(data: LabelledSet, keep: list[int]) -> LabelledSet:
    def pick(values: list | None) -> list | None:
        return [values[i] for i in keep] if values is not None else None

    return LabelledSet(pick(data.conversations), data.labels[keep], pick(data.pairs), pick(data.groups),
                       pick(data.templates), pick(data.terms))


def decontaminated(sets: dict[str, LabelledSet], provenance, in_distribution: set[str]) -> tuple[dict, dict]:
    """Each set without the rows `provenance` holds (whole pairs where rows are paired), unless the set
    is declared in-distribution; and what was found per set, dropped or kept."""
    from saefilter.features.provenance import check_overlap

    out, found = {}, {}
    for name, data in sets.items():
        overlap = check_overlap(provenance, data.conversations)
        declared = name in in_distribution or "all" in in_distribution
        found[name] = {"rows": len(overlap.rows), "by_role": overlap.counts(), "dropped": not declared and bool(overlap.rows)}
        if not overlap.rows or declared:
            out[name] = data
            continue
        hit_pairs = {data.pairs[i] for i in overlap.rows if data.pairs[i] is not None}
        keep = [i for i in range(len(data.labels)) if i not in set(overlap.rows) and data.pairs[i] not in hit_pairs]
        out[name] = rows_of(data, keep)
        print(f"{name}: dropped {len(data.labels) - len(keep)} rows that a feature set was built or chosen on "
              f"({overlap.summary('rows')}); first: {'; '.join(overlap.lines(2))}", flush=True)
    return out, found


def judge_set_scores(spec: str, conversations: list, max_tokens: int, cache: Path, batch: int = 32) -> np.ndarray:
    """An LLM judge's scores (scoring.judge), cached by row: one JSONL line {"key", "score"} per row,
    appended batch by batch, so a stopped run resumes where it was."""
    from saefilter.scoring.judge import JUDGE_PROMPT, judge_scores, transcript

    def key(conversation) -> str:
        return hashlib.sha256(json.dumps([spec, max_tokens, JUDGE_PROMPT, transcript(conversation)]).encode()).hexdigest()

    known = {}
    if cache.exists():
        known = {row["key"]: row["score"] for row in map(json.loads, cache.read_text().splitlines()) if row}
    keys = [key(c) for c in conversations]
    missing = [i for i, k in enumerate(keys) if k not in known]
    if missing:
        lm = load_model(spec, device="auto", dtype="float32")
        cache.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            judged = judge_scores(lm.model, lm.tokenizer, [conversations[i] for i in chunk], 8, max_tokens)
            with cache.open("a") as handle:
                for i, value in zip(chunk, judged.scores, strict=True):
                    known[keys[i]] = float(value)
                    handle.write(json.dumps({"key": keys[i], "score": float(value)}) + "\n")
    return np.array([known[k] for k in keys])


def hard_negative_chats(half: str) -> list:
    """The `tune` or `report` half of data/matched/hard_negatives.jsonl, as chats."""
    rows = [json.loads(line) for line in HARD_NEGATIVES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [to_conversation({"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["answer"]}]})
            for r in rows if r["split"] == half]


def hard_negative_set(own_pairs: LabelledSet, half: str) -> LabelledSet:
    """The split's harmful own-pair answers (label 1) against its benign answers on dark topics (label 0)."""
    harmful = [c for c, y in zip(own_pairs.conversations, own_pairs.labels, strict=True) if y == 1]
    return two_sided(harmful, hard_negative_chats(half))


def aggregated(encoder: FeatureEncoder, data: LabelledSet, cache: Path, how: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Max- or mean-aggregated SAE activations of the usable rows, and which rows those are (cached on
    disk: "acts" holds the max, "mean_acts" the mean; caches written before mean was kept are redone
    only when the mean is asked for)."""
    key = "acts" if how == "max" else "mean_acts"
    if cache.exists():
        stored = np.load(cache)
        if key in stored:
            return stored[key], stored["usable"]
    encoded = encode_each(data.conversations, encoder.lm.tokenizer, "response", 1024)
    usable = np.array([s is not None for s in encoded])
    both = collect(encoder, [s for s in encoded if s is not None], 16, 8192).aggregated
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, acts=both["max"], mean_acts=both["mean"], usable=usable)
    return (both["max"] if how == "max" else both["mean"]), usable


def cache_key(sae_fingerprint: str, split: str, limit: int | str, set_name: str, dtype: str = "float32") -> str:
    """float32 keys keep their old names; other dtypes are kept apart by a suffix."""
    suffix = "" if dtype == "float32" else f"-{dtype}"
    return f"{sae_fingerprint[7:23]}-{split}-{limit}-{set_name.replace(' ', '_')}{suffix}.npz"


def interval(scores: np.ndarray, labels: np.ndarray, n_boot: int) -> tuple[float, float]:
    return bootstrap_intervals(scores, labels, n_boot, 0, metric_fn=lambda s, y: {"auroc": auroc(s, y)})["auroc"]


def set_row(data: LabelledSet, s: np.ndarray, usable: np.ndarray, n_boot: int) -> dict:
    """AUROC with its interval, and pairwise accuracy with its interval where the rows come in pairs."""
    y = data.labels[usable]
    row = {"n_harmful": int(y.sum()), "n_benign": int(len(y) - y.sum()), "auroc": auroc(s, y), "auroc_ci": interval(s, y, n_boot)}
    kept = [p for p, u in zip(data.pairs, usable, strict=True) if u]
    if any(p is not None for p in kept):
        h, b = complete_pairs(kept, y)
        row |= {"pairs": len(h), "pairwise_accuracy": pairwise_accuracy(s[h], s[b]),
                "pairwise_ci": pairwise_interval(s[h], s[b], n_boot)}
    return row


def flagged(s: np.ndarray, y: np.ndarray, threshold: float | None) -> dict:
    """Shares of the harmful and benign rows at or above a suggested `check` threshold."""
    if threshold is None:
        return {}
    return {f"flagged_{side}": float(np.mean(s[y == label] >= threshold)) for side, label in (("harmful", 1), ("benign", 0))
            if (y == label).any()}


def measure(sets: dict[str, LabelledSet], scores: dict[str, np.ndarray], usable: dict[str, np.ndarray], n_boot: int,
            threshold: float | None = None) -> dict:
    result: dict = {}
    for name, data in sets.items():
        s, y = scores[name], data.labels[usable[name]]
        if name == DOLLY:
            result[name] = {"n_benign": len(y), **flagged(s, y, threshold)}
        if name in BENIGN_ONLY:
            continue
        row = set_row(data, s, usable[name], n_boot) | flagged(s, y, threshold)
        groups = [g for g, u in zip(data.groups, usable[name], strict=True) if u]
        if name.startswith("ToxiGen"):
            g = np.array(groups)
            row["per_group"] = {str(grp): auroc(s[g == grp], y[g == grp]) for grp in sorted(set(groups))
                                if 0 < y[g == grp].sum() < (g == grp).sum()}
        result[name] = row
    if "mixed_chat" in sets:  # absent only from a partly collected store (benchmark_scale_probes.py)
        mixed, y = scores["mixed_chat"], sets["mixed_chat"].labels[usable["mixed_chat"]]
        order = np.argsort(-mixed, kind="stable")
        result["mixed_chat"] = {"auroc": auroc(mixed, y), "harmful_ranks": sorted(int(np.flatnonzero(order == i)[0]) + 1 for i in np.flatnonzero(y == 1)),
                                "all_harmful_first": bool(mixed[y == 1].min() > mixed[y == 0].max())}
    if "identity" in sets:
        result["identity"] = identity_spread(sets, scores, usable)
    return result


IDENTITY_BENIGN_SETS = ("own pairs", "EM-model outputs", "HH-RLHF harmless")


def identity_spread(sets: dict[str, LabelledSet], scores: dict[str, np.ndarray], usable: dict[str, np.ndarray]) -> dict:
    """How far a benign answer's score moves when only an identity term or a name changes: the
    spread, within each template, of its rows' percentiles among the benign rows of the matched sets
    (percentiles, so sets of different score scales compare)."""
    benign = np.sort(np.concatenate([scores[n][sets[n].labels[usable[n]] == 0] for n in IDENTITY_BENIGN_SETS
                                     if n in scores]))
    identity = sets["identity"]
    percentile = np.searchsorted(benign, scores["identity"]) / len(benign)
    templates = np.array([t for t, u in zip(identity.templates, usable["identity"], strict=True) if u])
    axes = np.array([a for a, u in zip(identity.groups, usable["identity"], strict=True) if u])
    spread = {t: float(np.ptp(percentile[templates == t])) for t in sorted(set(templates))}
    return {"percentile_spread_mean": float(np.mean(list(spread.values()))),
            "percentile_spread_max": float(max(spread.values())),
            "score_spread_mean": float(np.mean([np.ptp(scores["identity"][templates == t]) for t in spread])),
            "per_axis_spread": {a: float(np.mean([np.ptp(percentile[(templates == t) & (axes == a)])
                                                  for t in spread if ((templates == t) & (axes == a)).sum() > 1]))
                                for a in sorted(set(axes))},
            "benign_reference": [n for n in IDENTITY_BENIGN_SETS if n in scores],
            "most_moved_template": max(spread, key=spread.get)}


def parse_config(item: str) -> tuple[str, str, str]:
    """NAME=SPECS[@AGGREGATION] -> (name, specs, aggregation); saefilter score's aggregation unless
    @max or @mean says otherwise (the specs themselves may hold ':' and '@'-free paths)."""
    name, _, specs = item.partition("=")
    how = ScoreConfig().aggregation
    if specs.rpartition("@")[2] in ("max", "mean"):
        specs, _, how = specs.rpartition("@")
    return name, specs, how


def fmt_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


# the probe ceilings (benchmark_matched_ceiling.py, benchmark_scale_probes.py): folds keep pairs whole
def row_groups(data: LabelledSet, usable: np.ndarray, offset: int) -> np.ndarray:
    """A fold group per usable row: its pair where it has one, else the row itself."""
    kept = [(p, i) for i, (p, u) in enumerate(zip(data.pairs, usable, strict=True)) if u]
    return np.array([f"{offset}:{p}" if p is not None else f"{offset}:row{i}" for p, i in kept])


def fit_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int):
    """A standardised logistic probe, its C chosen by AUROC over five folds that keep pairs whole."""
    from sklearn.linear_model import LogisticRegressionCV  # sklearn: only the probe benchmarks need it
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = list(GroupKFold(n_splits=5).split(x, y, groups))
    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=np.logspace(-4, 1, 11), cv=folds, scoring="roc_auc", max_iter=5000, random_state=seed))
    return probe.fit(x, y)
