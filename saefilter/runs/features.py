"""Feature-set runs: `features build`, `features calibrate` and `features add-direction`, each
reading reference text, running the model and SAE over it and returning a new `FeatureSet`. The
CLI and the Python API call these; neither holds any of their logic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from saefilter.drift.pairs import refuse_drift_answers
from saefilter.errors import InputError
from saefilter.features.calibrate import calibrated
from saefilter.features.direction import DirectionSettings, with_direction
from saefilter.features.feature_set import FeatureSet
from saefilter.features.provenance import ROLES, Provenance
from saefilter.features.selection import (
    ContrastTexts,
    check_paired,
    contrast_activations,
    encode_contrasts,
    encode_reference,
    feature_set_from_ids,
    identity_exclusion,
    paired_texts,
    select_from_encoded,
)
from saefilter.features.settings import DEFAULT_CONTRASTS, SelectionSettings
from saefilter.inputs.formats import Conversation
from saefilter.inputs.reference import (
    builtin_benign_texts,
    builtin_contrasts,
    builtin_identity_texts,
    hard_negative_texts,
    read_reference,
    reference_categories,
)
from saefilter.progress import ProgressFactory, StatusFn, no_progress, no_status
from saefilter.runs.evaluate import collect
from saefilter.sae.encoder import FeatureEncoder
from saefilter.sae.loading import load_sae
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.scorer import Scorer, load_backbone

Named = list[tuple[str, list[Conversation]]]  # (source name, its rows) in the order read


def read_named(paths: Sequence[Path], column: str | None, refuse_drift: bool = True) -> Named:
    """Each reference file's rows under its path; rows of the built-in drift pairs are refused."""
    return [(str(p), refuse_drift_answers(p, list(read_reference(p, column))) if refuse_drift
             else list(read_reference(p, column))) for p in paths]


def recorded(provenance: Provenance, role: str, named: Named) -> Provenance:
    """`provenance` with every named source in `role`."""
    for name, conversations in named:
        provenance = provenance.with_source(role, name, conversations)
    return provenance


def hard_negative_sources(values: Sequence[str], builtin_default: bool, column: str | None) -> tuple[Named, str]:
    """The hard negatives `--hard-negatives` names, per source, and how to say where they came from."""
    texts, described = hard_negative_texts(values, builtin_default, column)
    if not texts:
        return [], described
    return [(f"{described} hard negatives" if described == "built-in" else described, texts)], described


@dataclass(frozen=True)
class BuildInputs:
    """Everything `features build` reads before the model loads, and the provenance it records."""

    sources: list[ContrastTexts]
    meta: dict
    origin: str  # how the direction's metadata names its contrast
    extra: list[Conversation]  # hard negatives of the direction's probe
    extra_source: str
    identity_texts: list[Conversation] | None
    identity_reference: list[Conversation] | None
    provenance: Provenance


def read_build_inputs(
    harmful: Sequence[Path], benign: Sequence[Path], contrast_names: Sequence[str], column: str | None,
    identity_filter: bool, paired: bool = False, direction: bool = False, hard_negatives: Sequence[Path] = (),
    identity_reference: Sequence[Path] = (),
) -> BuildInputs:
    """The contrasts, hard negatives and identity texts of a build, checked, with their provenance.
    `identity_reference`: benign files the identity filter compares with (default: every built-in
    benign text), e.g. to keep one source out of a leave-one-source-out build."""
    if identity_reference and not identity_filter:
        raise InputError("--identity-reference is what the identity filter compares with: drop --no-identity-filter")
    if hard_negatives and not direction:
        raise InputError("--hard-negatives feed the direction's probe: give --direction too")
    if bool(harmful) != bool(benign):
        raise InputError("give both --harmful and --benign, or neither (the built-in contrasts)")
    if harmful and contrast_names:
        raise InputError("--contrast picks built-in contrasts; it does not go with --harmful/--benign")
    if paired and not harmful:
        raise InputError("--paired describes --harmful/--benign files; the built-in contrasts say themselves which are paired")
    if harmful:
        named_harmful, named_benign = read_named(harmful, column), read_named(benign, column)
        sources = [ContrastTexts("custom", [c for _, rows in named_harmful for c in rows],
                                 [c for _, rows in named_benign for c in rows], paired,
                                 reference_categories(harmful) if paired else None)]
        meta: dict = {"harmful": [str(p) for p in harmful], "benign": [str(p) for p in benign]}
        origin = "; ".join(str(p) for p in harmful) + " vs " + "; ".join(str(p) for p in benign)
    else:
        chosen = builtin_contrasts(contrast_names or DEFAULT_CONTRASTS)
        sources = [ContrastTexts(c.name, list(read_reference(c.harmful)), list(read_reference(c.benign)), c.paired,
                                 reference_categories([c.harmful]) if c.paired else None)
                   for c in chosen]
        named_harmful = [(f"built-in {s.name} contrast (harmful)", s.harmful) for s in sources]
        named_benign = [(f"built-in {s.name} contrast (benign)", s.benign) for s in sources]
        meta = {"contrasts": "built-in"}
        origin = f"built-in {chosen[0].name} contrast"
    for source in sources:
        check_paired(source)  # before the model loads
    if direction and len(sources) > 1:
        raise InputError(f"--direction is fitted on one contrast, got {len(sources)}; build with one, or run "
                         "`features add-direction` on the merged set")
    named_extra, extra_source = hard_negative_sources(hard_negatives, not harmful and sources[0].name == "answers",
                                                      column) if direction else ([], "none")
    provenance = recorded(recorded(Provenance(), "contrast harmful", named_harmful), "contrast benign", named_benign)
    identity_texts = builtin_identity_texts() if identity_filter else None
    named_reference = (read_named(identity_reference, column, False) if identity_reference
                       else [("built-in benign texts", builtin_benign_texts())]) if identity_filter else []
    if identity_texts is not None:
        provenance = recorded(provenance, "identity filter", [("built-in identity texts", identity_texts),
                                                              *named_reference])
    if direction:
        provenance = recorded(recorded(provenance, "direction training", named_harmful + named_benign),
                              "hard negatives", named_extra)
    return BuildInputs(sources, meta, origin, [c for _, rows in named_extra for c in rows], extra_source,
                       identity_texts, [c for _, rows in named_reference for c in rows] or None, provenance)


