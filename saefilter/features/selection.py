"""Choose harmful SAE features from reference text: the latents that best separate harmful from
benign samples, each with statistics and an offline label made from its top-activating tokens.

Per latent, with a sample's activation aggregated over its scored tokens (max):
    effect size = (mean_harmful - mean_benign) / pooled standard deviation   (Cohen's d)
Latents are ranked by effect size among those active in at least `min_frequency` of the harmful
samples and at most `max_benign_frequency` of the benign ones, so a latent that fires only on
harmful text comes first, and neither a rare spike nor an always-on structural latent does.
Contrasts should be matched in domain (same prompt, same genre), or the selection picks up
the domain instead of the harm.

Token control (the default, `controlled_for_tokens`): a latent that fires on a word whatever the
context ('how', 'to', an author's name) separates two sets whenever the word is commoner in one of
them, which is phrasing, not harm. So before the contrast, each token's activation is reduced by
that latent's mean activation on the same token type in the benign set; what is left is what the
context adds, and a latent is chosen only for firing on harmful text more than the same words do
in benign text.

Paired contrasts (`paired`): when row i of the harmful side and row i of the benign side answer the
same user turn (the built-in `answers` and `code` contrasts), the latent's statistic is the paired
t of (harmful - benign) over the pairs: only what the answer changes counts, and a latent that tracks
the topic of the prompt cancels within each pair.

Kinds of harm (`harm_kinds`): when the pairs of a paired contrast carry a `category` (the built-in
`answers` contrast: violence, fraud, hate, ...), each chosen latent's label starts with the kinds
whose pairs it rises in most, before the words where it peaks.

Function-word filter (`without_function_word_latents`): token control removes what a word does in
every context, yet some latents still rise in harmful answers while peaking on 'of', 'be', 'Just'
or '.': they carry a little of the harmful context on words every text has, their labels name no
harm, and they fire on any text (a haiku, a bakery name). A latent whose top peak words are at least
half function words (`saefilter.features.function_words`) is passed over for the next in the ranking.

Identity filter (`identity_latents`): a latent that fires on neutral sentences mentioning a religion,
a nationality, a gender or a name far more often than on other benign text encodes *who is
mentioned*; hateful text mentions groups, so such latents separate toxic from neutral text, and a
benign answer that names a group would score as harmful. They are never chosen.

`features build` is three steps: `encode_contrasts` (one forward pass per side; `with_means` keeps
what a harmful direction is fitted on, so `--direction` needs no second pass), `identity_exclusion`,
and `select_from_encoded`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from saefilter.errors import InputError
from saefilter.features.feature_set import FeatureSet, HarmfulFeature, merge_feature_sets
from saefilter.features.function_words import function_word_share
from saefilter.features.settings import FUNCTION_WORD_SHARE, SELECTIONS, Selection, SelectionSettings
from saefilter.inputs.formats import Conversation, FormatError
from saefilter.inputs.render import EncodedSample, TokenMode, encode, render
from saefilter.model.activations import run_in_batches
from saefilter.progress import ProgressFactory, no_progress
from saefilter.sae.encoder import FeatureEncoder

RANKINGS = {
    "activation": "Cohen's d of per-sample max activation",
    "token-controlled": "Cohen's d of per-sample max excess over the latent's benign mean on the same token",
}
PAIRED_RANKINGS = {
    "activation": "paired t of per-sample max activation (harmful - benign answer to the same turn)",
    "token-controlled": "paired t of per-sample max excess over the latent's benign mean on the same token "
                        "(harmful - benign answer to the same turn)",
}


@dataclass
class TokenActivations:
    """Every scored token's largest latent activations (sparse): what the token-identity control needs."""

    token_ids: np.ndarray  # [n_tokens] int64: the vocabulary id at each scored position
    sample: np.ndarray  # [n_tokens] int64: which sample the token belongs to
    position: np.ndarray  # [n_tokens] int32: index into that sample's input_ids
    latents: np.ndarray  # [n_tokens, width] int64
    values: np.ndarray  # [n_tokens, width] float32 (0 where fewer latents are active)


