"""Tests for split selection: labels, targets, demonstrations, held-out facts, errors."""

from __future__ import annotations

import numpy as np
import pytest

from kgtest.config import build
from kgtest.corpus.splits import LABELS, Split, SplitConfig, choose_split
from kgtest.errors import InputError
from kgtest.symbolic.rules import parse_rules
from kgtest.worlds.world import World

RULES = """
grandparent(X, Z) :- parent(X, Y), parent(Y, Z).
greatgrandparent(X, Z) :- grandparent(X, Y), parent(Y, Z).
sibling(X, Y) :- parent(X, Z), parent(Y, Z), X != Y.
"""


def family(n_people: int = 12, seed: int = 0) -> World:
    """Each person i > 1 has one or two parents among earlier people (parent(child, par))."""
    rng = np.random.default_rng(seed)
    facts = []
    for i in range(2, n_people):
        for p in rng.choice(i, size=min(i, 2), replace=False).tolist():
            facts.append((f"p{i}", "parent", f"p{p}"))
    facts.append(("p0", "likes", "p1"))
    return World.from_names(facts, parse_rules(RULES), fixed=[("p0", "gender", "f")])


@pytest.fixture(scope="module")
def world():
    return family()


@pytest.fixture(scope="module")
def closure(world):
    return world.close()


def test_labels_partition_and_priorities(world, closure):
    sp = choose_split(closure, world, SplitConfig(n_forget=4, n_validation=3,
                                                  held_out_fraction=0.3), seed=1)
    assert len(sp.forget) == 4 and len(sp.validation) == 3
    assert set(sp.labels) <= set(LABELS)
    assert sum(sp.counts().values()) == len(closure)
    assert set(sp.forget.tolist()).isdisjoint(sp.validation.tolist())
    for f in sp.forget.tolist():
        assert sp.labels[f] == "forget" and not closure.is_base[f]
        prem = {p for d in closure.derivations_of(f).tolist() for p in closure.premises(d)}
        assert prem <= set(sp.premise.tolist())  # every one-step premise is labelled
    # validation targets stay away from forget targets and their premises
    assert set(sp.validation.tolist()).isdisjoint(sp.premise.tolist())
    # targets and premises are never held out; held-out facts are derived
    held = set(sp.held_out.tolist())
    protected = set(sp.forget.tolist()) | set(sp.validation.tolist())
    protected |= set(sp.premise.tolist()) | set(sp.validation_premise.tolist())
    assert held and held.isdisjoint(protected)
    assert not closure.is_base[sp.held_out].any()
    assert (sp.labels[sp.held_out] == "held_out").all()


def test_fixed_facts_never_targets(world, closure):
    cfg = SplitConfig(n_forget=len(world.facts) - 1, n_validation=0, targets_from=("base",),
                      min_depth=0)
    sp = choose_split(closure, world, cfg, seed=0)
    fixed_id = closure.find("p0", "gender", "f")
    assert fixed_id not in sp.forget.tolist() and closure.is_base[sp.forget].all()
    with pytest.raises(InputError, match="split.n_forget"):
        choose_split(closure, world, SplitConfig(n_forget=len(world.facts), n_validation=0,
                                                 targets_from=("base",)), seed=0)


def test_proof_and_depth_ranges(world, closure):
    cfg = SplitConfig(n_forget=2, n_validation=0, min_depth=2, max_depth=2)
    sp = choose_split(closure, world, cfg, seed=0)
    assert (closure.depth[sp.forget] == 2).all()
    cfg = SplitConfig(n_forget=1, n_validation=0, min_proofs=2)
    sp = choose_split(closure, world, cfg, seed=0)
    assert (closure.proof_count[sp.forget] >= 2).all()


def test_planted_targets():
    base = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("c", "p", "d")],
                            parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    c0 = base.close()
    planted = c0.facts[[c0.find("b", "g", "d")]]
    w = World(**{**base.__dict__, "planted": planted})
    c = w.close()
    sp = choose_split(c, w, SplitConfig(n_forget=1, n_validation=0, targets_from=("planted",)))
    assert c.named(int(sp.forget[0])) == ("b", "g", "d")


def test_deterministic_by_seed(world, closure):
    cfg = SplitConfig(n_forget=3, n_validation=2, held_out_fraction=0.4, demo_fraction=0.5)
    a = choose_split(closure, world, cfg, seed=7)
    b = choose_split(closure, world, cfg, seed=7)
    assert a.to_json() == b.to_json()
    others = [choose_split(closure, world, cfg, seed=s).to_json() for s in range(3)]
    assert any(o["forget"] != others[0]["forget"] for o in others[1:])
    # the config's seed is used when no seed is given
    c = choose_split(closure, world, SplitConfig(**{**cfg.__dict__, "seed": 7}))
    assert c.to_json()["forget"] == a.to_json()["forget"]


def test_demo_fraction_holds_out_other_subjects(world, closure):
    cfg = SplitConfig(n_forget=0, n_validation=0, demo_fraction=0.5)
    sp = choose_split(closure, world, cfg, seed=3)
    gp = [i for i, r in enumerate(closure.rules) if r.head.relation == "grandparent"][0]
    demo = set(sp.demo_entities[gp].tolist())
    for f in range(closure.n_base, len(closure)):
        if closure.rules_of(f) == [gp]:
            assert (f in sp.held_out.tolist()) == (int(closure.facts[f, 0]) not in demo)
    # every held-out fact has a rule demonstrated on some other fact
    shown = set(range(closure.n_base, len(closure))) - set(sp.held_out.tolist())
    shown_rules = {r for f in shown for r in closure.rules_of(f)}
    for f in sp.held_out.tolist():
        assert shown_rules & set(closure.rules_of(f))


