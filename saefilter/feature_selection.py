"""Choose harmful SAE features from reference text: the latents that best separate harmful from
benign samples, each with statistics and an offline label made from its top-activating tokens.

Per latent, with a sample's activation aggregated over its scored tokens (max):
    effect size = (mean_harmful - mean_benign) / pooled standard deviation   (Cohen's d)
Latents are ranked by effect size among those active in at least `min_frequency` of the harmful
samples and at most `max_benign_frequency` of the benign ones, so a latent that fires only on
harmful text comes first, and neither a rare spike nor an always-on structural latent does.
Contrasts should be matched in domain (same prompt, same genre), or the selection picks up
the domain instead of the harm.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from saefilter.activations import FeatureEncoder, length_batches
from saefilter.features import FeatureSet, HarmfulFeature
from saefilter.formats import Conversation, FormatError
from saefilter.render import EncodedSample, TokenMode, encode, render


@dataclass
class ReferenceActivations:
    """Per-sample max activation of every latent, and where in the sample it peaked."""

    acts: np.ndarray  # [n_samples, d_sae] float32
    peak_position: np.ndarray  # [n_samples, d_sae] int32: index into the sample's input_ids
    samples: list[EncodedSample]
    n_unusable: int


def encode_each(conversations: Iterable[Conversation], tokenizer, tokens: TokenMode, max_tokens: int) -> list[EncodedSample | None]:
    """One entry per conversation; None where it has nothing to score."""
    encoded: list[EncodedSample | None] = []
    for conversation in conversations:
        try:
            encoded.append(encode(render(conversation, tokenizer, tokens), tokenizer, max_tokens))
        except FormatError:
            encoded.append(None)
    return encoded


def encode_reference(
    conversations: Iterable[Conversation], tokenizer, tokens: TokenMode, max_tokens: int
) -> tuple[list[EncodedSample], int]:
    encoded = encode_each(conversations, tokenizer, tokens, max_tokens)
    usable = [s for s in encoded if s is not None]
    return usable, len(encoded) - len(usable)


def reference_activations(
    encoder: FeatureEncoder,
    samples: list[EncodedSample],
    n_unusable: int = 0,
    batch_size: int = 16,
    batch_tokens: int = 8192,
    on_progress: Callable[[int], None] | None = None,
) -> ReferenceActivations:
    d_sae = encoder.sae.d_sae
    acts = np.zeros((len(samples), d_sae), dtype=np.float32)
    peaks = np.zeros((len(samples), d_sae), dtype=np.int32)
    for batch in length_batches([len(s.input_ids) for s in samples], batch_size, batch_tokens):
        for i, token_acts in zip(batch, encoder.token_features([samples[i] for i in batch]), strict=True):
            positions = np.flatnonzero(samples[i].scored)
            peak = token_acts.argmax(axis=0)
            acts[i] = token_acts[peak, np.arange(d_sae)]
            peaks[i] = positions[peak]
        if on_progress:
            on_progress(len(batch))
    return ReferenceActivations(acts, peaks, samples, n_unusable)


@dataclass(frozen=True)
class FeatureStats:
    index: int
    effect_size: float
    freq_harmful: float
    freq_benign: float
    mean_harmful: float
    mean_benign: float


def contrast_statistics(harmful: np.ndarray, benign: np.ndarray) -> dict[str, np.ndarray]:
    """Per-latent statistics of [n, d_sae] aggregated activations in two sets."""
    mean_h, mean_b = harmful.mean(0), benign.mean(0)
    var_h, var_b = harmful.var(0, ddof=1), benign.var(0, ddof=1)
    n_h, n_b = len(harmful), len(benign)
    pooled = np.sqrt(((n_h - 1) * var_h + (n_b - 1) * var_b) / max(n_h + n_b - 2, 1))
    effect = (mean_h - mean_b) / np.maximum(pooled, 1e-6)
    return {
        "effect_size": effect,
        "freq_harmful": (harmful > 0).mean(0),
        "freq_benign": (benign > 0).mean(0),
        "mean_harmful": mean_h,
        "mean_benign": mean_b,
    }


def select_features(
    harmful: np.ndarray, benign: np.ndarray, top: int, min_frequency: float = 0.02, max_benign_frequency: float = 0.5
) -> list[FeatureStats]:
    """Top latents by effect size, among those active in >= min_frequency of harmful samples and in
    <= max_benign_frequency of benign ones: a latent that fires on most benign text (end-of-turn
    markers, punctuation) encodes form, not harm, even when its magnitude differs between the sets."""
    if len(harmful) < 2 or len(benign) < 2:
        raise ValueError("need at least two usable samples in each reference set")
    stats = contrast_statistics(harmful, benign)
    eligible = (
        (stats["freq_harmful"] >= min_frequency)
        & (stats["freq_benign"] <= max_benign_frequency)
        & (stats["effect_size"] > 0)
    )
    candidates = np.flatnonzero(eligible)
    order = candidates[np.argsort(-stats["effect_size"][candidates], kind="stable")][:top]
    return [
        FeatureStats(int(i), *(round(float(stats[key][i]), 4) for key in (
            "effect_size", "freq_harmful", "freq_benign", "mean_harmful", "mean_benign")))
        for i in order
    ]


def word_at(ids: Sequence[int], position: int, decode: Callable[[list[int]], str], reach: int = 3) -> str:
    """The whole word a token sits in (' b' + 'itch' -> 'bitch'), so labels read as words rather than
    subword fragments. Two tokens belong to one word when they decode with nothing between them
    and meet letter to letter or digit to digit."""

    def joined(left: int, right: int) -> bool:
        a, b = decode([ids[left]]), decode([ids[right]])
        return bool(a) and bool(b) and a[-1].isalnum() and b[0].isalnum() and decode([ids[left], ids[right]]) == a + b

    start = end = position
    while start > 0 and position - start < reach and joined(start - 1, start):
        start -= 1
    while end + 1 < len(ids) and end - position < reach and joined(end, end + 1):
        end += 1
    return decode(list(ids[start : end + 1])).strip()


def label_feature(
    index: int, reference: ReferenceActivations, decode: Callable[[list[int]], str], n_top: int = 10, window: int = 6
) -> tuple[str, list[str]]:
    """A label from the words where the latent peaks most strongly, and a few context snippets."""
    column = reference.acts[:, index]
    top_samples = [i for i in np.argsort(-column, kind="stable")[:n_top] if column[i] > 0]
    tokens: Counter[str] = Counter()
    snippets = []
    for i in top_samples:
        ids = reference.samples[i].input_ids
        peak = int(reference.peak_position[i, index])
        tokens[word_at(ids, peak, decode) or repr(decode([ids[peak]]))] += 1
        if len(snippets) < 3:
            left, centre, right = decode(ids[max(0, peak - window) : peak]), decode([ids[peak]]), decode(ids[peak + 1 : peak + 1 + window])
            snippets.append(f"{left}[[{centre}]]{right}".replace("\n", " "))
    label = ", ".join(f"'{token}'" for token, _ in tokens.most_common(4))
    return label, snippets


def build_feature_set(
    harmful: ReferenceActivations,
    benign: ReferenceActivations,
    top: int,
    decode: Callable[[list[int]], str],
    sae_spec: str,
    d_sae: int,
    meta: dict,
    min_frequency: float = 0.02,
    max_benign_frequency: float = 0.5,
) -> FeatureSet:
    chosen = select_features(harmful.acts, benign.acts, top, min_frequency, max_benign_frequency)
    features = []
    for stats in chosen:
        label, snippets = label_feature(stats.index, harmful, decode)
        features.append(
            HarmfulFeature(
                stats.index,
                label,
                1.0,
                {
                    "effect_size": stats.effect_size,
                    "freq_harmful": stats.freq_harmful,
                    "freq_benign": stats.freq_benign,
                    "mean_harmful": stats.mean_harmful,
                    "mean_benign": stats.mean_benign,
                    "snippets": snippets,
                },
            )
        )
    counts = {"harmful_samples": len(harmful.samples), "benign_samples": len(benign.samples),
              "unusable_harmful": harmful.n_unusable, "unusable_benign": benign.n_unusable}
    return FeatureSet(tuple(features), d_sae, sae_spec, {"selection": {**meta, **counts, "top": top,
                                                                        "min_frequency": min_frequency,
                                                                        "max_benign_frequency": max_benign_frequency,
                                                                        "ranking": "Cohen's d of per-sample max activation"}})


def feature_set_from_ids(ids: Sequence[int], sae_spec: str, d_sae: int, labels: dict[int, str] | None = None) -> FeatureSet:
    labels = labels or {}
    features = tuple(HarmfulFeature(i, labels.get(i, "")) for i in ids)
    return FeatureSet(features, d_sae, sae_spec, {"selection": {"method": "hand-picked ids"}})
