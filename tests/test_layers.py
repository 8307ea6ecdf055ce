"""Hook-name mapping to Hugging Face layers, and the early stop of the forward pass."""

import pytest
import torch
from conftest import build_llama

from saefilter.errors import InputError
from saefilter.model.hooks import HookPoint, parse_hook_name
from saefilter.model.layers import decoder_layers, residual_at, residuals_at


def build_gpt2(vocab_size: int = 50):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=4, n_head=4, n_positions=64)).eval()


MODELS = {"llama": lambda: build_llama(60), "gpt2": lambda: build_gpt2(60)}


def inputs():
    ids = torch.tensor([[5, 9, 13, 2, 7, 7], [4, 8, 15, 16, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return ids, mask


def test_parse_hook_name():
    assert parse_hook_name("blocks.12.hook_resid_post") == HookPoint(12, "post")
    assert parse_hook_name("blocks.0.hook_resid_pre") == HookPoint(0, "pre")
    with pytest.raises(InputError, match="unsupported SAE hook point"):
        parse_hook_name("blocks.3.attn.hook_z")


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_hook_points_match_hugging_face_hidden_states(arch, layer):
    model = MODELS[arch]()
    ids, mask = inputs()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    pre = residual_at(model, HookPoint(layer, "pre"), ids, mask)
    post = residual_at(model, HookPoint(layer, "post"), ids, mask)
    torch.testing.assert_close(pre, hidden[layer])
    torch.testing.assert_close(post, hidden[layer + 1])


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_forward_stops_at_the_hook(arch):
    model = MODELS[arch]()
    layers = decoder_layers(model)
    calls = {i: 0 for i in range(len(layers))}
    head_calls = []
    handles = [layers[i].register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1)) for i in calls]
    handles.append(model.get_output_embeddings().register_forward_hook(lambda *_: head_calls.append(1)))
    ids, mask = inputs()
    residual_at(model, HookPoint(1, "post"), ids, mask)
    assert calls == {0: 1, 1: 1, 2: 0, 3: 0}
    residual_at(model, HookPoint(2, "pre"), ids, mask)
    assert calls == {0: 2, 1: 2, 2: 0, 3: 0}
    assert head_calls == []
    for handle in handles:
        handle.remove()


def test_several_hooks_in_one_pass():
    model = build_llama(60)
    ids, mask = inputs()
    captured = residuals_at(model, [HookPoint(0, "post"), HookPoint(2, "post")], ids, mask)
    torch.testing.assert_close(captured["blocks.0.hook_resid_post"], residual_at(model, HookPoint(0, "post"), ids, mask))
    torch.testing.assert_close(captured["blocks.2.hook_resid_post"], residual_at(model, HookPoint(2, "post"), ids, mask))


def test_rebucketed_batches_give_one_at_a_time_residuals_in_float32(tokenizer):
    """Any grouping of samples into length batches (right padding) leaves each sample's residuals
    within a relative 1e-5 of running it alone: what lets the batch settings change for speed."""
    from conftest import ANSWERS, HOOK, chat

    from saefilter.inputs.formats import to_conversation
    from saefilter.inputs.render import encode, render
    from saefilter.model.activations import length_batches, pad_batch

    model = build_llama(len(tokenizer))
    samples = [encode(render(to_conversation(chat("tell me a story", a * (i % 4 + 1))), tokenizer), tokenizer, 256)
               for i, a in enumerate(ANSWERS * 2)]

    def by_sample(batch_size: int, batch_tokens: int) -> list[torch.Tensor]:
        out: list[torch.Tensor] = [torch.empty(0)] * len(samples)
        for batch in length_batches([len(s.input_ids) for s in samples], batch_size, batch_tokens):
            ids, mask, _ = pad_batch([samples[i] for i in batch], tokenizer.pad_token_id)
            resid = residual_at(model, HOOK, ids, mask)
            for row, i in enumerate(batch):
                out[i] = resid[row, : len(samples[i].input_ids)]
        return out

    alone = by_sample(1, 8192)
    lengths = {len(s.input_ids) for s in samples}
    assert len(lengths) > 3  # the batches below do pad
    for batch_size, batch_tokens in ((16, 8192), (3, 8192), (16, 2 * max(lengths))):
        for a, b in zip(alone, by_sample(batch_size, batch_tokens), strict=True):
            assert torch.allclose(b, a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