def test_held_out_fraction_keeps_each_rule_demonstrated(world, closure):
    sp = choose_split(closure, world, SplitConfig(n_forget=0, n_validation=0,
                                                  held_out_fraction=1.0), seed=0)
    shown = set(range(closure.n_base, len(closure))) - set(sp.held_out.tolist())
    for rule in range(len(closure.rules)):
        derives = [f for f in range(closure.n_base, len(closure)) if rule in closure.rules_of(f)]
        if derives:
            assert shown & set(derives), f"rule {rule} lost every demonstration"
    assert len(sp.held_out) > 0


@pytest.mark.parametrize("cfg, key", [
    (SplitConfig(n_forget=10_000, n_validation=0), "split.n_forget"),
    (SplitConfig(n_forget=1, n_validation=10_000), "split.n_validation"),
    (SplitConfig(n_forget=0, n_validation=0, demo_fraction=0.0), "split.demo_fraction"),
    (SplitConfig(n_forget=0, n_validation=0, rule_demo_fraction={"sibling": 0.0}),
     "split.rule_demo_fraction.sibling"),
    (SplitConfig(n_forget=0, n_validation=0, rule_demo_fraction={"cousin": 0.5}),
     "split.rule_demo_fraction.cousin"),
])
def test_impossible_splits_are_one_line_input_errors(world, closure, cfg, key):
    with pytest.raises(InputError) as err:
        choose_split(closure, world, cfg, seed=0, where="spec.toml")
    msg = str(err.value)
    assert "\n" not in msg and key in msg and msg.startswith("spec.toml: ")


def test_config_from_toml_table():
    cfg = build(SplitConfig, {"n_forget": 3, "targets_from": ["base", "derived"],
                              "rule_demo_fraction": {"grandparent": 0.5}},
                where="spec.toml", section="split")
    assert cfg.targets_from == ("base", "derived") and cfg.n_forget == 3
    for bad, key in [({"n_forgot": 1}, "split.n_forgot"), ({"n_forget": -1}, "split.n_forget"),
                     ({"held_out_fraction": 2.0}, "split.held_out_fraction"),
                     ({"targets_from": ["nope"]}, "split.targets_from")]:
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            build(SplitConfig, bad, where="spec.toml", section="split")


def test_json_round_trip(tmp_path, world, closure):
    sp = choose_split(closure, world, SplitConfig(n_forget=3, n_validation=2,
                                                  demo_fraction=0.5), seed=2)
    sp.save(tmp_path / "split.json", closure)
    back = Split.load(tmp_path / "split.json")
    assert back.to_json() == sp.to_json()
    assert (back.labels == sp.labels).all()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a kgtest split"):
        Split.load(tmp_path / "bad.json")


def _zipf_world(seed: int = 0) -> World:
    from kgtest.worlds.samplers import sample_world
    from kgtest.worlds.spec import WorldConfig

    return sample_world(WorldConfig(zipf=1.5, params={"n_entities": 30, "n_relations": 3,
                                                      "n_derived": 2, "hops": 2}), seed=seed)


@pytest.mark.parametrize("freq", ["rare", "frequent"])
@pytest.mark.parametrize("uses", ["none", "some"])
def test_targets_by_frequency_and_uses(freq, uses):
    from kgtest.corpus.splits import fact_frequency

    world = _zipf_world()
    c = world.close()
    cfg = SplitConfig(n_forget=3, n_validation=2, targets_from=("base",), target_freq=freq,
                      freq_quantile=0.5, target_uses=uses)
    sp = choose_split(c, world, cfg, seed=1)
    used = np.isin(np.arange(len(c)), c.deriv_premises.ravel())
    fq = fact_frequency(c)
    base = fq[:c.n_base]
    cut = np.quantile(base[~used[:c.n_base]] if uses == "none" else base[used[:c.n_base]],
                      0.5, method="higher" if freq == "rare" else "lower")
    for t in np.concatenate([sp.forget, sp.validation]).tolist():
        assert c.is_base[t] and used[t] == (uses == "some")
        assert fq[t] <= cut if freq == "rare" else fq[t] >= cut


def test_frequency_of_a_fact_is_its_rarer_entity_s():
    from kgtest.corpus.splits import fact_frequency

    world = _zipf_world(2)
    c = world.close()
    F = c.facts
    deg = {e: int(((F[:, 0] == e) | (F[:, 2] == e)).sum()) for e in np.unique(F[:, [0, 2]])}
    assert fact_frequency(c).tolist() == [min(deg[s], deg[o]) for s, _, o in F.tolist()]


def test_bad_frequency_settings_name_the_key():
    for bad, key in [({"target_freq": "tail"}, "split.target_freq"),
                     ({"target_uses": "never"}, "split.target_uses"),
                     ({"freq_quantile": 0.0}, "split.freq_quantile")]:
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            build(SplitConfig, bad, where="spec.toml", section="split")
    world = _zipf_world()
    cfg = SplitConfig(n_forget=10_000, n_validation=0, targets_from=("base",),
                      target_freq="rare")
    with pytest.raises(InputError, match="target_freq = rare"):
        choose_split(world.close(), world, cfg, seed=0)
