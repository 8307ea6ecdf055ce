"""What a feature set was built and chosen on, row by row, and whether new data overlaps it.

A score is evidence only about data it never touched. Every feature set records, for each role a
text played in making it, which sources filled the role, how many rows each had and a compact
fingerprint of every row (inputs/fingerprint.py). `eval`, `drift --pairs` and the benchmark scripts
check their data against it before they measure anything.

JSON, under the set's "provenance" key:
    {"roles": {"contrast harmful": ["built-in answers contrast (harmful)"], ...},
     "sources": {"built-in answers contrast (harmful)": {"rows", "exact", "ngrams", "ngram_sample"}}}
A source named by several roles (a contrast is also the direction's training rows) is stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from saefilter.errors import InputError
from saefilter.inputs.fingerprint import Fingerprint, Match, answer_text, find_matches, fingerprint
from saefilter.inputs.formats import Conversation

ROLES = ("contrast harmful", "contrast benign", "hard negatives", "identity filter", "direction training",
         "calibration", "settings chosen on")
# Rows that define what counts as harmful keep every 13-gram; sources in the other roles (broad
# benign text, calibration rows, whole benchmark splits) keep a hash-chosen share of at most this many,
# which keeps the shipped set's file small. Exact copies are caught in every role.
SAMPLED_CAP = 1024
_WHOLE = {"contrast harmful", "contrast benign", "hard negatives", "direction training"}


@dataclass(frozen=True)
class Provenance:
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> source names, in order added
    sources: dict[str, Fingerprint] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.roles)

    def with_source(self, role: str, name: str, conversations: Sequence[Conversation]) -> Provenance:
        """This provenance and `conversations` (read from `name`) in `role`."""
        cap = None if role in _WHOLE else SAMPLED_CAP
        return self.with_fingerprint(role, name, fingerprint((answer_text(c) for c in conversations), cap))

    def with_fingerprint(self, role: str, name: str, print_: Fingerprint) -> Provenance:
        if role not in ROLES:
            raise ValueError(f"unknown provenance role {role!r}; roles: {', '.join(ROLES)}")
        unique = name
        for n in range(2, 1000):  # the same name with other rows (a file that changed) gets its own entry
            known = self.sources.get(unique)
            if known is None or known == print_:
                break
            unique = f"{name} ({n})"
        names = self.roles.get(role, ())
        roles = {**self.roles, role: names if unique in names else (*names, unique)}
        return Provenance(roles, {**self.sources, unique: print_})

    def merged(self, other: Provenance) -> Provenance:
        """Both provenances: every role of each, a source of the same name and rows kept once."""
        out = self
        for role, names in other.roles.items():
            for name in names:
                out = out.with_fingerprint(role, name, other.sources[name])
        return out

    def roles_of(self, source: str) -> list[str]:
        return [role for role, names in self.roles.items() if source in names]

    def rows(self) -> list[tuple[str, str, int]]:
        """(role, source, rows) in role order: what `features show` prints."""
        order = [r for r in ROLES if r in self.roles]
        return [(role, name, self.sources[name].rows) for role in order for name in self.roles[role]]

    def as_json(self) -> dict:
        return {"roles": {role: list(names) for role, names in self.roles.items()},
                "sources": {name: print_.as_json() for name, print_ in self.sources.items()}}

    @classmethod
    def from_json(cls, payload: object, where: str) -> Provenance:
        if not isinstance(payload, dict) or not isinstance(payload.get("roles"), dict) \
                or not isinstance(payload.get("sources"), dict):
            raise InputError(f"{where}: expected {{'roles': {{...}}, 'sources': {{...}}}}")
        sources = {name: Fingerprint.from_json(value, f"{where}.sources[{name!r}]")
                   for name, value in payload["sources"].items()}
        roles: dict[str, tuple[str, ...]] = {}
        for role, names in payload["roles"].items():
            if role not in ROLES:
                raise InputError(f"{where}: unknown role {role!r}; roles: {', '.join(ROLES)}")
            missing = [n for n in names if n not in sources]
            if not isinstance(names, list) or missing:
                raise InputError(f"{where}: role {role!r} names sources that are not stored: {missing}")
            roles[role] = tuple(names)
        return cls(roles, sources)


@dataclass(frozen=True)
class Overlap:
    """Which checked rows copy or paraphrase rows a feature set was made from."""

    checked: int
    matches: list[Match]
    origins: list[str]  # "file:line" of each checked row, or "row N"
    provenance: Provenance

    @property
    def rows(self) -> list[int]:
        return sorted({m.row for m in self.matches})

    def counts(self) -> dict[str, int]:
        """Rows that overlap, per role they overlap with (a row may count under several)."""
        out: dict[str, set[int]] = {}
        for m in self.matches:
            for role in self.provenance.roles_of(m.source):
                out.setdefault(role, set()).add(m.row)
        return {role: len(rows) for role, rows in sorted(out.items(), key=lambda kv: ROLES.index(kv[0]))}

    def lines(self, first: int = 5) -> list[str]:
        """The first `first` overlapping rows, one line each: where, how, with what."""
        out = []
        for row in self.rows[:first]:
            found = sorted((m for m in self.matches if m.row == row), key=lambda m: (not m.exact, -m.shared))
            how = "; ".join(f"{'copy' if m.exact else f'{m.shared} shared 13-gram' + ('s' if m.shared > 1 else '')} "
                            f"of {m.source} ({', '.join(self.provenance.roles_of(m.source))})" for m in found)
            out.append(f"{self.origins[row]}: {how}")
        return out

    def summary(self, what: str) -> str:
        counts = ", ".join(f"{n} with {role}" for role, n in self.counts().items())
        return f"{len(self.rows)} of {self.checked} {what} overlap rows the feature set was made from ({counts})"


def check_overlap(provenance: Provenance, conversations: Sequence[Conversation],
                  origins: Sequence[str] | None = None) -> Overlap:
    """The overlap of `conversations` (their answers) with every source of `provenance`."""
    where = list(origins) if origins is not None else [c.origin or f"row {i}" for i, c in
                                                      enumerate(conversations, start=1)]
    matches = find_matches([answer_text(c) for c in conversations], provenance.sources) if provenance else []
    return Overlap(len(conversations), matches, where, provenance)