@dataclass
class ReferenceActivations:
    """Per-sample max activation of every latent, where in the sample it peaked, and the per-token
    activations behind them."""

    acts: np.ndarray  # [n_samples, d_sae] float32
    peak_position: np.ndarray  # [n_samples, d_sae] int32: index into the sample's input_ids ([n, 0] without tokens)
    samples: list[EncodedSample]
    n_unusable: int
    tokens: TokenActivations | None = None
    # with `with_means`: what a harmful direction is fitted on, from the same forward pass
    mean_acts: np.ndarray | None = None  # [n_samples, d_sae] float32: mean over the scored tokens
    mean_residual: np.ndarray | None = None  # [n_samples, d_model] float32

    def aggregated(self, how: str) -> np.ndarray:
        """Per-sample activations aggregated as `saefilter score --aggregation` does."""
        if how == "max":
            return self.acts
        if how == "mean" and self.mean_acts is not None:
            return self.mean_acts
        raise ValueError(f"aggregation {how!r} needs reference_activations(..., with_means=True)")


def sparse_tokens(token_acts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The `width` largest activations of each token row, as (latents, values)."""
    width = min(width, token_acts.shape[1])
    latents = np.argpartition(-token_acts, width - 1, axis=1)[:, :width]
    values = np.take_along_axis(token_acts, latents, axis=1)
    return latents.astype(np.int64), np.maximum(values, 0).astype(np.float32)


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
    token_width: int = 128,
    with_means: bool = False,
    with_tokens: bool = True,
) -> ReferenceActivations:
    """The one pass that collects per-sample activations for everything but scoring (feature
    selection, directions, `eval`): per-sample max activations, and each token's `token_width`
    largest activations (all of a TopK SAE's, and the few active latents of a JumpReLU or ReLU SAE
    on one token; `with_tokens=False` skips them). `with_means` adds the per-sample mean
    activations and mean residuals, so a direction needs no second forward pass. (Scoring reduces
    on the device instead: `FeatureEncoder.summaries`.)"""
    d_sae = encoder.sae.d_sae
    acts = np.zeros((len(samples), d_sae), dtype=np.float32)
    peaks = np.zeros((len(samples), d_sae if with_tokens else 0), dtype=np.int32)  # where each latent peaked
    mean_acts = np.zeros((len(samples), d_sae), dtype=np.float32) if with_means else None
    mean_residual = np.zeros((len(samples), int(encoder.lm.model.config.hidden_size)), np.float32) if with_means else None
    parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    def step(chosen: list[EncodedSample]) -> list[tuple[np.ndarray | None, np.ndarray]]:
        if with_means:
            return encoder.token_residuals_and_features(chosen)
        return [(None, token_acts) for token_acts in encoder.token_features(chosen)]

    for batch, outputs in run_in_batches(samples, step, batch_size, batch_tokens, on_progress):
        for i, (resid, token_acts) in zip(batch, outputs, strict=True):
            positions = np.flatnonzero(samples[i].scored)
            peak = token_acts.argmax(axis=0)
            acts[i] = token_acts[peak, np.arange(d_sae)]
            if with_tokens:
                peaks[i] = positions[peak]
                parts.append((i, positions, *sparse_tokens(token_acts, token_width)))
            if with_means:
                mean_acts[i], mean_residual[i] = token_acts.mean(0), resid.mean(0)
    tokens = stack_tokens(parts, samples, min(token_width, d_sae)) if with_tokens else None
    return ReferenceActivations(acts, peaks, samples, n_unusable, tokens, mean_acts, mean_residual)


def stack_tokens(parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], samples: list[EncodedSample], width: int) -> TokenActivations:
    """One TokenActivations from per-sample (index, positions, latents, values), in sample order."""
    parts = sorted(parts, key=lambda part: part[0])
    if not parts:
        return TokenActivations(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32),
                                np.zeros((0, width), np.int64), np.zeros((0, width), np.float32))
    return TokenActivations(
        token_ids=np.concatenate([np.asarray(samples[i].input_ids, dtype=np.int64)[pos] for i, pos, _, _ in parts]),
        sample=np.concatenate([np.full(len(pos), i, dtype=np.int64) for i, pos, _, _ in parts]),
        position=np.concatenate([pos for _, pos, _, _ in parts]).astype(np.int32),
        latents=np.concatenate([lat for _, _, lat, _ in parts]),
        values=np.concatenate([val for _, _, _, val in parts]),
    )


@dataclass(frozen=True)
class TokenBaseline:
    """Mean activation of each latent on each token type over benign text (sparse: pairs seen only)."""

    keys: np.ndarray  # sorted token_id * d_sae + latent
    means: np.ndarray  # float32, aligned with keys
    d_sae: int

    def lookup(self, token_ids: np.ndarray, latents: np.ndarray) -> np.ndarray:
        """[n, width] baseline of each (token, latent); 0 for pairs benign text never showed."""
        if len(self.keys) == 0:
            return np.zeros(latents.shape, np.float32)
        keys = token_ids[:, None] * self.d_sae + latents
        where = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[where] == keys, self.means[where], 0.0).astype(np.float32)


def token_baseline(tokens: TokenActivations, d_sae: int) -> TokenBaseline:
    """What each latent does on each word of benign text whatever the context: the part of its
    activation that token identity alone explains."""
    active = tokens.values > 0
    keys = (tokens.token_ids[:, None] * d_sae + tokens.latents)[active]
    unique, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=tokens.values[active].astype(np.float64), minlength=len(unique))
    type_ids, type_counts = np.unique(tokens.token_ids, return_counts=True)
    occurrences = type_counts[np.searchsorted(type_ids, unique // d_sae)]
    return TokenBaseline(unique, (sums / occurrences).astype(np.float32), d_sae)


def context_excess(tokens: TokenActivations, baseline: TokenBaseline, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample and latent: the largest activation above the latent's benign mean on the same token
    type, and the position where it peaks ([n_samples, d_sae] each). A latent that fires on 'how' or a
    name the same way in every context has no excess; one that fires on harmful content keeps it."""
    d_sae = baseline.d_sae
    excess = np.maximum(tokens.values - baseline.lookup(tokens.token_ids, tokens.latents), 0.0)
    flat = tokens.sample[:, None] * d_sae + tokens.latents
    best = np.zeros(n_samples * d_sae, np.float32)
    np.maximum.at(best, flat.ravel(), excess.ravel())
    peak = np.zeros(n_samples * d_sae, np.int32)
    hit = (excess > 0) & (excess == best[flat])
    peak[flat[hit]] = np.broadcast_to(tokens.position[:, None], flat.shape)[hit]
    return best.reshape(n_samples, d_sae), peak.reshape(n_samples, d_sae)


def controlled_for_tokens(harmful: ReferenceActivations, benign: ReferenceActivations) -> tuple[ReferenceActivations, ReferenceActivations]:
    """Both sets with each activation replaced by its excess over the benign per-token mean
    (`context_excess`), ready for the usual contrast and labels."""
    if harmful.tokens is None or benign.tokens is None:
        raise ValueError("token-controlled selection needs per-token activations (as reference_activations keeps them)")
    baseline = token_baseline(benign.tokens, harmful.acts.shape[1])
    controlled = []
    for ref in (harmful, benign):
        acts, peaks = context_excess(ref.tokens, baseline, len(ref.samples))
        controlled.append(ReferenceActivations(acts, peaks, ref.samples, ref.n_unusable, ref.tokens))
    return controlled[0], controlled[1]


@dataclass(frozen=True)
class FeatureStats:
    index: int
    effect_size: float
    freq_harmful: float
    freq_benign: float
    mean_harmful: float
    mean_benign: float


def paired_t(harmful: np.ndarray, benign: np.ndarray) -> np.ndarray:
    """Per latent, the mean of (harmful - benign) over aligned pairs divided by its standard error."""
    if harmful.shape != benign.shape:
        raise ValueError("a paired contrast needs as many harmful as benign samples, row i paired with row i")
    diff = harmful.astype(np.float64) - benign.astype(np.float64)
    return (diff.mean(0) / np.maximum(diff.std(0, ddof=1) / np.sqrt(len(diff)), 1e-6)).astype(np.float32)


MIN_PAIRS_PER_KIND = 5  # fewer pairs than this say nothing about a kind


def harm_kinds(
    harmful: np.ndarray, benign: np.ndarray, categories: Sequence[str], indices: Sequence[int],
    share: float = 0.5, min_t: float = 2.0,
) -> dict[int, dict[str, float]]:
    """Per latent in `indices`: the kinds of harm (pair categories) whose pairs it rises in, with the
    mean rise (harmful - benign, per pair) in each, strongest first. A kind counts when its mean rise
    reaches `share` of the latent's strongest kind and its paired t within the kind is at least
    `min_t`; kinds with fewer than MIN_PAIRS_PER_KIND pairs are not judged."""
    if len(categories) != len(harmful) or harmful.shape != benign.shape:
        raise ValueError("one category per pair, and as many harmful as benign rows")
    columns = np.asarray(indices, dtype=np.int64)
    diff = harmful[:, columns].astype(np.float64) - benign[:, columns].astype(np.float64)
    labels = np.asarray(categories)
    kinds = [k for k in sorted(set(categories)) if (labels == k).sum() >= MIN_PAIRS_PER_KIND]
    if not kinds:
        return {int(i): {} for i in columns}
    means = np.stack([diff[labels == k].mean(0) for k in kinds])  # [n_kinds, n_latents]
    t = np.stack([paired_t(harmful[labels == k][:, columns], benign[labels == k][:, columns]) for k in kinds])
    result = {}
    for j, index in enumerate(columns):
        top = means[:, j].max()
        chosen = [(kinds[k], float(means[k, j])) for k in np.argsort(-means[:, j], kind="stable")
                  if top > 0 and means[k, j] >= share * top and t[k, j] >= min_t]
        result[int(index)] = {kind: round(value, 4) for kind, value in chosen}
    return result


def kinds_text(kinds: dict[str, float], shown: int = 3) -> str:
    """'fraud, crime' for a label; 'fraud, crime, violence +2' when more kinds qualify."""
    names = [k.replace("_", "-") for k in kinds]
    return ", ".join(names[:shown]) + (f" +{len(names) - shown}" if len(names) > shown else "")


def contrast_statistics(harmful: np.ndarray, benign: np.ndarray, paired: bool = False) -> dict[str, np.ndarray]:
    """Per-latent statistics of [n, d_sae] aggregated activations in two sets; with `paired`, the
    effect size is the paired t (`paired_t`) instead of Cohen's d."""
    mean_h, mean_b = harmful.mean(0), benign.mean(0)
    var_h, var_b = harmful.var(0, ddof=1), benign.var(0, ddof=1)
    n_h, n_b = len(harmful), len(benign)
    pooled = np.sqrt(((n_h - 1) * var_h + (n_b - 1) * var_b) / max(n_h + n_b - 2, 1))
    effect = paired_t(harmful, benign) if paired else (mean_h - mean_b) / np.maximum(pooled, 1e-6)
    return {
        "effect_size": effect,
        "freq_harmful": (harmful > 0).mean(0),
        "freq_benign": (benign > 0).mean(0),
        "mean_harmful": mean_h,
        "mean_benign": mean_b,
    }


def select_features(
    harmful: np.ndarray, benign: np.ndarray, top: int, min_frequency: float = 0.02, max_benign_frequency: float = 0.5,
    paired: bool = False, exclude: np.ndarray | None = None,
) -> list[FeatureStats]:
    """Top latents by effect size, among those active in >= min_frequency of harmful samples and in
    <= max_benign_frequency of benign ones: a latent that fires on most benign text (end-of-turn
    markers, punctuation) encodes form, not harm, even when its magnitude differs between the sets.
    Latents marked in `exclude` (the identity filter) are never chosen. In a paired contrast the
    benign-frequency cap does not apply: both answers of a pair share their form, so a latent frequent
    in benign answers is chosen only for rising consistently when the answer turns harmful."""
    if len(harmful) < 2 or len(benign) < 2:
        raise ValueError("need at least two usable samples in each reference set")
    stats = contrast_statistics(harmful, benign, paired)
    eligible = (stats["freq_harmful"] >= min_frequency) & (stats["effect_size"] > 0)
    if not paired:
        eligible &= stats["freq_benign"] <= max_benign_frequency
    if exclude is not None:
        eligible &= ~exclude
    candidates = np.flatnonzero(eligible)
    order = candidates[np.argsort(-stats["effect_size"][candidates], kind="stable")][:top]
    return [
        FeatureStats(int(i), *(round(float(stats[key][i]), 4) for key in (
            "effect_size", "freq_harmful", "freq_benign", "mean_harmful", "mean_benign")))
        for i in order
    ]


def identity_latents(
    neutral_identity: np.ndarray, benign: np.ndarray, min_frequency: float = 0.05, ratio: float = 3.0, margin: float = 0.02
) -> np.ndarray:
    """[d_sae] bool: latents active in at least `min_frequency` of neutral sentences that mention
    identity groups and names, and more than `ratio` times (plus `margin`) as often as in other benign
    text. What they encode is who is mentioned, which a harm score must not follow."""
    freq_identity = (neutral_identity > 0).mean(0)
    freq_benign = (benign > 0).mean(0)
    return (freq_identity >= min_frequency) & (freq_identity > ratio * freq_benign + margin)


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


def top_samples(reference: ReferenceActivations, index: int, n_top: int) -> list[int]:
    """The samples where the latent fires most, strongest first (active ones only)."""
    column = reference.acts[:, index]
    return [int(i) for i in np.argsort(-column, kind="stable")[:n_top] if column[i] > 0]


def peak_words(index: int, reference: ReferenceActivations, decode: Callable[[list[int]], str], n_top: int = 10) -> Counter[str]:
    """The words where the latent peaks in its `n_top` strongest samples, with how often each."""
    words: Counter[str] = Counter()
    for i in top_samples(reference, index, n_top):
        ids = reference.samples[i].input_ids
        peak = int(reference.peak_position[i, index])
        words[word_at(ids, peak, decode) or repr(decode([ids[peak]]))] += 1
    return words


def label_feature(
    index: int, reference: ReferenceActivations, decode: Callable[[list[int]], str], n_top: int = 10, window: int = 6
) -> tuple[str, list[str]]:
    """A label from the words where the latent peaks most strongly, and a few context snippets."""
    snippets = []
    for i in top_samples(reference, index, n_top)[:3]:
        ids = reference.samples[i].input_ids
        peak = int(reference.peak_position[i, index])
        left, centre, right = decode(ids[max(0, peak - window) : peak]), decode([ids[peak]]), decode(ids[peak + 1 : peak + 1 + window])
        snippets.append(f"{left}[[{centre}]]{right}".replace("\n", " "))
    label = ", ".join(f"'{token}'" for token, _ in peak_words(index, reference, decode, n_top).most_common(4))
    return label, snippets




def without_function_word_latents(
    ranked: Sequence[FeatureStats], reference: ReferenceActivations, decode: Callable[[list[int]], str], top: int,
    max_share: float = FUNCTION_WORD_SHARE,
) -> tuple[list[FeatureStats], list[int]]:
    """The first `top` of `ranked` whose peak words in `reference` are less than `max_share` function
    words (`function_word_share`), and the indices passed over on the way."""
    chosen: list[FeatureStats] = []
    skipped: list[int] = []
    for stats in ranked:
        if len(chosen) == top:
            break
        if function_word_share(peak_words(stats.index, reference, decode)) >= max_share:
            skipped.append(stats.index)
        else:
            chosen.append(stats)
    return chosen, skipped


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
    selection: Selection = "token-controlled",
    paired: bool = False,
    exclude: np.ndarray | None = None,
    categories: Sequence[str] | None = None,
    function_word_filter: bool = True,
    function_word_share: float = FUNCTION_WORD_SHARE,
) -> FeatureSet:
    """Rank latents (`select_features`) on per-sample max activations, or, with "token-controlled",
    on their excess over what the same word does in benign text (`controlled_for_tokens`); with
    `function_word_filter`, pass over latents that peak mostly on function words
    (`without_function_word_latents`); label each from the words where it peaks in the harmful set,
    after the kinds of harm it rises in (`harm_kinds`) when the pairs carry `categories`."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; use one of {', '.join(SELECTIONS)}")
    if selection == "token-controlled":
        harmful, benign = controlled_for_tokens(harmful, benign)
    skipped: list[int] = []
    if function_word_filter:
        ranked = select_features(harmful.acts, benign.acts, harmful.acts.shape[1], min_frequency, max_benign_frequency,
                                 paired, exclude)
        chosen, skipped = without_function_word_latents(ranked, harmful, decode, top, function_word_share)
    else:
        chosen = select_features(harmful.acts, benign.acts, top, min_frequency, max_benign_frequency, paired, exclude)
    kinds = (harm_kinds(harmful.acts, benign.acts, categories, [c.index for c in chosen])
             if paired and categories is not None else {})
    features = []
    for stats in chosen:
        words, snippets = label_feature(stats.index, harmful, decode)
        named = kinds_text(kinds.get(stats.index, {}))
        label = f"{named}: {words}" if named else words
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
                    **({"peak_words": words, "kinds": kinds[stats.index]} if stats.index in kinds else {}),
                },
            )
        )
    counts = {"harmful_samples": len(harmful.samples), "benign_samples": len(benign.samples),
              "unusable_harmful": harmful.n_unusable, "unusable_benign": benign.n_unusable}
    if exclude is not None:
        counts["identity_latents_excluded"] = int(exclude.sum())
    if function_word_filter:
        counts["function_word_latents_passed_over"] = skipped
        counts["function_word_share"] = function_word_share
    if kinds:
        counts["kinds"] = "kinds of harm in a label: the pair categories whose mean rise reaches half the latent's " \
                          f"strongest, paired t >= 2 within the kind, >= {MIN_PAIRS_PER_KIND} pairs each"
    ranking = (PAIRED_RANKINGS if paired else RANKINGS)[selection]
    return FeatureSet(tuple(features), d_sae, sae_spec, {"selection": {**meta, **counts, "top": top,
                                                                        "min_frequency": min_frequency,
                                                                        "max_benign_frequency": max_benign_frequency,
                                                                        "ranking": ranking}})


def feature_set_from_ids(ids: Sequence[int], sae_spec: str, d_sae: int, labels: dict[int, str] | None = None) -> FeatureSet:
    labels = labels or {}
    features = tuple(HarmfulFeature(i, labels.get(i, "")) for i in ids)
    return FeatureSet(features, d_sae, sae_spec, {"selection": {"method": "hand-picked ids"}})


@dataclass(frozen=True)
class ContrastTexts:
    """One contrast's texts; `paired` when harmful[i] and benign[i] answer the same user turn."""

    name: str
    harmful: list[Conversation]
    benign: list[Conversation]
    paired: bool = False
    categories: list[str] | None = None  # kind of harm of each pair (paired contrasts), for labels


