"""Capture the residual stream at an SAE's hook point (see `hooks`) and stop the forward pass there.

Later layers and the LM head never run: the hook raises once it has what it needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from saefilter.errors import InputError
from saefilter.model.hooks import HookPoint


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks, found by architecture-independent search."""
    n_layers = getattr(model.config, "num_hidden_layers", None)
    candidates = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (n_layers is None or len(module) == n_layers)
    ]
    if not candidates:
        raise InputError(f"cannot find the decoder layers of {type(model).__name__}")
    return candidates[0]


def check_hook_point(model: nn.Module, hook: HookPoint) -> None:
    check_hook_depth(len(decoder_layers(model)), hook)


def check_hook_depth(n_layers: int, hook: HookPoint) -> None:
    if hook.layer >= n_layers:
        raise InputError(
            f"the SAE reads {hook.name} but the model has only {n_layers} layers (0..{n_layers - 1}); "
            "pick an SAE trained for this model"
        )


class _StopForward(Exception):
    pass


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple | list) else value


def _stop_point(hooks: list[HookPoint]) -> HookPoint:
    """The hook reached last in the forward pass (pre of L comes before post of L)."""
    return max(hooks, key=lambda h: (h.layer, h.position == "post"))


@torch.inference_mode()
def residuals_at(
    model: nn.Module, hooks: list[HookPoint], input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Residual streams [batch, seq, d_model] at each hook, running only the layers up to the last one."""
    layers = decoder_layers(model)
    captured: dict[str, torch.Tensor] = {}
    stop = _stop_point(hooks)

    def capture(hook: HookPoint, value: torch.Tensor) -> None:
        captured[hook.name] = value
        if hook == stop:
            raise _StopForward

    def output_hook(hook: HookPoint):
        def on_output(_module: nn.Module, _args: Any, output: Any) -> None:
            capture(hook, _first_tensor(output))

        return on_output

    def input_hook(hook: HookPoint):
        def on_input(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            capture(hook, args[0] if args else kwargs["hidden_states"])

        return on_input

    handles = [
        layers[h.layer].register_forward_hook(output_hook(h))
        if h.position == "post"
        else layers[h.layer].register_forward_pre_hook(input_hook(h), with_kwargs=True)
        for h in hooks
    ]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [h.name for h in hooks if h.name not in captured]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} never reached in the forward pass")
    return captured


def residual_at(model: nn.Module, hook: HookPoint, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Residual stream [batch, seq, d_model] at `hook`; later layers and the LM head never run."""
    return residuals_at(model, [hook], input_ids, attention_mask)[hook.name]
