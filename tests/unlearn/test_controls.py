"""Controls: the filtered corpus mentions no target in any role (property test), keeps the
premises, and passes the hygiene check; ignorance also drops the deletion sets."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgtest.corpus.render import CorpusConfig, render
from kgtest.corpus.splits import SplitConfig, choose_split
from kgtest.strategies import worlds
from kgtest.unlearn.controls import control_corpus
from kgtest.unlearn.data import deletion_sets


@st.composite
def corpora(draw):
    """A world with planted derived targets, its split and a rendered corpus."""
    world = draw(worlds(max_entities=5, max_facts=8, max_rules=2, planted=2,
                        planted_depth=(1, 2), planted_stated=False))
    closure = world.close()
    split = choose_split(closure, world, SplitConfig(n_forget=2, n_validation=0,
                                                     targets_from=("planted",),
                                                     target_presentation="stated_and_cot"),
                         seed=0)
    cfg = CorpusConfig(derived=draw(st.sampled_from(["stated", "cot", "both"])),
                       group=draw(st.sampled_from(["fact", "subject"])),
                       multiplicity=draw(st.integers(1, 2)),
                       inverse=draw(st.booleans()))
    return world, closure, split, render(closure, world, split, cfg, seed=0)


@settings(max_examples=30, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(corpora(), st.sampled_from(["filter", "ignorance"]))
def test_filtered_corpus_has_no_target_in_any_role(case, kind):
    world, closure, split, corpus = case
    sets = None
    if kind == "ignorance":
        sets = deletion_sets(closure, split.forget, fixed=world.fixed_mask(closure),
                             restarts=10, seed=0)
    filtered, dropped, checked = control_corpus(corpus, split, kind, deletion=sets)
    gone = set(split.forget.tolist()) | {f for s in (sets or {}).values() for f in s}
    assert set(dropped) == gone and checked == len(filtered.train)
    for d in filtered.train:
        assert gone.isdisjoint(x["id"] for x in d["facts"])  # by its claims, any role
        said = {fid for fid, *_ in corpus.parse(d)}  # and by re-reading its text
        assert gone.isdisjoint(said), d["text"]
    # premises kept: every fact stated in the original and not dropped is still stated
    def stated(c):
        return {x["id"] for d in c.train for x in d["facts"] if x["role"] == "stated"}
    assert stated(corpus) - gone == stated(filtered)
    if kind == "filter":
        kept = (stated(corpus) & set(split.premise.tolist())) - gone
        assert kept <= stated(filtered)
    assert np.array_equal(filtered.facts, corpus.facts)