def build_features(
    config: ScoreConfig, harmful: Sequence[Path], benign: Sequence[Path], contrast_names: Sequence[str], ids: str | None,
    column: str | None, settings: SelectionSettings, top_each: int, paired: bool = False, direction: bool = False,
    hard_negatives: Sequence[Path] = (), status: StatusFn = no_status, progress: ProgressFactory = no_progress,
    identity_reference: Sequence[Path] = (),
) -> FeatureSet:
    """`features build`: a feature set selected from reference files or the built-in contrasts (or
    given by --ids), with its harmful direction when `direction`; inputs are checked before the
    model loads."""

    if ids is not None:
        if hard_negatives and not direction:
            raise InputError("--hard-negatives feed the direction's probe: give --direction too")
        if direction:
            raise InputError("--direction is fitted on a contrast; with --ids, run `features add-direction` on the set")
        return feature_set_from_id_list(config, ids)
    inputs = read_build_inputs(harmful, benign, contrast_names, column, settings.identity_filter, paired, direction,
                               hard_negatives, identity_reference)

    with status("loading model and SAE..."):
        lm, loaded = load_backbone(config)
    meta = inputs.meta | {"model": config.model, "tokens": config.tokens, "hook": loaded.hook.name}
    encoder = FeatureEncoder(lm, loaded)
    passes = (config.tokens, config.max_tokens, config.batch_size, config.batch_tokens, progress)
    encoded = encode_contrasts(encoder, inputs.sources, *passes, with_means=direction)
    exclude = identity_exclusion(encoder, encoded, inputs.identity_texts, inputs.identity_reference, *passes) \
        if inputs.identity_texts else None
    feature_set = replace(select_from_encoded(encoded, settings, lm.tokenizer.decode, config.sae, loaded.d_sae, meta,
                                              top_each, exclude), provenance=inputs.provenance)
    if not direction:
        return feature_set

    sides = encoded[0]
    hard = contrast_activations(encoder, inputs.extra, *passes, "hard negatives", with_means=True).mean_residual \
        if inputs.extra else None
    return with_direction(feature_set, sides.harmful.mean_residual, sides.benign.mean_residual,
                          sides.benign.aggregated(config.aggregation), loaded.sae.W_dec.detach().float().cpu().numpy(),
                          loaded.hook.name, f"{inputs.origin}; hard negatives: {inputs.extra_source}",
                          DirectionSettings(config.aggregation, config.neighbours, config.kernel), hard)


def record_sources(feature_set: FeatureSet, role: str, files: Sequence[Path], column: str | None) -> FeatureSet:
    """`features record`: the set with `files`' rows in `role` of its provenance (e.g. the data its
    settings were chosen on, which no build step sees). Nothing else of the set changes."""
    if role not in ROLES:
        raise InputError(f"--role must be one of: {', '.join(ROLES)}; got '{role}'")
    if not files:
        raise InputError("features record: name at least one file")
    return replace(feature_set, provenance=recorded(feature_set.provenance, role, read_named(files, column, False)))


