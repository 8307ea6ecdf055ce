"""sae-lens hook names of the residual stream, parsed without importing torch.

- `blocks.L.hook_resid_pre`  = the input of decoder layer L  (= hidden_states[L])
- `blocks.L.hook_resid_post` = the output of decoder layer L (= hidden_states[L + 1], before the
  final norm)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from saefilter.errors import InputError

HOOK_PATTERN = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


@dataclass(frozen=True)
class HookPoint:
    layer: int
    position: Literal["pre", "post"]

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_{self.position}"


def parse_hook_name(hook_name: str) -> HookPoint:
    match = HOOK_PATTERN.match(hook_name)
    if not match:
        raise InputError(
            f"unsupported SAE hook point '{hook_name}': saefilter reads the residual stream "
            "(blocks.L.hook_resid_pre or blocks.L.hook_resid_post)"
        )
    return HookPoint(int(match.group(1)), match.group(2))  # type: ignore[arg-type]
