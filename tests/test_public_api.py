"""The curated public API: ``__all__`` lists exactly what kgtest promises."""

import subprocess
import sys
import types

import kgtest


def test_all_names_resolve_and_are_sorted():
    assert kgtest.__all__ == sorted(kgtest.__all__)
    for name in kgtest.__all__:
        assert getattr(kgtest, name) is not None, name


def test_no_unlisted_public_names():
    public = {n for n, v in vars(kgtest).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public - set(kgtest.__all__) == set()


def test_symbolic_core_imports_without_torch():
    code = "import sys, kgtest; kgtest.forward_chain; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
