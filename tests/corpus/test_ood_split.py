"""split.ood_fraction: Wang et al.'s out-of-distribution split (facts seen only atomically)."""

from __future__ import annotations

import numpy as np
import pytest

from kgtest.corpus.render import CorpusConfig, render
from kgtest.corpus.splits import Split, SplitConfig, choose_split, ood_facts
from kgtest.errors import InputError
from kgtest.experiment import load_experiment
from kgtest.train_eval import eval_sets
from kgtest.worlds.samplers import sample_world
from kgtest.worlds.spec import WorldConfig


@pytest.fixture(scope="module")
def world():
    cfg = WorldConfig(sampler="random_composition",
                      params={"n_entities": 30, "n_relations": 3, "n_derived": 4, "hops": 2})
    return sample_world(cfg, seed=3)


@pytest.fixture(scope="module")
def closure(world):
    return world.close()


def _split(closure, world, **kw):
    return choose_split(closure, world, SplitConfig(**{"n_forget": 3, "n_validation": 2,
                                                       "held_out_fraction": 0.2, **kw}), seed=5)


def test_ood_facts_never_premises_of_trained_compositions(world, closure):
    sp = _split(closure, world, ood_fraction=0.2)
    assert len(sp.ood_entities) == round(0.2 * 30) and len(sp.ood) > 0
    assert set(sp.ood.tolist()) <= set(sp.held_out.tolist())
    ood_base = closure.is_base & np.isin(closure.facts[:, 0], sp.ood_entities)
    trained_derived = ~closure.is_base & ~sp.mask("held_out")
    rows = np.isin(closure.deriv_head, np.flatnonzero(trained_derived))
    prem = closure.deriv_premises[rows]
    assert not ood_base[prem[prem >= 0]].any()  # the defining property
    # every held-out fact with an OOD premise is in sp.ood; the rest are in distribution
    uses = np.isin(closure.deriv_premises, np.flatnonzero(ood_base)).any(1)
    assert set(np.unique(closure.deriv_head[uses]).tolist()) == set(sp.ood.tolist())
    targets = np.concatenate([sp.forget, sp.validation])
    assert not np.isin(targets, sp.ood).any()
    assert len(np.setdiff1d(sp.held_out, sp.ood)) > 0  # an ID test set is left


def test_ood_fraction_zero_changes_nothing(world, closure):
    """The split the code drew before ood_fraction existed (commit d642e49), unchanged."""
    a = _split(closure, world, ood_fraction=0.0)
    assert a.forget.tolist() == [122, 147, 190] and a.validation.tolist() == [100, 158]
    assert a.held_out.tolist() == [90, 97, 104, 111, 120, 121, 129, 135, 136, 151, 156, 157,
                                   164, 179, 184, 186, 191, 193, 196, 198, 201, 203, 208]
    assert len(a.ood) == 0 and len(a.ood_entities) == 0


def test_ood_facts_deeper_rules_taint_what_they_derive():
    from kgtest.symbolic.rules import parse_rules
    from kgtest.worlds.world import World

    w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("c", "p", "d"), ("d", "p", "e")],
                         parse_rules("g(X, Z) :- p(X, Y), p(Y, Z).\n"
                                     "h(X, Z) :- g(X, Y), p(Y, Z)."))
    c = w.close()
    base, derived = ood_facts(c, np.array([c.entities.get("c")]))
    named = sorted(c.named(f) for f in np.flatnonzero(derived))
    # c's fact (c p d) feeds b g d and c g e; those feed a h d and b h e
    assert named == [("a", "h", "d"), ("b", "g", "d"), ("b", "h", "e"), ("c", "g", "e")]


def test_ood_json_round_trip_and_tags(tmp_path, world, closure):
    sp = _split(closure, world, ood_fraction=0.2)
    sp.save(tmp_path / "split.json", closure)
    back = Split.load(tmp_path / "split.json")
    assert np.array_equal(back.ood, sp.ood)
    assert np.array_equal(back.ood_entities, sp.ood_entities)
    corpus = render(closure, world, sp, CorpusConfig(derived="stated"), seed=0)
    tagged = {f for f, t in enumerate(corpus.tags) if "ood" in t.split(",")}
    base = np.flatnonzero(closure.is_base & np.isin(closure.facts[:, 0], sp.ood_entities))
    assert tagged == set(sp.ood.tolist()) | set(base.tolist())
    sets = eval_sets(corpus, sp)  # the in-loop latent questions, ID and OOD
    ids = {name: {d["facts"][0]["id"] for d in getattr(sets, name)}
           for name in ("latent_id", "latent_ood")}
    stop, ood = set(sp.held_out_stop.tolist()), set(sp.ood.tolist())
    assert ids["latent_ood"] == stop & ood and ids["latent_ood"]  # stop half only, and
    assert ids["latent_id"] == stop - ood and ids["latent_id"]  # stratified: both kinds
    plain = eval_sets(render(closure, world, _split(closure, world), CorpusConfig(), seed=0),
                      _split(closure, world))
    assert plain.latent_id == () and plain.latent_ood == ()  # only with an OOD split


def test_ood_fraction_bad_values_are_one_line_errors(tmp_path, world, closure):
    spec = tmp_path / "x.toml"
    spec.write_text("[split]\nood_fraction = 1.5\n")
    with pytest.raises(InputError, match="split.ood_fraction"):
        load_experiment(spec)
    with pytest.raises(InputError, match="split.ood_fraction"):  # no rule demonstrated
        _split(closure, world, ood_fraction=1.0, n_forget=0, n_validation=0)
