"""The tuner's warning lines: one per way the chosen point misses the fair-tuning rule."""

from __future__ import annotations

import math

from kgtest.unlearn.tune import _warnings


def _choice(**kw):
    return {"lr": 1e-3, "epochs": 5, "forget_acc": 0.0, "retain_acc": 0.95,
            "reached": True, "kept": True, **kw}


def test_a_missing_retain_sample_is_named_instead_of_nan():
    """With no retain sample (probes.utility_limit took every retained fact) the
    original's retain accuracy is NaN: the line says why, and never prints 'nan'."""
    lines = _warnings(_choice(retain_acc=math.nan, kept=False), "NPO", 0.05, 0.0, 0.05, 0.9,
                      {"retain_acc": math.nan}, math.nan)
    assert len(lines) == 1 and "no retain sample" in lines[0]
    assert "probes.utility_limit" in lines[0] and "nan" not in lines[0]


def test_each_miss_gets_its_own_line_and_a_kept_point_none():
    orig = {"retain_acc": 1.0}
    assert _warnings(_choice(), "NPO", 0.05, 0.0, 0.05, 0.9, orig, 0.9) == []
    (line,) = _warnings(_choice(retain_acc=0.5, kept=False), "NPO", 0.05, 0.0, 0.05, 0.9,
                        orig, 0.9)
    assert "keeps retain direct accuracy 0.50, below 0.9" in line
    both = _warnings(_choice(reached=False, forget_acc=0.4, retain_acc=0.5, kept=False),
                     "NPO", 0.05, 0.0, 0.05, 0.9, orig, 0.9)
    assert len(both) == 2 and "above the forgetting level" in both[0]
