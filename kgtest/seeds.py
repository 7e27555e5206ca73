"""One seed scheme: every stage's seed derives from the run seed and the stage's name.

:func:`stage_seed` is the only function that turns a run seed into a stage seed.
:func:`run_seeds` lists the seeds of every stage of a run (:data:`STAGES`), taking an
explicit per-stage seed (``train.seed``, ``unlearn.seed``, ``probes.seed``) as an override
and deriving the others, so ``--set run.seed=1`` changes every stage. Seeds are 63-bit
integers: records and JSON files carry them as strings (JSON readers round integers above
2**53), see :func:`seed_strings`.

Examples
--------
>>> s = run_seeds(0)
>>> sorted(s) == sorted(STAGES)
True
>>> s["world"] == stage_seed(0, "world") != run_seeds(1)["world"]
True
>>> run_seeds(0, batches=7)["batches"]
7
"""

from __future__ import annotations

import numpy as np

__all__ = ["stage_seed", "run_seeds", "seed_strings", "STAGES"]

#: The stages that draw random numbers, by the name their seed derives from.
STAGES = ("world", "split", "corpus", "model", "batches", "eval", "icl", "unlearn", "attack",
          "bootstrap", "probes")


def stage_seed(seed: int, stage: str) -> int:
    """A per-stage seed derived from a run seed (stable across runs and platforms).

    The stage name's UTF-8 bytes, in 8-byte little-endian words, and the run seed feed a
    :class:`numpy.random.SeedSequence`; the result is a non-negative 63-bit integer.

    Examples
    --------
    >>> stage_seed(0, "split") == stage_seed(0, "split") != stage_seed(0, "corpus")
    True
    >>> stage_seed(0, "bootstrap") != stage_seed(0, "bootstra")
    True
    """
    raw = stage.encode()
    words = [int.from_bytes(raw[i:i + 8].ljust(8, b"\0"), "little")
             for i in range(0, max(len(raw), 1), 8)]
    if len(raw) > 8:  # keep names of <= 8 bytes as they were; longer ones add their length
        words.append(len(raw))
    return int(np.random.SeedSequence([int(seed), *words]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def run_seeds(run_seed: int, **overrides: int | None) -> dict[str, int]:
    """The seed of every stage of :data:`STAGES`: ``overrides[stage]`` if given, else derived.

    Parameters
    ----------
    run_seed : int
        ``run.seed``.
    **overrides : int or None
        Per-stage explicit seeds (None: derive it). Unknown stage names are refused.

    Examples
    --------
    >>> run_seeds(3, unlearn=None)["unlearn"] == stage_seed(3, "unlearn")
    True
    >>> run_seeds(3, trian=1)
    Traceback (most recent call last):
    ...
    ValueError: run_seeds: unknown stage 'trian' (known: world, split, ...)
    """
    for name in overrides:
        if name not in STAGES:
            raise ValueError(f"run_seeds: unknown stage {name!r} (known: "
                             f"{', '.join(STAGES[:2])}, ...)")
    return {s: int(overrides[s]) if overrides.get(s) is not None else stage_seed(run_seed, s)
            for s in STAGES}


def seed_strings(seeds: dict) -> dict[str, str | None]:
    """Seeds as decimal strings (None stays None), for JSON files and records.

    >>> seed_strings({"world": 2**62, "unlearn": None})
    {'world': '4611686018427387904', 'unlearn': None}
    """
    return {k: None if v is None else str(int(v)) for k, v in seeds.items()}
