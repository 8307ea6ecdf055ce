"""The shipped SAEs' architecture loads without sae-lens and encodes bit for bit as sae-lens does; every
other SAE still goes through sae-lens. What the start-up of `check` and `score` gains from it is in
scripts/benchmark_hook.py, not here."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saefilter.sae.loading import load_sae
from saefilter.sae.native import TopKSAE, load_native


def save_topk_sae(path, d_in=24, d_sae=96, k=8, rescale=True, seed=0):
    from sae_lens import TopKSAE as LensTopK
    from sae_lens import TopKSAEConfig

    cfg = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, rescale_acts_by_decoder_norm=rescale)
    cfg.metadata.hook_name = "blocks.2.hook_resid_post"
    sae = LensTopK(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
        sae.b_enc -= 12.0  # some of the top k pre-activations negative: the ReLU after top-k matters
    sae.save_model(path)
    return path


@pytest.mark.parametrize("rescale", [True, False])
def test_a_topk_sae_encodes_exactly_as_sae_lens(tmp_path, rescale):
    from sae_lens import SAE

    folder = save_topk_sae(tmp_path / "sae", rescale=rescale)
    reference, native = SAE.load_from_disk(folder).eval(), load_native(folder)
    assert isinstance(native, TopKSAE)
    x = torch.randn(50, 24, generator=torch.Generator().manual_seed(1)) * 3
    with torch.inference_mode():
        expected = reference.encode(x)
        assert torch.equal(expected, native.encode(x))
        assert torch.equal(reference.encode(x.bfloat16()), native.encode(x.bfloat16()))
    active = (expected > 0).sum(1)
    assert active.min() < 8 < active.max() + 1 and active.max() <= 8
    loaded = load_sae(str(folder))
    assert isinstance(loaded.sae, TopKSAE) and (loaded.d_in, loaded.d_sae) == (24, 96)
    assert loaded.hook.name == "blocks.2.hook_resid_post"


def test_other_architectures_and_extras_stay_with_sae_lens(tmp_path, sae_dir):
    assert load_native(sae_dir) is None  # a standard (ReLU) SAE
    assert not isinstance(load_sae(str(sae_dir)).sae, TopKSAE)
    folder = save_topk_sae(tmp_path / "normalised")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "expected_average_only_in"}))
    assert load_native(folder) is None


def test_the_shipped_sae_loads_without_importing_sae_lens():
    code = ("import sys; from saefilter.sae.loading import load_sae; from saefilter.scoring.config import ScoreConfig;"
            "sae = load_sae(ScoreConfig().sae_spec); print(type(sae.sae).__name__, 'sae_lens' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["TopKSAE", "False"]


def test_the_shipped_sae_matches_sae_lens_on_its_own_weights():
    from sae_lens import SAE

    from saefilter.scoring.config import ScoreConfig

    folder = ScoreConfig().sae_spec
    reference, native = SAE.load_from_disk(folder).eval(), load_native(Path(folder))
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(40, reference.cfg.d_in)).astype(np.float32)) * 4
    with torch.inference_mode():
        assert torch.equal(reference.encode(x), native.encode(x))
