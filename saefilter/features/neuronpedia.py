"""Harmful features for published SAEs from Neuronpedia explanation exports, selected by keyword.

An export is JSONL (optionally gzipped), one explanation per line, e.g.
    {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "1234",
     "description": "threats of violence", "explanationModelName": "..."}
A latent is chosen when any keyword occurs in one of its descriptions (case-insensitive, whole
word prefix: 'toxic' matches 'toxicity'). Several explanations of one latent are joined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from saefilter.errors import InputError
from saefilter.features.feature_set import FeatureSet, HarmfulFeature
from saefilter.inputs.records import iter_raw_lines

DEFAULT_KEYWORDS = (
    "toxic", "hate", "hateful", "slur", "racis", "violen", "kill", "murder", "weapon", "bomb", "explosive",
    "abuse", "harass", "threat", "insult", "offensive", "profanit", "obscen", "illegal", "crime", "criminal",
    "drug", "poison", "terror", "suicide", "self-harm", "harmful", "malicious", "hack", "exploit", "fraud", "scam",
    "deceiv", "manipulat", "extremis", "sexist", "misogyn", "discriminat",
)


def keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str]:
    if not keywords:
        raise InputError("give at least one keyword")
    return re.compile(r"\b(" + "|".join(re.escape(k.strip().lower()) for k in keywords if k.strip()) + ")", re.IGNORECASE)


def import_explanations(
    path: Path, keywords: Sequence[str], layer: str | None = None, d_sae: int | None = None, sae_spec: str | None = None
) -> FeatureSet:
    pattern = keyword_pattern(keywords)
    descriptions: dict[int, list[str]] = {}
    n_lines = 0
    for line_no, raw in iter_raw_lines(path):
        if not raw.strip():
            continue
        n_lines += 1
        try:
            row = json.loads(raw)
            index = int(row["index"])
            description = str(row.get("description") or "").strip()
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}:{line_no}: not a Neuronpedia explanation ({type(err).__name__}: {err})") from None
        if layer is not None and str(row.get("layer")) != layer:
            continue
        if description and pattern.search(description):
            descriptions.setdefault(index, [])
            if description not in descriptions[index]:
                descriptions[index].append(description)
    if not descriptions:
        raise InputError(f"{path}: none of {n_lines} explanations matched the keywords")
    features = tuple(HarmfulFeature(i, " | ".join(d)) for i, d in sorted(descriptions.items()))
    meta = {"selection": {"method": "neuronpedia keyword import", "source": str(path), "keywords": list(keywords),
                          "layer": layer, "explanations_read": n_lines}}
    return FeatureSet(features, d_sae, sae_spec, meta)
