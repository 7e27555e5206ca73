"""Worlds: samplers of knowledge graphs with rules, their specs, export and drawing.

The registry is :mod:`kgtest.worlds.registry`; importing this package imports every
sampler module, which registers its samplers there.
"""

from kgtest.worlds import (  # noqa: F401  (registration)
    composition,
    dual_use,
    edu_relat,
    family,
    taxonomy,
)