def contrast_activations(
    encoder: FeatureEncoder, conversations: list[Conversation], tokens: TokenMode, max_tokens: int,
    batch_size: int, batch_tokens: int, progress: ProgressFactory | None = None, label: str = "",
    with_means: bool = False,
) -> ReferenceActivations:
    samples, unusable = encode_reference(conversations, encoder.lm.tokenizer, tokens, max_tokens)
    with (progress or no_progress)(f"encoding {label}", len(samples)) as advance:
        return reference_activations(encoder, samples, unusable, batch_size, batch_tokens, advance, with_means=with_means)


def check_paired(contrast: ContrastTexts) -> None:
    """A paired contrast needs row i of each side to exist (cheap: callers run it before weights load)."""
    if contrast.paired and len(contrast.harmful) != len(contrast.benign):
        raise InputError(f"paired contrast '{contrast.name}': {len(contrast.harmful)} harmful rows but "
                         f"{len(contrast.benign)} benign rows; row i of each side must answer the same turn")
    if contrast.categories is not None and len(contrast.categories) != len(contrast.harmful):
        raise InputError(f"contrast '{contrast.name}': {len(contrast.categories)} categories for "
                         f"{len(contrast.harmful)} harmful rows")


def paired_texts(contrast: ContrastTexts, tokenizer, tokens: TokenMode, max_tokens: int) -> tuple[ContrastTexts, int]:
    """The paired contrast less the pairs where either answer has no tokens to score (the pairing
    must survive), and how many pairs were dropped."""
    check_paired(contrast)
    harmful = encode_each(contrast.harmful, tokenizer, tokens, max_tokens)
    benign = encode_each(contrast.benign, tokenizer, tokens, max_tokens)
    keep = [i for i, (h, b) in enumerate(zip(harmful, benign, strict=True)) if h is not None and b is not None]
    categories = [contrast.categories[i] for i in keep] if contrast.categories is not None else None
    kept = replace(contrast, harmful=[contrast.harmful[i] for i in keep], benign=[contrast.benign[i] for i in keep],
                   categories=categories)
    return kept, len(harmful) - len(keep)


