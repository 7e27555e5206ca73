"""Interoperability: outputs that travel to the tools researchers already use.

- :mod:`kgtest.interop.runinfo`: resolved spec, versions, git commit and command in
  every run folder.
- :mod:`kgtest.interop.exports`: an lm-evaluation-harness task folder and a TOFU-style
  forget/retain dataset from a run.
- :mod:`kgtest.interop.external`: every probe of a run on an outside checkpoint (a
  model unlearned with another library), written as a new variant of the run.
"""
