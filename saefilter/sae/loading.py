"""Load a sae-lens SAE from a local folder or the sae-lens pretrained registry.

A local folder is what `SAE.save_model` writes (cfg.json + sae_weights.safetensors).
A registry SAE is named `RELEASE/SAE_ID`, e.g.
`gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical`; the release is the part before
the first slash that the registry knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefilter.errors import InputError
from saefilter.inputs.records import file_sha256
from saefilter.model.hooks import HookPoint, parse_hook_name


@dataclass
class LoadedSAE:
    sae: Any  # sae_lens.SAE
    spec: str
    hook: HookPoint
    fingerprint: str  # identifies the weights, for cache keys and score-file provenance

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)


def split_registry_spec(spec: str, releases: set[str]) -> tuple[str, str] | None:
    """Split RELEASE/SAE_ID at the longest prefix that is a known release."""
    parts = spec.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        release = "/".join(parts[:cut])
        if release in releases:
            return release, "/".join(parts[cut:])
    return None


def hook_name_of(sae: Any) -> str:
    metadata = getattr(sae.cfg, "metadata", None)
    hook_name = getattr(metadata, "hook_name", None) if metadata is not None else None
    if not hook_name:
        raise InputError("the SAE config has no hook_name; saefilter needs to know where it reads the model")
    return str(hook_name)


def sae_fingerprint(spec: str) -> str:
    """The fingerprint `load_sae` would record, without loading any weights."""
    path = Path(spec)
    if path.is_dir():
        return file_sha256(path / "sae_weights.safetensors")
    return f"registry:{spec}"


def load_sae(spec: str, device: str = "cpu", hook_override: str | None = None) -> LoadedSAE:
    """A local SAE folder (the shipped TopK SAEs without importing sae-lens: sae/native.py) or a
    sae-lens registry SAE."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "cfg.json").exists():
            raise InputError(f"--sae {spec}: folder has no cfg.json (expected the output of SAE.save_model)")
        weights = path / "sae_weights.safetensors"
        if not weights.exists():
            raise InputError(f"--sae {spec}: folder has no sae_weights.safetensors")
        from saefilter.sae.native import load_native

        sae = load_native(path, device)
        if sae is None:
            from sae_lens import SAE

            sae = SAE.load_from_disk(path, device=device)
        fingerprint = file_sha256(weights)
    else:
        sae, fingerprint = _load_registry_sae(spec, device)
    sae.eval()
    hook = parse_hook_name(hook_override or hook_name_of(sae))
    return LoadedSAE(sae, spec, hook, fingerprint)


def _load_registry_sae(spec: str, device: str) -> tuple[Any, str]:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    split = split_registry_spec(spec, set(get_pretrained_saes_directory()))
    if split is None:
        raise InputError(
            f"--sae {spec}: neither a local SAE folder nor RELEASE/SAE_ID from the sae-lens registry"
        )
    release, sae_id = split
    try:
        sae = SAE.from_pretrained(release, sae_id, device=device)
    except ValueError as err:
        raise InputError(f"--sae {spec}: {err}") from None
    except OSError as err:  # includes huggingface_hub's offline / not-cached errors
        raise InputError(
            f"--sae {spec}: not in the local Hugging Face cache and the hub is unreachable "
            f"({type(err).__name__}); download it once with network access, or pass a local folder"
        ) from None
    return sae, sae_fingerprint(spec)
