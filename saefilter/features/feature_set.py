"""The harmful-feature set: which SAE latents count as harmful, with labels and weights.

File format (JSON). The full form, as `saefilter features build` writes it:
    {"format": "saefilter.features/1", "sae": "...", "d_sae": 4096,
     "features": [{"index": 12, "label": "violent threats", "weight": 1.0, "stats": {...}}, ...],
     "directions": [{"label": "...", "weight": 25.4, "vector": [...d_in floats...], "stats": {...}}]}
Hand-made files may be just a list: [12, 345] or [{"index": 12, "label": "..."}].

"provenance" (features/provenance.py) records, row by row, what the set was built and chosen on.

"directions" (optional, `saefilter features add-direction`) are harmful directions in the residual
stream that are not SAE latents, e.g. a probe's weight vector: a latent's proximity to one is the
cosine of its decoder row with it (clipped at 0) times its weight, added to its proximity to the
harmful latents. Scoring is unchanged otherwise: still the activation-weighted proximity of a
sample's latents to the harmful set.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.errors import InputError
from saefilter.features.provenance import Provenance
from saefilter.inputs.records import file_sha256
from saefilter.sae.geometry import FeatureProximity, feature_proximity

FORMAT_TAG = "saefilter.features/1"


@dataclass(frozen=True)
class HarmfulFeature:
    index: int
    label: str = ""
    weight: float = 1.0
    stats: dict[str, Any] = field(default_factory=dict)
    benign_contribution: float | None = None  # mean share of the score on benign text (`features calibrate`)


@dataclass(frozen=True)
class HarmfulDirection:
    label: str
    vector: tuple[float, ...]  # [d_in], in residual units; only its direction matters
    weight: float = 1.0
    stats: dict[str, Any] = field(default_factory=dict)
    benign_contribution: float | None = None


Component = HarmfulFeature | HarmfulDirection  # what a score's contributions are split over


@dataclass(frozen=True)
class FeatureSet:
    features: tuple[HarmfulFeature, ...]
    d_sae: int | None = None
    sae: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    directions: tuple[HarmfulDirection, ...] = ()
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def components(self) -> tuple[Component, ...]:
        """The harmful latents, then the harmful directions: position j of a score's contributions."""
        return (*self.features, *self.directions)

    def proximity(self, decoder: np.ndarray, k: int, kernel: str, count: int | None = None) -> FeatureProximity:
        """Every latent's proximity to this set (its first `count` latents and all its directions)."""
        features = self.features[:count]
        directions = np.array([d.vector for d in self.directions], np.float32) if self.directions else None
        return feature_proximity(decoder, [f.index for f in features], [f.weight for f in features], k, kernel,
                                 directions, [d.weight for d in self.directions])

    @property
    def indices(self) -> list[int]:
        return [f.index for f in self.features]

    @property
    def weights(self) -> list[float]:
        return [f.weight for f in self.features]

    def benign_baseline(self, scoring: dict[str, Any]) -> list[float] | None:
        """Each feature's benign contribution, if the set was calibrated with these scoring settings
        (aggregation, neighbours, kernel, tokens): contributions under other settings are not comparable."""
        calibration = self.meta.get("benign_calibration")
        if not isinstance(calibration, dict) or any(c.benign_contribution is None for c in self.components):
            return None
        if any(calibration.get(key) != value for key, value in scoring.items()):
            return None
        return [float(c.benign_contribution) for c in self.components]  # type: ignore[arg-type]

    def check_against(self, d_sae: int, d_in: int | None = None) -> None:
        """Fail before any model work when the set cannot belong to this SAE."""
        wrong = [d for d in self.directions if d_in is not None and len(d.vector) != d_in]
        if wrong:
            raise InputError(f"harmful direction {wrong[0].label!r} has {len(wrong[0].vector)} dimensions, "
                             f"this SAE reads {d_in}; rebuild it with `saefilter features add-direction`")
        if self.d_sae is not None and self.d_sae != d_sae:
            raise InputError(
                f"the feature set was built for an SAE with {self.d_sae} latents, this SAE has {d_sae}; "
                "pass the matching --sae or rebuild the set with `saefilter features build`"
            )
        too_big = [i for i in self.indices if i >= d_sae]
        if too_big:
            raise InputError(
                f"feature indices {too_big[:5]} are beyond the SAE width ({d_sae} latents, 0..{d_sae - 1})"
            )


def _weight_and_baseline(item: dict, where: str) -> tuple[float, float | None]:
    """The 'weight' (positive, default 1) and 'benign_contribution' (non-negative or absent) of a
    feature or direction entry."""
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise InputError(f"{where}: 'weight' must be a positive number, got {json.dumps(weight)}")
    baseline = item.get("benign_contribution")
    if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, int | float) or baseline < 0):
        raise InputError(f"{where}: 'benign_contribution' must be a non-negative number, got {json.dumps(baseline)}")
    return float(weight), None if baseline is None else float(baseline)


def _parse_feature(item: Any, where: str) -> HarmfulFeature:
    if isinstance(item, bool) or not isinstance(item, int | dict):
        raise InputError(f"{where}: expected a feature index or an object with 'index'")
    if isinstance(item, int):
        item = {"index": item}
    index = item.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InputError(f"{where}: 'index' must be a non-negative integer, got {json.dumps(index)}")
    weight, baseline = _weight_and_baseline(item, where)
    return HarmfulFeature(index, str(item.get("label", "")), weight, dict(item.get("stats", {})), baseline)


