"""Encoded samples -> SAE feature activations of their scored tokens: the model runs only up to the
SAE's hook point, and only the scored positions go through the SAE encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from saefilter.inputs.render import EncodedSample
from saefilter.model.activations import pad_batch
from saefilter.model.layers import residual_at
from saefilter.model.loading import LoadedModel
from saefilter.sae.loading import LoadedSAE


class FeatureEncoder:
    """Model truncated at the SAE hook + SAE encoder: samples in, per-token feature activations out."""

    def __init__(self, lm: LoadedModel, sae: LoadedSAE) -> None:
        self.lm = lm
        self.sae = sae
        self.sae_dtype = next(sae.sae.parameters()).dtype

    @torch.inference_mode()
    def residuals(self, samples: Sequence[EncodedSample]) -> torch.Tensor:
        """Residual vectors of all scored positions, concatenated: [n_scored_total, d_model]."""
        ids, attention, scored = pad_batch(samples, self.lm.tokenizer.pad_token_id)
        device = self.lm.device
        resid = residual_at(self.lm.model, self.sae.hook, ids.to(device), attention.to(device))
        return resid[scored.to(device)]

    def _split(self, values: np.ndarray, samples: Sequence[EncodedSample]) -> list[np.ndarray]:
        return np.split(values, np.cumsum([s.n_scored for s in samples])[:-1])

    @torch.inference_mode()
    def token_features(self, samples: Sequence[EncodedSample]) -> list[np.ndarray]:
        """Per sample: [n_scored, d_sae] float32 SAE activations of its scored tokens."""
        selected = self.residuals(samples)
        return self._split(self.sae.sae.encode(selected.to(self.sae_dtype)).float().cpu().numpy(), samples)

    @torch.inference_mode()
    def summaries(
        self, samples: Sequence[EncodedSample], proximity: torch.Tensor, how: str
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sample: its activations aggregated over its scored tokens ('max' or 'mean', [d_sae])
        and each scored token's harmful mass (activations @ proximity, [n_scored]). Reduced here, in
        torch, so only these small arrays leave the device."""
        if how not in ("max", "mean"):
            raise ValueError(f"unknown aggregation {how!r}")
        features = self.sae.sae.encode(self.residuals(samples).to(self.sae_dtype)).float()
        mass = features @ proximity.to(features.device)
        sizes = [s.n_scored for s in samples]
        result = []  # every sample has at least one scored token (`render.encode` refuses others)
        for part, part_mass in zip(torch.split(features, sizes), torch.split(mass, sizes), strict=True):
            aggregated = part.amax(dim=0) if how == "max" else part.mean(dim=0)
            result.append((aggregated.cpu().numpy(), part_mass.cpu().numpy()))
        return result

    @torch.inference_mode()
    def token_residuals_and_features(self, samples: Sequence[EncodedSample]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sample: residuals [n_scored, d_model] and SAE activations [n_scored, d_sae], one forward pass."""
        selected = self.residuals(samples)
        features = self.sae.sae.encode(selected.to(self.sae_dtype)).float().cpu().numpy()
        return list(zip(self._split(selected.float().cpu().numpy(), samples), self._split(features, samples), strict=True))
