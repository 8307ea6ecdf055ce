"""Decontamination before measuring: is the data a run evaluates on among what its feature set was
built or chosen on? A warning by default (in the report, and printed), an error with `strict`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saefilter.errors import InputError
from saefilter.features.provenance import Provenance, check_overlap
from saefilter.inputs.formats import Conversation

SHOWN = 5  # overlapping rows named in a message


def overlap_report(provenance: Provenance, conversations: Sequence[Conversation], what: str, strict: bool,
                   origins: Sequence[str] | None = None) -> dict[str, Any]:
    """{"checked", "rows", "by_role", "first", "message"} of `conversations` against `provenance`;
    raises with `strict` when any row overlaps. A set without provenance says so ("unknown")."""
    if not provenance:
        return {"checked": len(conversations), "rows": None, "by_role": {}, "first": [],
                "message": "the feature set records no provenance: overlap with what it was built on is unknown"}
    overlap = check_overlap(provenance, conversations, origins)
    message = overlap.summary(what) if overlap.rows else ""
    if overlap.rows and strict:
        raise InputError("\n".join([message + ":", *overlap.lines(SHOWN),
                                    "--strict refuses evaluation data the feature set has seen; remove these rows"]))
    return {"checked": overlap.checked, "rows": len(overlap.rows), "by_role": overlap.counts(),
            "first": overlap.lines(SHOWN), "message": message}