def _parse_direction(item: Any, where: str) -> HarmfulDirection:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object with 'vector'")
    vector = item.get("vector")
    if not isinstance(vector, list) or not vector or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in vector):
        raise InputError(f"{where}: 'vector' must be a non-empty list of finite numbers")
    if not any(vector):
        raise InputError(f"{where}: 'vector' is all zeros and has no direction")
    weight, baseline = _weight_and_baseline(item, where)
    return HarmfulDirection(str(item.get("label", "")), tuple(float(v) for v in vector), weight,
                            dict(item.get("stats", {})), baseline)


def load_feature_set(path: Path) -> FeatureSet:
    if not path.is_file():
        raise InputError(f"--features {path}: no such file")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"--features {path}: not valid JSON ({err})") from None
    header: dict[str, Any] = {}
    if isinstance(payload, dict):
        header, items = payload, payload.get("features")
    else:
        items = payload
    if not isinstance(items, list) or not items:
        raise InputError(f"--features {path}: expected a non-empty list of features")
    features = tuple(_parse_feature(item, f"{path}: features[{i}]") for i, item in enumerate(items))
    counts = Counter(f.index for f in features)
    duplicates = sorted(index for index, count in counts.items() if count > 1)
    if duplicates:
        raise InputError(f"--features {path}: duplicate feature indices {duplicates[:5]}")
    raw_directions = header.get("directions", [])
    if not isinstance(raw_directions, list):
        raise InputError(f"--features {path}: 'directions' must be a list")
    directions = tuple(_parse_direction(item, f"{path}: directions[{i}]") for i, item in enumerate(raw_directions))
    if len({len(d.vector) for d in directions}) > 1:
        raise InputError(f"--features {path}: the harmful directions have different lengths")
    provenance = Provenance.from_json(header["provenance"], f"{path}: provenance") if "provenance" in header \
        else Provenance()
    meta = {k: v for k, v in header.items() if k not in {"features", "d_sae", "sae", "directions", "provenance"}}
    return FeatureSet(features, header.get("d_sae"), header.get("sae"), meta, file_sha256(path), directions,
                      provenance)


def save_feature_set(feature_set: FeatureSet, path: Path) -> None:
    from saefilter.files import atomic_write_text

    payload = {
        "format": FORMAT_TAG,
        **feature_set.meta,
        "sae": feature_set.sae,
        "d_sae": feature_set.d_sae,
        "features": [
            {"index": f.index, "label": f.label, "weight": f.weight,
             **({"benign_contribution": f.benign_contribution} if f.benign_contribution is not None else {}),
             **({"stats": f.stats} if f.stats else {})}
            for f in feature_set.features
        ],
    }
    if feature_set.directions:
        payload["directions"] = [
            {"label": d.label, "weight": d.weight,
             **({"benign_contribution": d.benign_contribution} if d.benign_contribution is not None else {}),
             **({"stats": d.stats} if d.stats else {}), "vector": [round(v, 7) for v in d.vector]}
            for d in feature_set.directions
        ]
    if feature_set.provenance:
        payload["provenance"] = feature_set.provenance.as_json()
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def merge_feature_sets(named_sets: list[tuple[str, FeatureSet]], top_each: int | None = None) -> FeatureSet:
    """One set from several ranked sets (e.g. one per kind of harm): the first `top_each` of each, in
    order, a latent listed twice kept once (first label wins). Each feature's label starts with the
    name of the set it came from ("intent: 'smuggle'"), and `stats.source` holds it, so score rows,
    reports and `features show` say what kind of harm a flag is about."""
    if not named_sets:
        raise InputError("features merge: give at least one feature set")
    widths = {fs.d_sae for _, fs in named_sets if fs.d_sae is not None}
    if len(widths) > 1:
        raise InputError(f"features merge: the sets were built for SAEs of different widths {sorted(widths)}")
    sae_specs = {fs.sae for _, fs in named_sets if fs.sae}
    if len(sae_specs) > 1:
        raise InputError(f"features merge: the sets were built for different SAEs {sorted(sae_specs)}")
    if top_each is not None and top_each < 1:
        raise InputError("--top-each must be at least 1")
    with_directions = [name for name, fs in named_sets if fs.directions]
    if with_directions:  # a direction's weight is fitted against one set's latents: it does not carry over
        raise InputError(f"features merge: {', '.join(with_directions)} has harmful directions; merge sets of latents, "
                         "then run `saefilter features add-direction` on the result")
    merged: dict[int, HarmfulFeature] = {}
    sources = []
    provenance = Provenance()
    for name, feature_set in named_sets:
        provenance = provenance.merged(feature_set.provenance)
        taken = feature_set.features[:top_each]
        for feature in taken:
            if feature.index not in merged:
                label = f"{name}: {feature.label}" if feature.label else name
                merged[feature.index] = HarmfulFeature(feature.index, label, feature.weight, {**feature.stats, "source": name})
        sources.append({"set": name, "fingerprint": feature_set.fingerprint, "taken": len(taken), **feature_set.meta})
    return FeatureSet(tuple(merged.values()), widths.pop() if widths else None,
                      sae_specs.pop() if sae_specs else None, {"merged_from": sources, "top_each": top_each},
                      provenance=provenance)