@dataclass
class EncodedContrast:
    """Both sides of one contrast, encoded; `unusable_pairs`: pairs dropped for an empty side."""

    contrast: ContrastTexts
    harmful: ReferenceActivations
    benign: ReferenceActivations
    unusable_pairs: int = 0


def encode_contrasts(
    encoder: FeatureEncoder, contrasts: Sequence[ContrastTexts], tokens: TokenMode = "response", max_tokens: int = 512,
    batch_size: int = 16, batch_tokens: int = 8192, progress: ProgressFactory | None = None, with_means: bool = False,
) -> list[EncodedContrast]:
    """One forward pass over every side of every contrast (paired ones keep only complete pairs)."""
    encoded = []
    for contrast in contrasts:
        kept, dropped = paired_texts(contrast, encoder.lm.tokenizer, tokens, max_tokens) if contrast.paired else (contrast, 0)
        sides = [contrast_activations(encoder, texts, tokens, max_tokens, batch_size, batch_tokens, progress,
                                      f"{contrast.name} {side}" if len(contrasts) > 1 else side, with_means)
                 for side, texts in (("harmful", kept.harmful), ("benign", kept.benign))]
        encoded.append(EncodedContrast(kept, sides[0], sides[1], dropped))
    return encoded


def identity_exclusion(
    encoder: FeatureEncoder, encoded: Sequence[EncodedContrast], identity_texts: list[Conversation],
    identity_reference: list[Conversation] | None, tokens: TokenMode = "response", max_tokens: int = 512,
    batch_size: int = 16, batch_tokens: int = 8192, progress: ProgressFactory | None = None,
) -> np.ndarray:
    """`identity_latents` of the neutral identity sentences, judged against `identity_reference`
    (broad benign text: the benign sides of every built-in contrast), or, without it, against the
    benign sides of the encoded contrasts."""
    neutral = contrast_activations(encoder, identity_texts, tokens, max_tokens, batch_size, batch_tokens, progress,
                                   "identity filter")
    if identity_reference:
        reference = contrast_activations(encoder, identity_reference, tokens, max_tokens, batch_size, batch_tokens,
                                         progress, "identity filter reference").acts
    else:
        reference = np.concatenate([e.benign.acts for e in encoded])
    return identity_latents(neutral.acts, reference)


def select_from_encoded(
    encoded: Sequence[EncodedContrast], settings: SelectionSettings, decode: Callable[[list[int]], str], sae_spec: str,
    d_sae: int, meta: dict, top_each: int | None, exclude: np.ndarray | None = None,
) -> FeatureSet:
    """One ranked set per contrast; with several, merged (`merge_feature_sets`, the first `top_each`
    of each, labelled with the contrast's name), as the embedded default's set is built."""
    built = []
    for e in encoded:
        extra = {"contrast": e.contrast.name,
                 **({"paired": True, "unusable_pairs": e.unusable_pairs} if e.contrast.paired else {})}
        built.append((e.contrast.name, build_feature_set(
            e.harmful, e.benign, settings.top, decode, sae_spec, d_sae, {**meta, **extra}, settings.min_frequency,
            settings.max_benign_frequency, settings.selection, e.contrast.paired, exclude, e.contrast.categories,
            settings.function_word_filter, settings.function_word_share)))
    if len(built) == 1:
        return built[0][1]
    return merge_feature_sets(built, top_each)
