"""The probe registry: name -> :class:`Probe` (its function, gate, kind and columns).

A probe module registers its functions with ``@PROBES.register(name, ...)`` above the
definition; the package ``__init__`` imports every probe module, so importing anything
from :mod:`kgtest.probes` fills the registry. Everything downstream that lists probes
(the report's column order, its attack and utility tables, the CLI help) reads it here.

Each probe has a **kind**:

- ``re-derivation``: asks the forget targets (or facts implied by what the model kept)
  in some form: directly, by chain of thought, with premises in context, latently;
- ``attack``: a recovery attack on the model (relearning, quantization) before asking;
- ``utility``: what the model must keep (retain facts, rule use, held-out loss).

and **columns**: the ``probe`` values its rows carry (``cot`` also writes the
answer-only column ``cot_answer``, ``latent`` writes ``implied``, ``utility`` four
columns). A probe with ``grid = True`` writes one ``setting`` per hyperparameter grid
point; the report shows its worst case.

Examples
--------
>>> import kgtest.probes  # registers every probe
>>> PROBES.get("latent").columns, PROBES.get("relearn").kind
(('latent', 'implied'), 'attack')
>>> columns_of("utility")
('utility_direct', 'utility_cot', 'utility_rule', 'utility_loss')
>>> column_order()[:5]
('direct', 'statement', 'paraphrase', 'cot', 'cot_answer')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kgtest.registry import Registry, first_doc_line

__all__ = ["PROBES", "DEFAULT_PROBES", "KINDS", "Probe", "ProbeRegistry", "columns_of",
           "column_order", "grid_columns"]

#: Probes :func:`~kgtest.probes.probes.evaluate` runs when none are named, in the order
#: the report shows their columns (the other registered probes follow, as registered).
DEFAULT_PROBES = ("direct", "statement", "paraphrase", "cot", "in_context", "latent",
                  "relearn", "relearn_premises", "quantize", "utility")
#: What a probe measures (see the module docstring).
KINDS = ("re-derivation", "attack", "utility")


@dataclass(frozen=True)
class Probe:
    """A registered probe: its function, the original's probe that gates it, a summary,
    its kind, the ``probe`` column values its rows carry, and whether its settings are
    an attack grid (reported as the worst case)."""

    name: str
    fn: Callable[..., list[dict]]
    gate: str  # "direct" or "cot" (rows may override it)
    summary: str
    kind: str = "re-derivation"  # one of KINDS
    columns: tuple[str, ...] = ()  # the rows' `probe` values (default: the name)
    grid: bool = False  # settings are grid points of an attack: the report takes the worst


class ProbeRegistry(Registry[Probe]):
    """Name -> :class:`Probe`; an unknown name lists the known ones."""

    def register(self, name: str, *, gate: str = "direct", kind: str = "re-derivation",
                 columns: tuple[str, ...] = (), grid: bool = False):
        if kind not in KINDS:
            raise ValueError(f"probe {name!r}: unknown kind {kind!r} (known: {KINDS})")

        def deco(fn):
            self.add(name, Probe(name, fn, gate, first_doc_line(fn), kind,
                                 columns or (name,), grid))
            return fn
        return deco


PROBES = ProbeRegistry("probe")


def _ordered() -> list[Probe]:
    """The default probes in their listed order, then the others as registered."""
    rest = [p for p in PROBES.registered() if p not in DEFAULT_PROBES]
    return [PROBES.get(p) for p in (*[d for d in DEFAULT_PROBES if d in PROBES], *rest)]


def columns_of(kind: str) -> tuple[str, ...]:
    """The row ``probe`` values written by the probes of one kind, in report order."""
    return tuple(c for p in _ordered() if p.kind == kind for c in p.columns)


def column_order() -> tuple[str, ...]:
    """Every registered probe's columns in the order the report shows them."""
    return tuple(c for p in _ordered() for c in p.columns)


def grid_columns() -> tuple[str, ...]:
    """The columns of the probes whose settings are an attack grid (worst case shown)."""
    return tuple(c for p in _ordered() if p.grid for c in p.columns)
