#!/usr/bin/env python
"""Are the words an explanation names why a row scores high? ERASER's comprehensiveness (DeYoung et
al. 2020) on the rows the default flags (its top 10% by score) of every labelled test set: delete the
k words the row's explanation names (k = 1, 3, 5), score again, and compare the drop with deleting k
random words of the same answer (mean of 10 draws) and with deleting the k words direct SAE mass
would name (the harmful latents' activation per token, no geometry). Target: the named words cut the
score at least twice as much as random words on at least 80% of the flagged harmful rows (k = 3).
Flagged benign rows are listed with their named words: what do they say about why?

    python scripts/benchmark_faithfulness.py -o benchmarks/faithfulness/2026-12-07.json

Needs artifacts/data/ (scripts/build_reference_data.py). Float32; --max-flagged bounds the rows per set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from quality_sets import DATA, benchmark_sets

from saefilter.inputs.records import Record
from saefilter.inputs.render import encode, render
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.faithfulness import deleted, random_words
from saefilter.scoring.scorer import Prepared, Scorer
from saefilter.scoring.words import top_words, word_masses

KS = (1, 3, 5)
DRAWS = 10


def direct_words(scorer: Scorer, prepared: Prepared):
    """The answer's words weighted by direct SAE mass: each token's activation of the harmful latents
    times their weights, no geometry (the `direct` baseline of `saefilter eval`, per token)."""
    feature_set = scorer.method.feature_set
    acts = np.maximum(scorer.encoder.token_features([prepared.encoded])[0], 0.0)
    mass = acts[:, feature_set.indices] @ np.asarray(feature_set.weights, dtype=np.float32)
    encoded = prepared.encoded
    positions = [p for p, flag in enumerate(encoded.scored) if flag]
    return word_masses(encoded.text, encoded.answers, [encoded.offsets[p] for p in positions], mass.tolist())


def row_drops(scorer: Scorer, conversation, index: int, seed: int) -> dict | None:
    record = Record("set", index + 1, b"", {})
    rendered = render(conversation, scorer.lm.tokenizer, scorer.config.tokens)
    prepared = Prepared(record, encode(rendered, scorer.lm.tokenizer, scorer.config.max_tokens))
    row, words = scorer.explain(prepared)
    if len(words) <= max(KS):
        return None
    answers = [prepared.encoded.text[s:e] for s, e in prepared.encoded.answers]
    baseline = direct_words(scorer, prepared)
    variants, owners = [], []
    for k in KS:
        for name, chosen in [("named", top_words(words, k)), ("direct", top_words(baseline, k)),
                             *[("random", c) for c in random_words(words, k, DRAWS, seed + index)]]:
            variants.append(deleted(conversation, answers, chosen))
            owners.append((k, name))
    scores = scorer.score_conversations(record, variants)
    drops: dict = {k: {"named": 0.0, "direct": 0.0, "random": []} for k in KS}
    for (k, name), score in zip(owners, scores, strict=True):
        if name == "random":
            drops[k]["random"].append(row["score"] - score)
        else:
            drops[k][name] = row["score"] - score
    return {"score": row["score"], "words": [w["word"] for w in row["top_words"][:5]],
            "drops": {k: {**d, "random": float(np.mean(d["random"]))} for k, d in drops.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.10, help="the flagged share of each set (its top scores)")
    parser.add_argument("--max-flagged", type=int, default=40, help="at most this many flagged rows per set")
    parser.add_argument("--limit", type=int, default=500, help="insecure/secure rows per class (as benchmark_quality)")
    parser.add_argument("--output", "-o", type=Path, default=None)
    args = parser.parse_args()
    if not (DATA / "bench").is_dir():
        raise SystemExit(f"{DATA}/bench: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    scorer = Scorer.load(ScoreConfig(dtype="float32"))
    results, started = {}, time.perf_counter()
    for name, data in benchmark_sets("test", args.limit).items():
        if name == "identity":  # counterfactual pairs of benign rows, not a labelled set
            continue
        scores = np.array(scorer.score_conversations(Record("set", 0, b"", {}), data.conversations))
        n_flag = max(1, round(args.share * len(scores)))
        flagged = [int(i) for i in np.argsort(-scores, kind="stable")[:n_flag]][: args.max_flagged]
        rows = []
        for i in flagged:
            measured = row_drops(scorer, data.conversations[i], i, seed=0)
            if measured is not None:
                rows.append({"row": i, "label": int(data.labels[i]), **measured})
        harmful = [r for r in rows if r["label"] == 1]
        summary = {"flagged": len(flagged), "measured": len(rows), "harmful": len(harmful)}
        for k in KS:
            if harmful:
                summary[f"k{k}_named_2x_random"] = float(np.mean([r["drops"][k]["named"] >= 2 * max(r["drops"][k]["random"], 1e-12)
                                                                  for r in harmful]))
                summary[f"k{k}_named_beats_direct"] = float(np.mean([r["drops"][k]["named"] > r["drops"][k]["direct"]
                                                                     for r in harmful]))
                for arm in ("named", "direct", "random"):
                    summary[f"k{k}_mean_drop_{arm}"] = round(float(np.mean([r["drops"][k][arm] for r in harmful])), 5)
        summary["benign_flagged"] = [{"row": r["row"], "score": r["score"], "words": r["words"]}
                                     for r in rows if r["label"] == 0]
        results[name] = {"summary": summary, "rows": rows}
        print(name, json.dumps({k: v for k, v in summary.items() if k != "benign_flagged"}), flush=True)
    out = {"share": args.share, "max_flagged": args.max_flagged, "ks": KS, "draws": DRAWS,
           "seconds": round(time.perf_counter() - started, 1), "sets": results}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
