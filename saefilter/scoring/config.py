"""How a score is configured, beside what it configures: the settings of one scoring run
(`ScoreConfig`, checked once when it is made), the embedded defaults they resolve to, and the
fingerprint a cached score must match. The CLI's flags, the Python API and every run read their
defaults from here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from saefilter.errors import InputError
from saefilter.inputs.render import TokenMode
from saefilter.model.loading import DEFAULT_MODEL
from saefilter.sae.geometry import KERNELS
from saefilter.scoring.sample import Aggregation

DEFAULTS_DIR = Path(__file__).parents[1] / "defaults"
EMBEDDED = "embedded"
DEFAULT_SAE = EMBEDDED
DEFAULT_FEATURES = EMBEDDED
# Proximity counts only cosine beyond the SAE's background level, squared: of the kernels compared
# on the development split it ranked harmful samples highest (docs/log.md).
DEFAULT_KERNEL = "sq-excess"


def shipped_dir(model: str = DEFAULT_MODEL) -> Path:
    """The folder of the SAE and feature set shipped for `model`: a named model's own, where it has
    one; the embedded default's for that model and for any model that is not a named one (a local
    copy of SmolLM2, a test model: the widths are checked when they load)."""
    from saefilter.errors import InputError
    from saefilter.model.named import named_model_of

    named = named_model_of(model)
    if named is None:
        return DEFAULTS_DIR
    if named.shipped is None:
        raise InputError(f"--model {named.name}: no SAE and feature set are shipped for it; give --sae and "
                         "--features (train one with scripts/train_sae.py, then `saefilter features build`)")
    return DEFAULTS_DIR / named.shipped


def resolve_sae_spec(spec: str, model: str = DEFAULT_MODEL) -> str:
    """'embedded' -> the SAE shipped in the package for `model` (`shipped_dir`)."""
    return str(shipped_dir(model) / "sae") if spec == EMBEDDED else spec


def resolve_features_path(spec: str, model: str = DEFAULT_MODEL) -> Path:
    """'embedded' -> the feature set shipped in the package for `model` (`shipped_dir`)."""
    return shipped_dir(model) / "features.json" if spec == EMBEDDED else Path(spec)

OnError = Literal["fail", "skip"]
# Settings with a fixed set of values (--kernel's are the geometry's KERNELS)
CHOICES = {"tokens": ("response", "all"), "aggregation": ("max", "mean"), "on_error": ("fail", "skip")}


@dataclass(frozen=True)
class ScoreConfig:
    model: str = DEFAULT_MODEL
    sae: str = DEFAULT_SAE
    features: str = DEFAULT_FEATURES
    tokens: TokenMode = "response"
    aggregation: Aggregation = "mean"
    neighbours: int = 1
    kernel: str = DEFAULT_KERNEL
    max_tokens: int = 1024
    field: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 16
    batch_tokens: int = 8192
    chunk_records: int = 512
    top_n: int = 5
    on_error: OnError = "fail"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        """Every check a setting needs before a file or a model is read, run once when the config is
        made (model, SAE and file specs are checked where they are loaded)."""
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise InputError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, got {value}")
        if self.kernel not in KERNELS:
            raise InputError(f"--kernel must be one of {', '.join(KERNELS)}, got '{self.kernel}'")
        if self.max_tokens < 2:
            raise InputError("--max-tokens must be at least 2")
        if self.neighbours < 1:
            raise InputError("--neighbours must be at least 1")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], strict: bool = False) -> ScoreConfig:
        """A checked ScoreConfig from a command's options: others (such as --output) are ignored, or,
        with `strict` (the Python API's keyword arguments), a TypeError naming the ones that exist."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if strict and unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; options are: {', '.join(OPTION_NAMES)}")
        return cls(**{k: v for k, v in options.items() if k in names})

    @property
    def sae_spec(self) -> str:
        """--sae with 'embedded' resolved for --model."""
        return resolve_sae_spec(self.sae, self.model)

    @property
    def features_path(self) -> Path:
        """--features with 'embedded' resolved for --model."""
        return resolve_features_path(self.features, self.model)

    @property
    def resolved_dtype(self) -> str:
        """The dtype the model will run in (`--dtype auto` resolved for this machine and model)."""
        from saefilter.model.loading import resolve_dtype_name

        return resolve_dtype_name(self.dtype, self.device, self.model)

    def fingerprint(self, sae_fingerprint: str, features_fingerprint: str) -> str:
        """Hash of everything that changes a score (not batch sizes, device or error policy). The dtype
        is the resolved one, so a float32 score is never reused for a bfloat16 run or the other way."""
        keys = ("model", "tokens", "aggregation", "neighbours", "kernel", "max_tokens", "field")
        payload = {key: asdict(self)[key] for key in keys}
        payload |= {"dtype": self.resolved_dtype, "sae": sae_fingerprint, "features": features_fingerprint,
                    "scorer": SCORER_VERSION}
        return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def files_fingerprint(config: ScoreConfig) -> str:
    """`ScoreConfig.fingerprint` from the SAE and feature files alone, without loading any model:
    what a cached score must match to be reused (prune's score files, check's cache)."""
    from saefilter.errors import InputError
    from saefilter.inputs.records import file_sha256
    from saefilter.sae.loading import sae_fingerprint

    features = config.features_path
    if not features.is_file():
        raise InputError(f"--features {features}: no such file")
    return config.fingerprint(sae_fingerprint(config.sae_spec), file_sha256(features))


# Bump when the score formula or the row schema changes, so cached scores are not reused.
SCORER_VERSION = 2  # 2: rows explain in words and phrases (top_words, top_spans)
# What the Python API takes as keyword arguments besides model, sae and features
OPTION_NAMES = tuple(f.name for f in fields(ScoreConfig) if f.name not in ("model", "sae", "features"))
