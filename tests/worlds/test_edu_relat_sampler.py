"""The edu_relat sampler: EDU-RELAT itself, whole or a connected part, as a world."""

from __future__ import annotations

import pytest

from kgtest.errors import InputError
from kgtest.symbolic.edu_relat import load_edu_relat
from kgtest.worlds.samplers import sample_world
from kgtest.worlds.spec import WorldConfig


def _world(seed=0, **params):
    return sample_world(WorldConfig(sampler="edu_relat", params=params), seed=seed)


def test_whole_is_the_bundled_benchmark():
    w, data = _world(), load_edu_relat()
    c = w.close()
    assert len(c) == 662 and int(w.fixed.sum()) == 100
    kb = {c.named(i) for i in range(len(w.facts)) if not w.fixed[i]}
    assert kb == set(data.facts)
    for t in data.targets:  # every published target is a base fact with a derivation
        f = c.find(*t.fact)
        assert c.is_base[f] and c.proof_count[f] >= 1


def test_part_is_connected_keeps_k_people_and_varies_with_the_seed():
    parts = [_world(seed=s, people=25) for s in range(3)]
    for w in parts:
        people = {w.entities.name(int(e)) for e in w.facts[~w.fixed][:, [0, 2]].ravel()}
        assert len(people) <= 25 and int(w.fixed.sum()) == 25  # one gender per person kept
        nbrs = {p: set() for p in people}
        for s, _, o in w.facts[~w.fixed].tolist():
            nbrs[w.entities.name(s)].add(w.entities.name(o))
            nbrs[w.entities.name(o)].add(w.entities.name(s))
        seen, todo = set(), [next(iter(people))]
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                todo += list(nbrs[x])
        assert seen == people  # one connected part
    assert len({tuple(map(tuple, w.facts.tolist())) for w in parts}) > 1
    assert _world(seed=1, people=25).facts.tolist() == parts[1].facts.tolist()


@pytest.mark.parametrize("key, value, match", [
    ("n_planted", 1, "world.n_planted"), ("zipf", 1.0, "world.zipf")])
def test_refuses_what_it_cannot_do(key, value, match):
    with pytest.raises(InputError, match=match):
        sample_world(WorldConfig(sampler="edu_relat", **{key: value}), seed=0)


@pytest.mark.parametrize("people", [-1, 101])
def test_refuses_people_outside_edu_relat_when_the_spec_loads(people):
    with pytest.raises(InputError, match=r"world.params.people' must be"):
        WorldConfig(sampler="edu_relat", params={"people": people}).sampler_params()