def feature_set_from_id_list(config: ScoreConfig, ids: str) -> FeatureSet:
    """A feature set of the given comma-separated latent indices, checked against the SAE."""

    try:
        indices = [int(part) for part in ids.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--ids must be comma-separated integers, got '{ids}'") from None
    loaded = load_sae(config.sae_spec)
    feature_set = feature_set_from_ids(indices, config.sae, loaded.d_sae)
    feature_set.check_against(loaded.d_sae)
    return feature_set


def calibrate_features(
    config: ScoreConfig, benign: Sequence[Path], column: str | None, percentile: float,
    status: StatusFn = no_status, progress: ProgressFactory = no_progress,
) -> FeatureSet:
    """`features calibrate`: the set with a suggested threshold and its features' benign baselines."""

    named = read_named(benign, column, refuse_drift=False)  # bad files fail before the model
    conversations = [c for _, rows in named for c in rows]
    with status("loading model and SAE..."):
        scorer = Scorer.load(config)
    samples, unusable = encode_reference(conversations, scorer.lm.tokenizer, config.tokens, config.max_tokens)
    with progress("scoring benign", len(samples)) as advance:
        contributions = scorer.contributions(samples, advance)
    source = ", ".join(str(p) for p in benign) + (f"; {unusable} rows with nothing to score left out" if unusable else "")
    feature_set = calibrated(scorer.method.feature_set, contributions, scorer.method.scoring_settings, source, percentile)
    return replace(feature_set, provenance=recorded(feature_set.provenance, "calibration", named))


def add_direction(
    config: ScoreConfig, harmful: Sequence[Path], benign: Sequence[Path], column: str | None, strength: float,
    ratio: float, label: str | None, hard_negatives: Sequence[Path] = (), status: StatusFn = no_status,
    progress: ProgressFactory = no_progress,
) -> FeatureSet:
    """`features add-direction`: the set with a harmful direction fitted on a contrast."""

    if bool(harmful) != bool(benign):
        raise InputError("give both --harmful and --benign, or neither (the built-in answers contrast)")
    named_extra, extra_source = hard_negative_sources(hard_negatives, not harmful, column)
    extra = [c for _, rows in named_extra for c in rows]
    if harmful:
        named = read_named(harmful, column) + read_named(benign, column)
        contrast = ContrastTexts("custom", [c for _, rows in named[:len(harmful)] for c in rows],
                                 [c for _, rows in named[len(harmful):] for c in rows])
        source = "; ".join(str(p) for p in harmful) + " vs " + "; ".join(str(p) for p in benign)
    else:
        builtin = builtin_contrasts(("answers",))[0]
        contrast = ContrastTexts(builtin.name, list(read_reference(builtin.harmful)), list(read_reference(builtin.benign)), True)
        named = [("built-in answers contrast (harmful)", contrast.harmful), ("built-in answers contrast (benign)", contrast.benign)]
        source = "built-in answers contrast"
    with status("loading model and SAE..."):
        scorer = Scorer.load(config)
    tokenizer = scorer.lm.tokenizer
    sides = (contrast.harmful, contrast.benign)
    if contrast.paired:
        kept = paired_texts(contrast, tokenizer, config.tokens, config.max_tokens)[0]
        sides = (kept.harmful, kept.benign)
    encoded = []
    for name, texts in zip(("harmful", "benign", "hard negatives"), (*sides, extra), strict=True):
        samples, _ = encode_reference(texts, tokenizer, config.tokens, config.max_tokens)
        if not samples and name != "hard negatives":
            raise InputError(f"features add-direction: no {name} row has tokens to score (--tokens {config.tokens})")
        with progress(f"encoding {name}", len(samples)) as advance:
            encoded.append(collect(scorer.encoder, samples, config.batch_size, config.batch_tokens, advance) if samples else None)
    settings = DirectionSettings(config.aggregation, config.neighbours, config.kernel, strength, ratio, label)
    decoder = scorer.method.sae.sae.W_dec.detach().float().cpu().numpy()
    feature_set = with_direction(scorer.method.feature_set, encoded[0].mean_residual, encoded[1].mean_residual,
                                 encoded[1].aggregated[config.aggregation], decoder, scorer.method.sae.hook.name,
                                 f"{source}; hard negatives: {extra_source}", settings,
                                 encoded[2].mean_residual if encoded[2] is not None else None)
    provenance = recorded(recorded(feature_set.provenance, "direction training", named), "hard negatives", named_extra)
    return replace(feature_set, provenance=provenance)
