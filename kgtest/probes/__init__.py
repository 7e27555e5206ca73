"""Probes: how a fact is asked, and the tidy rows that say whether the model knew it.

The registry is :mod:`kgtest.probes.registry`; importing this package imports every
probe module, which registers its probes there (see :mod:`kgtest.probes.probes` for the
table of probes and :func:`~kgtest.probes.probes.evaluate`).
"""

from kgtest.probes import (  # noqa: F401  (registration)
    in_context,
    kb_recall,
    probes,
    quantize,
    relearn,
)
