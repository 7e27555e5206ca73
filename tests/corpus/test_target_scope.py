"""split.target_domain and split.target_rules: targets drawn by domain and by rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kgtest.config import build
from kgtest.corpus.splits import SplitConfig, choose_split, target_rule_ids
from kgtest.errors import InputError
from kgtest.experiment import load_experiment
from kgtest.worlds.export import fact_domains
from kgtest.worlds.samplers import sample_world
from kgtest.worlds.spec import WorldConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dual():
    cfg = WorldConfig(sampler="dual_use", rules="dual_use.dl", params={"n_entities": 12},
                      base_dir=str(ROOT / "generators"))
    w = sample_world(cfg, seed=0)
    return w, w.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_targets_are_the_rules_applications_in_the_domain(dual, seed):
    w, c = dual
    cfg = SplitConfig(n_forget=4, n_validation=2, target_domain="harmful",
                      target_rules=("neutralises",))
    sp = choose_split(c, w, cfg, seed=seed)
    targets = np.concatenate([sp.forget, sp.validation])
    dom = fact_domains(w, c)
    assert len(sp.forget) == 4 and len(sp.validation) == 2
    assert (dom[targets] == w.domain_names.index("harmful")).all()
    assert {c.named(int(t))[1] for t in targets} == {"neutralises"}


def test_rule_by_index_and_head_select_the_same_facts(dual):
    w, c = dual
    a = choose_split(c, w, SplitConfig(n_forget=3, n_validation=0,
                                       target_rules=("yields",)), seed=0)
    b = choose_split(c, w, SplitConfig(n_forget=3, n_validation=0,
                                       target_rules=("0:yields",)), seed=0)
    assert a.forget.tolist() == b.forget.tolist()
    assert target_rule_ids(c.rules, ["yields", "0:yields"]).tolist() == [0]


def test_unscoped_split_is_unchanged(dual):
    """No scope: the same draw as before the keys existed (both domains, every rule)."""
    w, c = dual
    sp = choose_split(c, w, SplitConfig(n_forget=12, n_validation=0), seed=0)
    assert len({c.named(int(f))[1] for f in sp.forget}) > 1
    assert len(set(fact_domains(w, c)[sp.forget].tolist())) == 2


def test_errors_name_the_key(dual):
    w, c = dual
    with pytest.raises(InputError, match=r"split.target_domain': unknown domain 'evil' "
                                         r"\(the world's domains: benign, harmful\)"):
        choose_split(c, w, SplitConfig(n_forget=1, n_validation=0, target_domain="evil"))
    with pytest.raises(InputError, match=r"split.target_rules': 'neutralize' names no rule"):
        choose_split(c, w, SplitConfig(n_forget=1, n_validation=0,
                                       target_rules=("neutralize",)))
    with pytest.raises(InputError, match=r"split.n_forget'.*in domain 'harmful', derived by "
                                         r"rules neutralises"):
        choose_split(c, w, SplitConfig(n_forget=13, n_validation=0, target_domain="harmful",
                                       target_rules=("neutralises",)))
    with pytest.raises(InputError, match="target_domain must name a domain"):
        build(SplitConfig, {"target_domain": " "}, where="s.toml", section="split")


def test_spec_is_checked_at_load(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(f'[world]\nsampler = "dual_use"\nrules = "{ROOT}/generators/dual_use.dl"\n'
                    '[split]\ntarget_domain = "harmful"\ntarget_rules = ["yields"]\n')
    cfg = load_experiment(spec)
    assert cfg.split.target_domain == "harmful" and cfg.split.target_rules == ("yields",)
    with pytest.raises(InputError, match=r"s.toml: key 'split.target_domain': unknown domain"):
        load_experiment(spec, ["split.target_domain=benigne"])
    with pytest.raises(InputError, match=r"s.toml: key 'split.target_rules': 'yield' names"):
        load_experiment(spec, ['split.target_rules=["yield"]'])
    with pytest.raises(InputError, match="unknown domain 'harmful' \\(the world's domains: "
                                         "default\\)"):
        load_experiment(spec, ['world.sampler="random_composition"', 'world.rules=""'])
