"""kgtest against the published EDU-RELAT benchmark (Wu et al. 2024), bundled data only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kgtest
from kgtest.symbolic.deletion import is_minimal, minimal_deletion_sets
from kgtest.symbolic.edu_relat import load_edu_relat


@pytest.fixture(scope="module")
def edu():
    data = load_edu_relat()
    closure, kb, fixed = data.close()
    return data, closure, kb, fixed


def test_bundled_data_and_closure(edu):
    data, closure, kb, fixed = edu
    assert (len(data.facts), len(data.fixed), len(data.rules), len(data.targets)) == (
        400, 100, 48, 55)
    assert len(closure) == 662 and closure.n_base == 500  # 162 derived, not stated
    assert {r for _, r, _ in closure.named_all(np.flatnonzero(fixed))} == {"gender"}
    assert not (kb & fixed).any() and kb.sum() == 400
    sizes = [t.published_min_size for t in data.targets]
    assert np.mean(sizes) == pytest.approx(6.98, abs=0.005) and (min(sizes), max(sizes)) == (3, 11)
    folder = Path(kgtest.__file__).parent / "data" / "edu_relat"
    notice = (folder / "LICENSE").read_text()
    assert "MIT License" in notice and "Copyright (c) 2024 Ruihan Wu" in notice
    assert "wrh14/deep_unlearning" in notice


def test_published_smallest_sets_are_valid_and_minimal_here(edu):
    data, closure, kb, fixed = edu
    for t in data.targets:
        ids = [closure.find(*f) for f in t.published_smallest_set]
        assert min(ids) >= 0 and len(ids) == t.published_min_size
        assert is_minimal(closure, t.fact, ids, kb=kb, fixed=fixed), t.fact


def test_kgtest_sets_valid_minimal_and_no_larger_than_published(edu):
    data, closure, kb, fixed = edu
    known = kb | fixed
    smaller_or_equal = 0
    for i, t in enumerate(data.targets):
        res = minimal_deletion_sets(closure, t.fact, kb=kb, fixed=fixed, restarts=100,
                                    seed=i, count=None, time_limit=20.0)
        target = closure.find(*t.fact)
        for s in res.sets:
            assert kb[s].all()
            kept = known.copy()
            kept[s] = False
            assert not closure.closure_mask(kept)[target], (t.fact, s)  # valid
            assert is_minimal(closure, target, s, kb=kb, fixed=fixed), (t.fact, s)
        assert res.min_size <= t.published_min_size, t.fact
        assert res.proven_minimum, t.fact
        smaller_or_equal += res.min_size <= t.published_min_size
        # about as many distinct sets as the published 100 restarts found
        assert res.n_found >= min(len(t.published_set_sizes), 2), t.fact
    assert smaller_or_equal == 55
