"""One forget set for every method; grouped documents masked to the target's sentence; deep
forget sets take every document that states or uses a deleted fact (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from kgtest.corpus.render import CorpusConfig, render, split_statements
from kgtest.corpus.splits import SplitConfig, choose_split
from kgtest.errors import InputError
from kgtest.symbolic.rules import parse_rules
from kgtest.unlearn.data import FORGET_KINDS, forget_set, method_docs, retain_docs
from kgtest.unlearn.methods import METHODS
from kgtest.worlds.world import World

RULES = parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\n"
                    "knows(X, Z) :- likes(X, Y), parent(Y, Z).")


def world(n: int = 12) -> World:
    rng = np.random.default_rng(0)
    facts = [(f"p{i}", "parent", f"p{i + 1}") for i in range(n)]
    facts += [(f"p{i}", "likes", f"p{int(j)}") for i, j in enumerate(rng.integers(0, n, n))]
    return World.from_names(facts, RULES)


def corpus_of(**kw):
    w = world()
    c = w.close()
    sp = choose_split(c, w, SplitConfig(3, 2), seed=0)
    return c, sp, render(c, w, sp, CorpusConfig(**kw), seed=0)


@pytest.mark.parametrize("group", ["fact", "subject"])
@pytest.mark.parametrize("surface", ["symbolic", "natural"])
def test_every_method_forgets_the_same_documents(group, surface):
    c, sp, corpus = corpus_of(derived="both", group=group, surface=surface, inverse=True)
    for deep in (False, True):
        fs = forget_set(corpus, sp.forget, deep=deep, closure=c, restarts=5)
        keys = None
        for name in METHODS.names():
            docs, idk = method_docs(fs, METHODS.get(name).pairs)
            got = [(d["source"], d["fact"]) for d in docs]
            keys = got if keys is None else keys
            assert got == keys, name  # the same units, in the same order
            assert {d["source"] for d in docs} == set(fs.source_ids)
            if idk is not None:
                assert [(d["source"], d["fact"]) for d in idk] == keys
                assert {d["completion"] for d in idk} == {"unknown"}
                assert all(i["prompt"] == p["prompt"] for i, p in zip(idk, docs, strict=True))
        # statements are forgotten by pair methods too, as a pair at the object position
        stm = [(u, p) for u, p in zip(fs.docs, fs.pair_docs, strict=True)
               if u["kind"] == "statement"]
        assert stm
        for u, p in stm:
            obj = corpus.surface.entity_display[int(corpus.facts[u["fact"], 2])]
            assert p["completion"] == obj and p["prompt"].startswith(u["prompt"])


@pytest.mark.parametrize("surface", ["symbolic", "natural"])
def test_grouped_documents_are_masked_to_the_targets_sentence(surface):
    c, sp, corpus = corpus_of(derived="both", group="subject", surface=surface)
    fs = forget_set(corpus, sp.forget)
    targets = set(sp.forget.tolist())
    grouped = [u for u in fs.docs if u["kind"] == "statement"
               and len(corpus.doc(u["source"])["facts"]) > 1]
    assert grouped  # the world has subject documents with several facts
    for u in grouped:
        doc = corpus.doc(u["source"])
        sents = split_statements(corpus.surface, doc["text"])
        i = [x["id"] for x in doc["facts"]].index(u["fact"])
        assert u["completion"] == sents[i]  # the loss sees the target's sentence only
        assert u["fact"] in targets and doc["text"].startswith(u["prompt"] + u["completion"])
    retain = retain_docs(corpus, targets)
    for d in retain:  # the retain loss never sees a target's sentence ...
        assert targets.isdisjoint(x["id"] for x in d["facts"])
        for f in targets:
            sent = corpus.surface.statement(*corpus.facts[f].tolist(), 0)
            assert corpus.named(f)[2] not in d["text"] or sent not in d["text"]
    kept = {x["id"] for d in retain for x in d["facts"]}
    neighbours = {x["id"] for u in grouped for x in corpus.doc(u["source"])["facts"]} - targets
    assert neighbours and neighbours <= kept  # ... and still sees its neighbours


def test_deep_forgets_every_document_that_states_or_uses_a_deleted_fact():
    c, sp, corpus = corpus_of(derived="cot")
    fs = forget_set(corpus, sp.forget, deep=True, closure=c, restarts=5)
    facts = set(fs.facts.tolist())
    want = {d["id"] for d in corpus.train if facts & {x["id"] for x in d["facts"]}}
    assert set(fs.source_ids) == want  # chains that write a deleted premise included
    assert fs.n_using > 0 and fs.summary()["n_using"] == fs.n_using
    assert sum(fs.n_by_kind.values()) == len(fs.source_ids)
    plain = forget_set(corpus, sp.forget)
    assert plain.n_using == 0 and set(plain.source_ids) < set(fs.source_ids)


def test_forget_kinds_narrow_the_set():
    c, sp, corpus = corpus_of(derived="both", train_in_context=True)
    full = forget_set(corpus, sp.validation)
    assert set(full.n_by_kind) <= set(FORGET_KINDS)
    only = forget_set(corpus, sp.validation, kinds=("qa",))
    assert set(only.n_by_kind) == {"qa"} and only.n_by_kind["qa"] == full.n_by_kind["qa"]
    with pytest.raises(InputError, match="forget_kinds"):
        forget_set(corpus, sp.validation, kinds=("chain",))
    with pytest.raises(InputError, match="nothing to forget"):
        forget_set(corpus, sp.validation, kinds=("cot",))  # stated targets have no chain
