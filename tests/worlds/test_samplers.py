"""World samplers: determinism, planted proof counts, Zipf skew, dual-use domains."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgtest.errors import InputError
from kgtest.symbolic.facts import decode
from kgtest.worlds.registry import SAMPLERS
from kgtest.worlds.samplers import sample_world, world_from_tsv
from kgtest.worlds.spec import WorldConfig

SAMPLER_NAMES = ["dual_use", "family_tree", "random_composition", "taxonomy"]


def _fingerprint(w):
    return (w.entities.names, decode(w.facts, w.entities, w.relations), w.fixed.tolist(),
            w.domain.tolist(), w.planted.tolist(), [str(r) for r in w.rules])


def test_registry_has_the_four_families():
    assert {"random_composition", "family_tree", "taxonomy", "dual_use"} <= set(SAMPLERS)


def test_unknown_sampler_lists_known_ones():
    with pytest.raises(InputError, match=r"did you mean 'taxonomy'\?.*known: .*family_tree"):
        WorldConfig(sampler="taxonomi")


def test_same_seed_same_world_other_seed_other_world(sampler, small_config):
    cfg = small_config(sampler, n_planted=2, planted_proofs=1)
    a, b = sample_world(cfg, seed=7), sample_world(cfg, seed=7)
    assert _fingerprint(a) == _fingerprint(b)
    assert _fingerprint(a) != _fingerprint(sample_world(cfg, seed=8))


def test_sampler_leaves_global_rng_alone(sampler, small_config):
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    sample_world(small_config(sampler), seed=1)
    assert np.random.random() == before


@settings(max_examples=25, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16), n=st.integers(1, 4))
def test_planted_targets_have_exactly_k_independent_proofs(small_config, max_k, data, seed, n):
    sampler = data.draw(st.sampled_from(SAMPLER_NAMES))
    k = data.draw(st.integers(1, max_k[sampler]))
    w = sample_world(small_config(sampler, n_planted=n, planted_proofs=k), seed=seed)
    c = w.close()
    ids = c.index(w.planted)
    assert len(w.planted) == n and (ids >= c.n_base).all()
    assert c.proof_count[ids].tolist() == [k] * n
    fixed = w.fixed_mask(c)
    for fid in ids.tolist():  # independent: no shared non-fixed premise between derivations
        prem = [p for d in c.derivations_of(fid).tolist() for p in c.premises(d) if not fixed[p]]
        assert len(prem) == len(set(prem))


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_a_list_of_planted_proofs_cycles_over_the_targets(small_config, max_k, sampler):
    ks = [1, 2] if max_k[sampler] < 3 else [1, 3, 2]
    w = sample_world(small_config(sampler, n_planted=5, planted_proofs=tuple(ks)), seed=3)
    c = w.close()
    assert c.proof_count[c.index(w.planted)].tolist() == (ks * 5)[:5]


def test_family_refuses_more_than_two_planted_proofs(small_config):
    with pytest.raises(InputError, match="planted_proofs.*1 \\(half\\) or 2 \\(full\\)"):
        sample_world(small_config("family_tree", n_planted=1, planted_proofs=3), seed=0)
    with pytest.raises(InputError, match="planted_proofs.*got 4"):
        sample_world(small_config("family_tree", n_planted=2, planted_proofs=(1, 4)), seed=0)


def test_family_gender_is_fixed_and_kinship_is_derived(small_config):
    w = sample_world(small_config("family_tree"), seed=3)
    gender = w.relations.id("gender")
    assert (w.fixed == (w.facts[:, 1] == gender)).all() and w.fixed.any()
    c = w.close()
    derived = {c.relations.name(r) for r in c.facts[c.n_base:, 1].tolist()}
    assert {"child", "father", "mother", "sibling", "grandparent", "spouse"} <= derived


def test_taxonomy_properties_are_inherited(small_config):
    w = sample_world(small_config("taxonomy"), seed=0)
    c = w.close()
    is_a, has = c.relations.id("is_a"), c.relations.id("has_property")
    facts = {tuple(t) for t in c.facts.tolist()}
    for x, r, y in c.facts.tolist():  # closed under inheritance
        if r == is_a:
            for _, _, p in [t for t in facts if t[0] == y and t[1] == has]:
                assert (x, has, p) in facts


def _gini(world) -> float:
    """Gini of entity degree over the non-fixed base facts (0 = all equal)."""
    facts = world.facts[~world.fixed]
    deg = np.sort(np.bincount(facts[:, [0, 2]].ravel(), minlength=len(world.entities)))
    cum = np.cumsum(deg)
    return float(1 - 2 * (cum.sum() / cum[-1] - 0.5) / len(deg))


def test_zipf_skews_entity_frequency(sampler, small_config):
    def cfg(z):  # family_tree: a few more couples, so family sizes can differ
        c = small_config(sampler, zipf=z)
        return replace(c, params={"n_families": 4}) if sampler == "family_tree" else c

    flat = [_gini(sample_world(cfg(0.0), seed=s)) for s in range(5)]
    skew = [_gini(sample_world(cfg(2.0), seed=s)) for s in range(5)]
    assert np.mean(skew) > np.mean(flat) + 0.05, (flat, skew)


def test_dual_use_domains_share_rules_with_disjoint_facts(small_config):
    w = sample_world(small_config("dual_use", n_planted=2), seed=0)
    assert w.domain_names == ("benign", "harmful")
    ents = [set(w.facts[w.domain == d][:, [0, 2]].ravel().tolist()) for d in (0, 1)]
    assert ents[0] and ents[1] and not ents[0] & ents[1]
    c = w.close()
    # every rule fires in both domains: derived facts of each rule have subjects in each
    for ri in range(len(w.rules)):
        heads = c.deriv_head[c.deriv_rule == ri]
        subjects = set(c.facts[heads, 0].tolist())
        assert subjects & ents[0] and subjects & ents[1], str(w.rules[ri])


def test_composition_is_functional_and_multi_hop():
    w = sample_world(WorldConfig(params={"n_entities": 30, "hops": 3}), seed=0)
    base = w.facts
    pairs = base[:, 0] * 100 + base[:, 1]
    assert len(np.unique(pairs)) == len(pairs)  # one object per (subject, relation)
    assert int(w.close().depth.max()) == 2  # a composition composed again


def test_world_from_tsv_with_fixed(tmp_path):
    (tmp_path / "f.tsv").write_text("# a KG\nann\tparent\tbob\nbob\tparent\tcy\n")
    (tmp_path / "g.tsv").write_text("ann\tgender\tfemale\n")
    (tmp_path / "r.dl").write_text(
        "grandmother(X, Z) :- parent(X, Y), parent(Y, Z), gender(X, female).\n")
    w = world_from_tsv(tmp_path / "f.tsv", tmp_path / "r.dl", tmp_path / "g.tsv")
    assert w.fixed.tolist() == [False, False, True]
    c = w.close()
    assert c.find("ann", "grandmother", "cy") >= c.n_base


def test_world_from_tsv_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "f.tsv").write_text("ann\tparent\tbob\nbroken line\n")
    (tmp_path / "r.dl").write_text("p(X, Y) :- parent(X, Y).\n")
    with pytest.raises(InputError, match=r"f\.tsv:2:"):
        world_from_tsv(tmp_path / "f.tsv", tmp_path / "r.dl")


def test_family_plants_even_when_no_couple_had_children(small_config):
    """Seed 359 draws no children at all (found by the property test above): the first
    founders get one, so the planted target still has exactly its proof count."""
    w = sample_world(small_config("family_tree", n_planted=1, planted_proofs=1), seed=359)
    c = w.close()
    assert c.proof_count[c.index(w.planted)].tolist() == [1]
